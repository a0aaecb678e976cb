#include "lwm/video_tokens.h"

#include <string>

#include "lwm/error.h"
#include "lwm/tensor.h"
#include "media/encode_frames.h"

namespace lwm {

namespace detail {

FrameSamplingReport encode_video_frames(const std::filesystem::path& path, const Vqgan& vqgan,
                                        FrameSamplingOptions sampling,
                                        std::int64_t frames_per_batch, std::int64_t skip_through,
                                        const EncodedBatchCallback& on_batch) {
  if (frames_per_batch <= 0) {
    throw Error(ErrorKind::invalid_argument, "tokenize_video: frames_per_batch must be positive");
  }
  const VqganConfig& config = vqgan.config();
  sampling.resolution = static_cast<int>(config.resolution);
  const auto frame_floats = static_cast<std::size_t>(config.resolution * config.resolution * 3);

  std::vector<float> batch;
  std::vector<EncodedFrame> frames;
  const auto encode_batch = [&] {
    if (frames.empty()) return;
    const Tensor pixels = Tensor::from_floats(
        {static_cast<std::int64_t>(frames.size()), config.resolution, config.resolution,
         config.num_channels},
        batch);
    on_batch(frames, vqgan.encode(pixels));
    batch.clear();
    frames.clear();
  };
  FrameSamplingReport report = sample_video_frames(path, sampling, [&](const VideoFrame& frame) {
    if (frame.sample_index <= skip_through) return true;
    batch.insert(batch.end(), frame.pixels, frame.pixels + frame_floats);
    frames.push_back({frame.sample_index, {frame.time_seconds, frame.frame_index}});
    if (static_cast<std::int64_t>(frames.size()) == frames_per_batch) encode_batch();
    return true;
  });
  encode_batch();
  return report;
}

}  // namespace detail

VideoTokens tokenize_video(const std::filesystem::path& path, const Vqgan& vqgan,
                           FrameSamplingOptions sampling, std::int64_t frames_per_batch) {
  VideoTokens out;
  out.codes.codes_per_frame = vqgan.config().tokens_per_frame();
  out.codes.vocabulary.codebook_size = static_cast<std::int32_t>(vqgan.config().num_embeddings);
  out.report = detail::encode_video_frames(
      path, vqgan, std::move(sampling), frames_per_batch, -1,
      [&](std::span<const detail::EncodedFrame> frames, std::span<const std::int32_t> codes) {
        for (const auto& frame : frames) out.frames.push_back(frame.location);
        out.codes.codes.insert(out.codes.codes.end(), codes.begin(), codes.end());
      });
  return out;
}

void add_video_frames(SourceMap& sources, std::int32_t video_source, const Prompt& prompt,
                      const VideoTokens& video) {
  if (prompt.frames().size() != video.frames.size()) {
    throw Error(ErrorKind::invalid_argument,
                "the prompt holds " + std::to_string(prompt.frames().size()) +
                    " frames but the video has " + std::to_string(video.frames.size()));
  }
  for (std::size_t f = 0; f < video.frames.size(); ++f) {
    const TokenRange range = prompt.frames()[f];
    sources.add_video_frame(video_source, range.begin, range.size(), video.frames[f]);
  }
}

}  // namespace lwm
