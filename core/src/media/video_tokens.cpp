#include "lwm/video_tokens.h"

#include <string>

#include "lwm/error.h"
#include "lwm/tensor.h"

namespace lwm {

VideoTokens tokenize_video(const std::filesystem::path& path, const Vqgan& vqgan,
                           FrameSamplingOptions sampling, std::int64_t frames_per_batch) {
  if (frames_per_batch <= 0) {
    throw Error(ErrorKind::invalid_argument, "tokenize_video: frames_per_batch must be positive");
  }
  const VqganConfig& config = vqgan.config();
  sampling.resolution = static_cast<int>(config.resolution);
  const auto frame_floats = static_cast<std::size_t>(config.resolution * config.resolution * 3);

  VideoTokens out;
  out.codes.codes_per_frame = config.tokens_per_frame();
  out.codes.vocabulary.codebook_size = static_cast<std::int32_t>(config.num_embeddings);
  std::vector<float> batch;
  const auto encode_batch = [&] {
    if (batch.empty()) return;
    const auto frames = static_cast<std::int64_t>(batch.size() / frame_floats);
    const Tensor pixels = Tensor::from_floats(
        {frames, config.resolution, config.resolution, config.num_channels}, batch);
    const std::vector<std::int32_t> codes = vqgan.encode(pixels);
    out.codes.codes.insert(out.codes.codes.end(), codes.begin(), codes.end());
    batch.clear();
  };
  out.report = sample_video_frames(path, sampling, [&](const VideoFrame& frame) {
    batch.insert(batch.end(), frame.pixels, frame.pixels + frame_floats);
    out.frames.push_back({frame.time_seconds, frame.frame_index});
    if (static_cast<std::int64_t>(batch.size() / frame_floats) == frames_per_batch) encode_batch();
    return true;
  });
  encode_batch();
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
