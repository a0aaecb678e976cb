// Video → VQGAN codes (lwm/video_tokens.h): streaming tokenization equals encoding the whole batch
// of sampled frames, and every frame of a prompt maps back to its time in the video.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "lwm/chat_template.h"
#include "lwm/model_maker.h"
#include "lwm/source_map.h"
#include "lwm/tensor.h"
#include "lwm/video_tokens.h"
#include "test_support.h"
#include "text_test_tokenizer.h"

namespace lwm {
namespace {

TEST(VideoTokens, StreamedBatchesEqualOneEncodeAndMapBackToTimes) {
  if (!video_support_available()) GTEST_SKIP() << "built without FFmpeg";
  if (!test::have_ffmpeg()) GTEST_SKIP() << "no ffmpeg CLI";
  test::TempDir dir;
  const auto clip = dir / "clip.mkv";
  const auto written = test::write_lavfi_video(clip, "testsrc2=size=96x64:rate=8", 3, "-c:v ffv1");
  ASSERT_EQ(written.exit_code, 0) << written.output;
  VqganMakerOptions maker;
  maker.config = VqganConfig::preset("tiny");
  maker.seed = test::test_seed();
  make_random_vqgan(dir / "model", maker);
  const auto vqgan = Vqgan::load(dir / "model");

  FrameSamplingOptions sampling;
  sampling.max_frames = 7;
  sampling.resolution = 32;
  const VideoFrameBatch batch = read_video_frames(clip, sampling);
  const std::int64_t n = static_cast<std::int64_t>(batch.frames.size());
  ASSERT_EQ(n, 7);
  const std::vector<std::int32_t> expected =
      vqgan->encode(Tensor::from_floats({n, 32, 32, 3}, batch.pixels));

  for (const std::int64_t per_batch : {1, 3, 7, 10}) {
    const VideoTokens tokens = tokenize_video(clip, *vqgan, sampling, per_batch);
    EXPECT_EQ(tokens.codes.codes, expected) << per_batch << " frames per batch";
    EXPECT_EQ(tokens.codes.codes_per_frame, 64);
    EXPECT_EQ(tokens.codes.vocabulary.codebook_size, 32);
    ASSERT_EQ(tokens.frames.size(), batch.frames.size());
    for (std::size_t f = 0; f < tokens.frames.size(); ++f) {
      EXPECT_EQ(tokens.frames[f].frame, batch.frames[f].frame_index);
      EXPECT_DOUBLE_EQ(tokens.frames[f].seconds, batch.frames[f].time_seconds);
    }
  }

  // Every frame of a prompt built from the video maps back to its time.
  const VideoTokens tokens = tokenize_video(clip, *vqgan, sampling);
  const Prompt prompt =
      render_prompt(ChatTemplates::builtin().get("video-chat"), test::test_tokenizer(),
                    {{"question", "Why?"}}, &tokens.codes);
  SourceMap sources;
  const std::int32_t id = sources.add_video("clip.mkv");
  add_video_frames(sources, id, prompt, tokens);
  for (std::size_t f = 0; f < tokens.frames.size(); ++f) {
    const TokenRange range = prompt.frames()[f];
    for (const std::int64_t position : {range.begin, range.end - 1}) {
      const auto where = sources.locate(position);
      ASSERT_TRUE(where.has_value());
      EXPECT_EQ(where->video.frame, tokens.frames[f].frame);
    }
  }
  EXPECT_FALSE(sources.locate(0).has_value()) << "BOS is template, not video";
  EXPECT_THROW(add_video_frames(sources, id, Prompt{}, tokens), Error);
}

}  // namespace
}  // namespace lwm
