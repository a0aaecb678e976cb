// The video needle evaluation (lwm/needle_video.h): the caption is in the sampled frame at the
// cell's depth and in no other sample, and the whole evaluation runs on a tiny vision model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "lwm/model_maker.h"
#include "lwm/needle.h"
#include "lwm/needle_video.h"
#include "lwm/video.h"
#include "test_support.h"
#include "text_test_tokenizer.h"

namespace lwm {
namespace {

using test::capture_error;

bool can_make_videos() { return video_support_available() && ffmpeg_available(); }

// Fractions of a frame's middle band that are black (the caption's band) and white (its text).
std::pair<double, double> band_fractions(const VideoFrame& frame) {
  const int r = frame.resolution;
  std::int64_t black = 0, white = 0, all = 0;
  for (int y = r * 45 / 100; y < r * 55 / 100; ++y) {
    for (int x = 0; x < r; ++x) {
      const float* p = frame.pixels + (static_cast<std::size_t>(y) * r + x) * 3;
      const float lo = std::max({p[0], p[1], p[2]}), hi = std::min({p[0], p[1], p[2]});
      black += lo < -0.9f;
      white += hi > 0.9f;
      ++all;
    }
  }
  return {static_cast<double>(black) / all, static_cast<double>(white) / all};
}

TEST(NeedleVideo, TheCaptionShowsOnlyBetweenItsTimes) {
  if (!can_make_videos()) GTEST_SKIP() << "no FFmpeg libraries or no ffmpeg program";
  test::TempDir dir;
  NeedleVideoSpec spec;
  spec.seconds = 5.0;
  spec.fps = 4.0;
  spec.size = 128;
  spec.number = "7312458";
  spec.caption_begin = 2.0 - 0.1;
  spec.caption_end = 2.5 + 0.1;  // frames 8, 9 and 10
  spec.background_seed = test::test_seed();
  const auto path = dir / "needle.mp4";
  write_needle_video(path, spec);
  FrameSamplingOptions sampling;
  sampling.max_frames = 100;  // every frame
  sampling.resolution = 128;
  const VideoFrameBatch batch = read_video_frames(path, sampling);
  ASSERT_EQ(batch.frames.size(), 20u);
  for (const auto& frame : batch.frames) {
    const auto [black, white] = band_fractions(frame);
    const bool shown = frame.time_seconds >= spec.caption_begin && frame.time_seconds <= spec.caption_end;
    SCOPED_TRACE("frame at " + std::to_string(frame.time_seconds) + " s");
    if (shown) {
      EXPECT_GT(black, 0.4);
      EXPECT_GT(white, 0.02);
    } else {
      EXPECT_LT(black, 0.05);
      EXPECT_LT(white, 0.01);
    }
  }
  const Error missing = capture_error([&] { write_needle_video(dir / "x.mp4", spec, "/nonexistent/ffmpeg"); });
  EXPECT_EQ(missing.kind(), ErrorKind::unsupported);
  EXPECT_NE(std::string(missing.what()).find("install ffmpeg"), std::string::npos);
}

TEST(NeedleVideo, EveryCellAsksAboutTheOneSampledFrameWithTheCaption) {
  if (!can_make_videos()) GTEST_SKIP() << "no FFmpeg libraries or no ffmpeg program";
  test::TempDir dir;
  ModelMakerOptions options;
  options.config = ModelConfig::preset("tiny-vision");
  options.config.vocab_size = test::kTestVocabSize;
  options.config.convention = WeightConvention::jax;
  options.config.convention_known = true;
  options.dtype = DType::f32;
  options.seed = test::test_seed();
  make_random_model(dir / "model", options);
  VqganMakerOptions vq;
  vq.config = VqganConfig::preset("tiny");
  vq.seed = test::test_seed();
  make_random_vqgan(dir / "model", vq);
  const auto model = Model::load(dir / "model");
  const auto vqgan = Vqgan::load(dir / "model");

  NeedleVideoOptions eval;
  eval.grid = NeedleGrid::make(3, 6, 2, 3, 1);
  eval.seconds_per_frame = 1.0;
  eval.fps = 4.0;
  eval.size = 96;
  eval.max_new_tokens = 4;
  eval.seed = test::test_seed();
  eval.work_dir = dir / "videos";
  auto results = NeedleResultsFile::open(dir / "results.json", needle_video_settings(eval));
  run_needle_video_eval(*model, test::test_tokenizer(), *vqgan, eval, results);
  ASSERT_EQ(results.results().size(), 6u);
  for (const auto& r : results.results()) {
    SCOPED_TRACE(r.to_json().dump());
    const std::int64_t n = r.key.context_length;
    EXPECT_EQ(r.extra.at("frames").get<std::int64_t>(), n);
    const auto k = std::llround(r.key.depth_percent / 100.0 * static_cast<double>(n - 1));
    EXPECT_EQ(r.extra.at("needle_sample").get<std::int64_t>(), k);
    EXPECT_EQ(r.extra.at("samples_showing_caption").get<std::int64_t>(), 1);
    EXPECT_EQ(r.extra.at("sample_showing_caption").get<std::int64_t>(), k);
    EXPECT_EQ(r.question, needle::video_question());
    ASSERT_EQ(r.answers.size(), 1u);
    EXPECT_EQ(r.found[0], needle::is_correct(r.response, r.answers[0]));
    EXPECT_GT(r.prompt_tokens, n * 64);  // the tiny VQGAN's 8×8 codes per frame
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir / "videos"));  // videos are removed after their cell

  // A text-only model cannot take a video.
  ModelMakerOptions text = options;
  text.config = ModelConfig::preset("tiny");
  text.config.vocab_size = test::kTestVocabSize;
  make_random_model(dir / "text", text);
  const auto text_model = Model::load(dir / "text");
  auto other = NeedleResultsFile::open(dir / "other.json", needle_video_settings(eval));
  const Error error = capture_error(
      [&] { run_needle_video_eval(*text_model, test::test_tokenizer(), *vqgan, eval, other); });
  EXPECT_EQ(error.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(error.what()).find("vision-language"), std::string::npos);
}

}  // namespace
}  // namespace lwm
