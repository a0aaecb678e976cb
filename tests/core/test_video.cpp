// Video reader (video.h): fixtures are written at test time by the ffmpeg command line from lavfi
// sources or from raw RGB frames we generate; references are hand-derived (timestamps, colours,
// geometry), numpy (frame selection) and Pillow (resize and crop, §3.1).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "lwm/error.h"
#include "lwm/video.h"
#include "test_support.h"

namespace fs = std::filesystem;
using lwm::DecodeStrategy;
using lwm::ErrorKind;
using lwm::FrameSamplingOptions;
using lwm::FrameSelection;

namespace {

bool have_encoder(const std::string& name) {
  static std::map<std::string, bool> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    const auto result = lwm::test::run_command("ffmpeg -hide_banner -encoders");
    it = cache.emplace(name, result.output.find(" " + name + " ") != std::string::npos).first;
  }
  return it->second;
}

// h264 when libx264 is there, else MPEG-4 part 2 (both have keyframes and inter frames).
std::string inter_codec_args(int gop) {
  if (have_encoder("libx264"))
    return "-c:v libx264 -preset ultrafast -g " + std::to_string(gop) + " -pix_fmt yuv420p";
  return "-c:v mpeg4 -q:v 3 -g " + std::to_string(gop) + " -pix_fmt yuv420p";
}

// Test fixtures live for the whole executable in one temporary directory, each written once.
class VideoTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { directory_ = std::make_unique<lwm::test::TempDir>(); }
  static void TearDownTestSuite() { directory_.reset(); }

  void SetUp() override {
    if (!lwm::video_support_available()) GTEST_SKIP() << "built without FFmpeg";
    if (!lwm::test::have_ffmpeg())
      GTEST_SKIP() << "the ffmpeg command line is not installed (packaging/install-deps.sh)";
  }

  static fs::path path(const std::string& name) { return *directory_ / name; }

  // Runs ffmpeg to write `name` (once per test run) and returns its path.
  static fs::path make(const std::string& name, const std::string& arguments) {
    const fs::path out = path(name);
    if (!fs::exists(out)) {
      const auto result =
          lwm::test::run_command("ffmpeg -nostdin -hide_banner -loglevel error -y " + arguments +
                                 " '" + out.string() + "'");
      if (result.exit_code != 0) {
        ADD_FAILURE() << "ffmpeg failed to write " << name << ":\n" << result.output;
      }
    }
    return out;
  }

  // Raw RGB frames of one size, written for ffmpeg's rawvideo input.
  static fs::path write_raw(const std::string& name, const std::vector<std::uint8_t>& rgb) {
    const fs::path out = path(name);
    std::ofstream(out, std::ios::binary)
        .write(reinterpret_cast<const char*>(rgb.data()), static_cast<std::streamsize>(rgb.size()));
    return out;
  }

  static fs::path h264_clip() {
    // 100 frames at 25 fps, a keyframe every 25.
    return make("clip.mp4",
                "-f lavfi -i testsrc2=size=320x240:rate=25:duration=4 " + inter_codec_args(25));
  }

  static std::unique_ptr<lwm::test::TempDir> directory_;
};

std::unique_ptr<lwm::test::TempDir> VideoTest::directory_;

FrameSamplingOptions uniform(std::int64_t n, int resolution = 64) {
  FrameSamplingOptions options;
  options.selection = FrameSelection::uniform;
  options.max_frames = n;
  options.resolution = resolution;
  options.decoder_threads = 1;
  return options;
}

FrameSamplingOptions at_rate(double fps, int resolution = 64) {
  FrameSamplingOptions options;
  options.selection = FrameSelection::rate;
  options.frames_per_second = fps;
  options.resolution = resolution;
  options.decoder_threads = 1;
  return options;
}

ErrorKind error_kind_of(const std::function<void()>& action, std::string* message = nullptr) {
  try {
    action();
  } catch (const lwm::Error& error) {
    if (message != nullptr) *message = error.what();
    return error.kind();
  }
  ADD_FAILURE() << "no lwm::Error was thrown";
  return ErrorKind::invalid_argument;
}

double max_difference(const lwm::VideoFrame& a, const lwm::VideoFrame& b) {
  double worst = 0;
  const std::size_t n = static_cast<std::size_t>(a.resolution) * a.resolution * 3;
  for (std::size_t i = 0; i < n; ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(a.pixels[i] - b.pixels[i])));
  return worst;
}

// Runs the reference script and returns its stdout lines.
std::vector<std::string> python_lines(const std::string& arguments) {
  const auto result = lwm::test::run_command(
      "'" + lwm::test::test_python().string() + "' '" +
      (lwm::test::source_dir() / "tests/python/video_reference.py").string() + "' " + arguments);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  std::vector<std::string> lines;
  std::istringstream in(result.output);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

bool have_python() {
  return fs::exists(lwm::test::test_python());
}

// --- Pure rules (§3.1) -------------------------------------------------------------------------

TEST(VideoRules, UniformIndicesMatchNumpyLinspace) {
  if (!have_python()) GTEST_SKIP() << "no test Python at " << lwm::test::test_python();
  std::mt19937_64 rng(lwm::test::test_seed());
  SCOPED_TRACE("seed " + std::to_string(lwm::test::test_seed()));
  std::vector<std::pair<std::int64_t, std::int64_t>> cases = {
      {0, 8},   {1, 8},         {8, 8}, {9, 8},      {100, 1},   {100, 2},
      {100, 3}, {108000, 3600}, {7, 6}, {1000, 999}, {123457, 8}};
  std::uniform_int_distribution<std::int64_t> frames(1, 200000), wanted(1, 5000);
  for (int i = 0; i < 20; ++i) cases.emplace_back(frames(rng), wanted(rng));
  std::string arguments = "indices";
  for (const auto& [n, k] : cases) arguments += " " + std::to_string(n) + " " + std::to_string(k);
  const auto lines = python_lines(arguments);
  ASSERT_EQ(lines.size(), cases.size());
  for (std::size_t c = 0; c < cases.size(); ++c) {
    std::vector<std::int64_t> expected;
    std::istringstream in(lines[c]);
    for (std::int64_t v; in >> v;) expected.push_back(v);
    EXPECT_EQ(lwm::uniform_frame_indices(cases[c].first, cases[c].second), expected)
        << "N=" << cases[c].first << " n=" << cases[c].second;
  }
  EXPECT_EQ(error_kind_of([] { lwm::uniform_frame_indices(10, 0); }), ErrorKind::invalid_argument);
}

TEST(VideoRules, CropGeometryMatchesLwmPython) {
  if (!have_python()) GTEST_SKIP() << "no test Python at " << lwm::test::test_python();
  const std::vector<std::array<int, 3>> cases = {
      {1280, 720, 256}, {720, 1280, 256}, {333, 201, 256}, {201, 333, 256},
      {256, 256, 256},  {257, 256, 256},  {258, 256, 256}, {640, 480, 224},
      {1, 1000, 16},    {1920, 1080, 64}, {100, 50, 256},  {501, 499, 256}};
  std::string arguments = "geometry";
  for (const auto& c : cases)
    arguments +=
        " " + std::to_string(c[0]) + " " + std::to_string(c[1]) + " " + std::to_string(c[2]);
  const auto lines = python_lines(arguments);
  ASSERT_EQ(lines.size(), cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto g = lwm::shortest_side_crop_geometry(cases[i][0], cases[i][1], cases[i][2]);
    EXPECT_EQ(std::to_string(g.resized_width) + " " + std::to_string(g.resized_height) + " " +
                  std::to_string(g.left) + " " + std::to_string(g.top),
              lines[i])
        << cases[i][0] << "x" << cases[i][1] << " to " << cases[i][2];
  }
}

// --- Probing -----------------------------------------------------------------------------------

TEST_F(VideoTest, ProbeReportsSizeRateDurationAndStreams) {
  const fs::path file = make("with_audio.mkv",
                             "-f lavfi -i testsrc2=size=320x240:rate=25:duration=2 -f lavfi -i "
                             "sine=frequency=440:duration=2 " +
                                 inter_codec_args(25) + " -c:a aac -shortest");
  const lwm::VideoInfo info = lwm::probe_video(file);
  EXPECT_EQ(info.width, 320);
  EXPECT_EQ(info.height, 240);
  EXPECT_EQ(info.display_width, 320);
  EXPECT_EQ(info.rotation_degrees, 0);
  EXPECT_NEAR(info.average_frame_rate, 25.0, 1e-6);
  EXPECT_NEAR(info.real_frame_rate, 25.0, 1e-6);
  EXPECT_NEAR(info.duration_seconds, 2.0, 0.1);
  EXPECT_NEAR(static_cast<double>(info.frame_count), 50.0, 2.0);
  EXPECT_NE(info.container.find("matroska"), std::string::npos) << info.container;
  EXPECT_EQ(info.codec, have_encoder("libx264") ? "h264" : "mpeg4");
  ASSERT_EQ(info.streams.size(), 2u);
  EXPECT_EQ(info.streams[info.video_stream_index].kind, lwm::StreamKind::video);
  EXPECT_EQ(info.streams[1 - info.video_stream_index].kind, lwm::StreamKind::audio);
  EXPECT_EQ(info.streams[1 - info.video_stream_index].codec, "aac");

  // MP4 states its frame count in the header.
  const lwm::VideoInfo mp4 = lwm::probe_video(h264_clip());
  EXPECT_TRUE(mp4.frame_count_exact);
  EXPECT_EQ(mp4.frame_count, 100);
}

TEST_F(VideoTest, BadFilesGiveClearErrors) {
  std::string message;
  EXPECT_EQ(error_kind_of([&] { lwm::probe_video(path("missing.mp4")); }, &message), ErrorKind::io);
  EXPECT_NE(message.find("missing.mp4"), std::string::npos) << message;

  std::ofstream(path("empty.mp4")).close();
  EXPECT_EQ(error_kind_of([&] { lwm::probe_video(path("empty.mp4")); }, &message),
            ErrorKind::file_format);
  EXPECT_NE(message.find("empty"), std::string::npos) << message;

  std::ofstream(path("notes.mp4")) << "These are meeting notes, not a video.\nSecond line.\n";
  EXPECT_EQ(error_kind_of([&] { lwm::probe_video(path("notes.mp4")); }, &message),
            ErrorKind::file_format);
  EXPECT_NE(message.find("notes.mp4"), std::string::npos) << message;

  const fs::path audio =
      make("audio_only.mp4", "-f lavfi -i sine=frequency=300:duration=1 -c:a aac");
  EXPECT_EQ(error_kind_of([&] { lwm::probe_video(audio); }, &message), ErrorKind::unsupported);
  EXPECT_NE(message.find("no video stream"), std::string::npos) << message;
  EXPECT_NE(message.find("audio aac"), std::string::npos) << message;
  EXPECT_EQ(error_kind_of([&] { lwm::read_video_frames(audio, uniform(4)); }),
            ErrorKind::unsupported);

  EXPECT_EQ(error_kind_of([&] { lwm::probe_video(path("")); }),
            ErrorKind::io);  // the directory itself

  // An MP4 whose index (moov) is at the end, cut in half: the header never arrives.
  const fs::path whole =
      make("moov_at_end.mp4",
           "-f lavfi -i testsrc2=size=160x120:rate=25:duration=2 " + inter_codec_args(25));
  const auto size = fs::file_size(whole);
  fs::copy_file(whole, path("moov_cut.mp4"), fs::copy_options::overwrite_existing);
  fs::resize_file(path("moov_cut.mp4"), size / 2);
  EXPECT_EQ(
      error_kind_of([&] { lwm::read_video_frames(path("moov_cut.mp4"), uniform(4)); }, &message),
      ErrorKind::file_format);
  EXPECT_NE(message.find("moov_cut.mp4"), std::string::npos) << message;

  // Impossible options.
  EXPECT_EQ(error_kind_of([&] { lwm::read_video_frames(whole, uniform(0)); }),
            ErrorKind::invalid_argument);
  EXPECT_EQ(error_kind_of([&] { lwm::read_video_frames(whole, at_rate(0.0)); }),
            ErrorKind::invalid_argument);
  EXPECT_EQ(error_kind_of([&] { lwm::read_video_frames(whole, uniform(4, 0)); }),
            ErrorKind::invalid_argument);
}

// --- Sampling ----------------------------------------------------------------------------------

TEST_F(VideoTest, UniformSamplingFollowsLinspaceWithExactTimestamps) {
  struct Case {
    std::string name, arguments;
    double fps;
    std::int64_t frames;
  };
  std::vector<Case> cases = {
      {"clip.mp4", "", 25, 100},
      {"intra.avi", "-f lavfi -i smptebars=size=320x180:rate=30:duration=2 -c:v mjpeg -q:v 5", 30,
       60},
      {"odd.mkv", "-f lavfi -i testsrc2=size=333x201:rate=15:duration=3 -c:v ffv1", 15, 45},
  };
  if (have_encoder("libvpx-vp9")) {
    cases.push_back(
        {"clip.webm",
         "-f lavfi -i testsrc2=size=256x144:rate=30:duration=2 -c:v libvpx-vp9 -deadline realtime "
         "-cpu-used 8 -g 30 -b:v 200k",
         30, 60});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path file = c.arguments.empty() ? h264_clip() : make(c.name, c.arguments);
    for (const std::int64_t n :
         {std::int64_t{1}, std::int64_t{7}, std::int64_t{8}, c.frames, c.frames + 5}) {
      const auto batch = lwm::read_video_frames(file, uniform(n));
      EXPECT_EQ(batch.report.frames_in_video, c.frames);
      const auto expected = lwm::uniform_frame_indices(c.frames, n);
      ASSERT_EQ(batch.frames.size(), expected.size()) << "n=" << n;
      EXPECT_TRUE(batch.report.warnings.empty()) << batch.report.warnings.front();
      for (std::size_t i = 0; i < expected.size(); ++i) {
        EXPECT_EQ(batch.frames[i].frame_index, expected[i]);
        EXPECT_EQ(batch.frames[i].sample_index, static_cast<std::int64_t>(i));
        // Constant frame rate: frame k is shown at k/fps (well within one frame duration).
        EXPECT_NEAR(batch.frames[i].time_seconds, static_cast<double>(expected[i]) / c.fps,
                    0.25 / c.fps)
            << "frame " << expected[i];
      }
    }
  }
}

TEST_F(VideoTest, VariableFrameRateTimestampsAreExact) {
  // 20 frames 0.1 s apart, then 40 frames 0.02 s apart (testsrc2 time base 1/100).
  const fs::path file =
      make("vfr.mkv",
           "-f lavfi -i testsrc2=size=160x120:rate=100 -vf "
           "\"setpts='if(lt(N,20),N*10,200+(N-20)*2)'\" -frames:v 60 -fps_mode passthrough " +
               inter_codec_args(30));
  const auto expected_time = [](std::int64_t k) {
    return k < 20 ? 0.1 * static_cast<double>(k) : 2.0 + 0.02 * static_cast<double>(k - 20);
  };
  const auto batch = lwm::read_video_frames(file, uniform(9));
  ASSERT_EQ(batch.report.frames_in_video, 60);
  ASSERT_EQ(batch.frames.size(), 9u);
  for (const auto& frame : batch.frames) {
    EXPECT_NEAR(frame.time_seconds, expected_time(frame.frame_index), 1e-3)
        << "frame " << frame.frame_index;
  }
  // At 4 frames per second: the frame on screen at each quarter second, each delivered once.
  const auto rate = lwm::read_video_frames(file, at_rate(4.0));
  std::vector<std::int64_t> expected;
  for (int q = 0; 0.25 * q <= expected_time(59) + 1e-9; ++q) {
    std::int64_t on_screen = 0;
    while (on_screen + 1 < 60 && expected_time(on_screen + 1) <= 0.25 * q + 1e-9) ++on_screen;
    if (expected.empty() || expected.back() != on_screen) expected.push_back(on_screen);
  }
  ASSERT_EQ(rate.frames.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(rate.frames[i].frame_index, expected[i]);
    EXPECT_NEAR(rate.frames[i].time_seconds, expected_time(expected[i]), 1e-3);
  }
}

TEST_F(VideoTest, RateSamplingPicksTheFrameOnScreenWithinOneFrame) {
  const fs::path file = h264_clip();  // 25 fps, 4 s
  for (const double fps : {1.0, 3.0, 7.5}) {
    const auto batch = lwm::read_video_frames(file, at_rate(fps));
    ASSERT_FALSE(batch.frames.empty());
    for (std::size_t i = 0; i < batch.frames.size(); ++i) {
      const double instant = static_cast<double>(i) / fps;
      EXPECT_LE(batch.frames[i].time_seconds, instant + 1e-6) << "fps " << fps << " sample " << i;
      EXPECT_GT(batch.frames[i].time_seconds + 1.0 / 25.0, instant - 1e-6)
          << "fps " << fps << " sample " << i;
    }
    EXPECT_EQ(batch.frames.size(), static_cast<std::size_t>(std::floor(3.96 * fps + 1e-9)) + 1)
        << "fps " << fps;
  }
  // Faster than the video: every frame once.
  EXPECT_EQ(lwm::read_video_frames(file, at_rate(60.0)).frames.size(), 100u);
}

TEST_F(VideoTest, SeekingAndSequentialDecodingGiveTheSameFrames) {
  std::vector<fs::path> files = {
      h264_clip(),
      make("bframes.mp4",
           "-f lavfi -i testsrc2=size=192x108:rate=24:duration=5 " +
               std::string(have_encoder("libx264") ? "-c:v libx264 -preset veryfast -bf 3 -g 24"
                                                   : "-c:v mpeg4 -bf 2 -g 24") +
               " -pix_fmt yuv420p"),
      make("mpeg4.mkv", "-f lavfi -i testsrc2=size=160x120:rate=20:duration=4 -c:v mpeg4 -g 15")};
  for (const auto& file : files) {
    SCOPED_TRACE(file.filename().string());
    auto options = uniform(11);
    options.strategy = DecodeStrategy::sequential;
    const auto sequential = lwm::read_video_frames(file, options);
    options.strategy = DecodeStrategy::seek;
    const auto seeking = lwm::read_video_frames(file, options);
    options.strategy = DecodeStrategy::automatic;
    const auto automatic = lwm::read_video_frames(file, options);
    ASSERT_EQ(sequential.frames.size(), 11u);
    ASSERT_EQ(seeking.frames.size(), 11u);
    ASSERT_EQ(automatic.frames.size(), 11u);
    EXPECT_EQ(sequential.report.seeks, 0);
    EXPECT_GE(seeking.report.seeks, 11);
    for (std::size_t i = 0; i < 11; ++i) {
      EXPECT_EQ(seeking.frames[i].frame_index, sequential.frames[i].frame_index);
      EXPECT_EQ(seeking.frames[i].pts_seconds, sequential.frames[i].pts_seconds);
      EXPECT_EQ(max_difference(seeking.frames[i], sequential.frames[i]), 0.0) << "sample " << i;
      EXPECT_EQ(max_difference(automatic.frames[i], sequential.frames[i]), 0.0) << "sample " << i;
    }
    // Neighbouring testsrc2 frames differ, so equal pixels mean the same frame.
    EXPECT_GT(max_difference(sequential.frames[0], sequential.frames[1]), 0.1);
  }
}

TEST_F(VideoTest, SparseSamplingDecodesFarFewerFrames) {
  // 20 s at 25 fps: 500 frames.
  const fs::path long_gop =
      make("long_gop.mp4",
           "-f lavfi -i testsrc2=size=160x120:rate=25:duration=20 " + inter_codec_args(25));
  const fs::path intra = make(
      "intra.mp4", "-f lavfi -i testsrc2=size=160x120:rate=25:duration=20 " + inter_codec_args(1));
  auto options = uniform(6);
  options.strategy = DecodeStrategy::sequential;
  const auto sequential = lwm::read_video_frames(long_gop, options);
  options.strategy = DecodeStrategy::automatic;
  const auto automatic = lwm::read_video_frames(long_gop, options);
  EXPECT_EQ(sequential.report.frames_decoded, 500);  // the last sample is the last frame
  // At most one GOP per sample (plus the decoder's own lookahead).
  EXPECT_LE(automatic.report.frames_decoded, 6 * 25 + 6)
      << "sequential " << sequential.report.frames_decoded;
  EXPECT_GE(automatic.report.seeks, 5);
  const auto all_intra = lwm::read_video_frames(intra, options);
  EXPECT_LE(all_intra.report.frames_decoded, 6 * 2);
  // Dense sampling (every other frame) decodes forward without seeking.
  const auto dense = lwm::read_video_frames(long_gop, uniform(250));
  EXPECT_EQ(dense.report.seeks, 0);
  EXPECT_LE(dense.report.frames_decoded, 500);
}

// --- Preprocessing -----------------------------------------------------------------------------

TEST_F(VideoTest, SolidColourGivesTheNormalisedColour) {
  // Lossless RGB (rawvideo) is exact; 4:2:0 YUV through a lossy codec is within a few levels.
  const fs::path rgb = make(
      "solid_rgb.nut",
      "-f lavfi -i color=c=0x3366CC:size=96x64:rate=10:duration=1,format=rgb24 -c:v rawvideo -pix_fmt rgb24");
  const fs::path yuv =
      make("solid_yuv.mp4",
           "-f lavfi -i color=c=0x3366CC:size=96x64:rate=10:duration=1 " + inter_codec_args(10));
  const float expected[3] = {0x33 / 127.5f - 1.0f, 0x66 / 127.5f - 1.0f, 0xCC / 127.5f - 1.0f};
  for (const auto& [file, tolerance] : {std::pair{rgb, 0.0f}, std::pair{yuv, 3.0f / 127.5f}}) {
    SCOPED_TRACE(file.filename().string());
    const auto batch = lwm::read_video_frames(file, uniform(2, 48));
    ASSERT_EQ(batch.frames.size(), 2u);
    for (std::size_t i = 0; i < batch.pixels.size(); ++i) {
      ASSERT_NEAR(batch.pixels[i], expected[i % 3], tolerance) << "element " << i;
    }
  }
}

// Smooth random RGB content: a few random low-frequency waves.
std::vector<std::uint8_t> smooth_image(int width, int height, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> frequency(0.5, 6.0), phase(0, 6.283), weight(10, 40);
  std::vector<std::uint8_t> pixels(static_cast<std::size_t>(width) * height * 3);
  for (int c = 0; c < 3; ++c) {
    double fx[3], fy[3], ph[3], w[3];
    for (int k = 0; k < 3; ++k) {
      fx[k] = frequency(rng);
      fy[k] = frequency(rng);
      ph[k] = phase(rng);
      w[k] = weight(rng);
    }
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < width; ++x) {
        double v = 128;
        for (int k = 0; k < 3; ++k)
          v += w[k] * std::sin(fx[k] * 6.283 * x / width + fy[k] * 6.283 * y / height + ph[k]);
        pixels[(static_cast<std::size_t>(y) * width + x) * 3 + c] =
            static_cast<std::uint8_t>(std::clamp(std::lround(v), 0L, 255L));
      }
    }
  }
  return pixels;
}

TEST_F(VideoTest, ResizeAndCropMatchPillow) {
  if (!have_python()) GTEST_SKIP() << "no test Python at " << lwm::test::test_python();
  const auto seed = lwm::test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  // Landscape downscale, portrait downscale, upscale, and a size whose crop offset is a half.
  const std::vector<std::array<int, 3>> cases = {
      {341, 199, 64}, {150, 290, 96}, {90, 60, 128}, {259, 200, 200}};
  for (const auto& [width, height, resolution] : cases) {
    const std::string tag =
        std::to_string(width) + "x" + std::to_string(height) + "_" + std::to_string(resolution);
    SCOPED_TRACE(tag);
    const auto image = smooth_image(width, height, rng);
    const fs::path raw = write_raw("smooth_" + tag + ".rgb", image);
    const fs::path video = path("smooth_" + tag + ".nut");
    fs::remove(video);
    make(video.filename().string(), "-f rawvideo -pix_fmt rgb24 -s " + std::to_string(width) + "x" +
                                        std::to_string(height) + " -r 1 -i '" + raw.string() +
                                        "' -c:v rawvideo -pix_fmt rgb24");
    const fs::path reference = path("smooth_" + tag + ".f32");
    python_lines("preprocess '" + raw.string() + "' " + std::to_string(width) + " " +
                 std::to_string(height) + " " + std::to_string(resolution) + " '" +
                 reference.string() + "'");
    std::vector<float> expected(static_cast<std::size_t>(resolution) * resolution * 3);
    std::ifstream(reference, std::ios::binary)
        .read(reinterpret_cast<char*>(expected.data()),
              static_cast<std::streamsize>(expected.size() * 4));

    const auto batch = lwm::read_video_frames(video, uniform(1, resolution));
    ASSERT_EQ(batch.pixels.size(), expected.size());
    double worst = 0, total = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      const double difference = std::fabs(batch.pixels[i] - expected[i]);
      worst = std::max(worst, difference);
      total += difference;
    }
    // swscale's fixed-point bicubic is not Pillow's (spec §8 item 14); on smooth content they
    // agree to about a level. A wrong crop offset or flipped axis would be off by tens of levels.
    EXPECT_LE(worst * 127.5, 3.0);
    EXPECT_LE(total / static_cast<double>(expected.size()) * 127.5, 0.75);
  }
}

// Writes a rotation by `degrees` (a multiple of 90) into the track header (tkhd) matrix of a
// one-track MP4, big-endian 16.16 as ISO/IEC 14496-12 lays it out. Which way it turns is left to
// the reference (the ffmpeg command line's autorotation).
void set_mp4_matrix_rotation(const fs::path& file, int degrees) {
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const auto tag = bytes.find("tkhd");
  ASSERT_NE(tag, std::string::npos);
  const std::size_t box = tag - 4;
  const bool version1 = bytes[tag + 4] == 1;
  const std::size_t matrix = box + 8 + (version1 ? 52 : 40);
  const int quarter = (degrees / 90) % 4;
  const std::int32_t c = quarter == 0 ? 0x10000 : quarter == 2 ? -0x10000 : 0;
  const std::int32_t s = quarter == 1 ? 0x10000 : quarter == 3 ? -0x10000 : 0;
  const std::int32_t values[9] = {c, s, 0, -s, c, 0, 0, 0, 0x40000000};
  for (int i = 0; i < 9; ++i) {
    const auto v = static_cast<std::uint32_t>(values[i]);
    for (int b = 0; b < 4; ++b)
      bytes[matrix + 4 * i + b] = static_cast<char>((v >> (24 - 8 * b)) & 0xFF);
  }
  std::ofstream(file, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Which side of a two-colour frame is red: 0 top, 1 right, 2 bottom, 3 left.
template <typename RedAt>
int red_side(int width, int height, RedAt red_at) {
  double side[4] = {0, 0, 0, 0};
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      const double r = red_at(y, x);
      side[0] += y < height / 2 ? r : -r;
      side[2] += y >= height / 2 ? r : -r;
      side[3] += x < width / 2 ? r : -r;
      side[1] += x >= width / 2 ? r : -r;
    }
  return static_cast<int>(std::max_element(side, side + 4) - side);
}

TEST_F(VideoTest, RotationFromTheDisplayMatrixIsApplied) {
  // 320x160 coded: left half red, right half blue.
  std::vector<std::uint8_t> image(320 * 160 * 3);
  for (int y = 0; y < 160; ++y)
    for (int x = 0; x < 320; ++x) {
      std::uint8_t* p = &image[(static_cast<std::size_t>(y) * 320 + x) * 3];
      p[0] = x < 160 ? 255 : 0;
      p[2] = x < 160 ? 0 : 255;
    }
  const fs::path raw = write_raw("halves.rgb", image);
  const fs::path plain = make("halves.mp4", "-f rawvideo -pix_fmt rgb24 -s 320x160 -r 5 -i '" +
                                                raw.string() + "' " + inter_codec_args(5));
  std::set<int> rotations_seen;
  for (const int degrees : {0, 90, 180, 270}) {
    SCOPED_TRACE("matrix rotation " + std::to_string(degrees));
    const fs::path file = path("rotated_" + std::to_string(degrees) + ".mp4");
    fs::copy_file(plain, file, fs::copy_options::overwrite_existing);
    set_mp4_matrix_rotation(file, degrees);
    // Reference: the frame as the ffmpeg command line shows it (it autorotates).
    const fs::path shown = path("shown_" + std::to_string(degrees) + ".rgb");
    const auto cli = lwm::test::run_command(
        "ffmpeg -nostdin -hide_banner -loglevel error -y -i '" + file.string() +
        "' -frames:v 1 -f rawvideo -pix_fmt rgb24 '" + shown.string() + "'");
    ASSERT_EQ(cli.exit_code, 0) << cli.output;
    const auto shown_bytes = fs::file_size(shown);
    ASSERT_TRUE(shown_bytes == 320 * 160 * 3);
    std::vector<std::uint8_t> reference(shown_bytes);
    std::ifstream(shown, std::ios::binary)
        .read(reinterpret_cast<char*>(reference.data()), static_cast<std::streamsize>(shown_bytes));

    const lwm::VideoInfo info = lwm::probe_video(file);
    rotations_seen.insert(info.rotation_degrees);
    const bool quarter = info.rotation_degrees % 180 == 90;
    EXPECT_EQ(info.display_width, quarter ? 160 : 320);
    EXPECT_EQ(info.display_height, quarter ? 320 : 160);
    const int reference_width = info.display_width, reference_height = info.display_height;
    const int expected_side = red_side(reference_width, reference_height, [&](int y, int x) {
      return static_cast<double>(
                 reference[(static_cast<std::size_t>(y) * reference_width + x) * 3]) /
                 127.5 -
             1.0;
    });
    // The reference's red side must be consistent with its own size: red lies across the long side.
    EXPECT_EQ(expected_side % 2 == 0, quarter) << "ffmpeg shows a frame our size does not explain";

    const auto batch = lwm::read_video_frames(file, uniform(1, 64));
    ASSERT_EQ(batch.frames.size(), 1u);
    const auto& frame = batch.frames[0];
    EXPECT_EQ(red_side(64, 64,
                       [&](int y, int x) {
                         return static_cast<double>(
                             frame.pixels[(static_cast<std::size_t>(y) * 64 + x) * 3]);
                       }),
              expected_side);
  }
  EXPECT_EQ(rotations_seen, (std::set<int>{0, 90, 180, 270}));
}

// --- Damaged files -----------------------------------------------------------------------------

TEST_F(VideoTest, TruncatedFileGivesTheDecodablePartWithAWarning) {
  const fs::path whole = make(
      "stream.mkv", "-f lavfi -i testsrc2=size=160x120:rate=25:duration=4 " + inter_codec_args(25));
  const fs::path cut = path("stream_cut.mkv");
  fs::copy_file(whole, cut, fs::copy_options::overwrite_existing);
  fs::resize_file(cut, fs::file_size(whole) / 2);
  const auto batch = lwm::read_video_frames(cut, uniform(8));
  ASSERT_FALSE(batch.frames.empty());
  EXPECT_LT(batch.report.frames_in_video, 100);
  EXPECT_GT(batch.report.frames_in_video, 10);
  ASSERT_FALSE(batch.report.warnings.empty());
  EXPECT_NE(batch.report.warnings.front().find("stream_cut.mkv"), std::string::npos)
      << batch.report.warnings.front();
  EXPECT_NE(batch.report.warnings.front().find("truncated"), std::string::npos)
      << batch.report.warnings.front();
  // The frames that are there are the original frames.
  const auto original = lwm::read_video_frames(whole, uniform(100));
  for (const auto& frame : batch.frames) {
    if (frame.frame_index >= batch.report.frames_in_video - 1)
      continue;  // the last packet may be cut
    EXPECT_EQ(max_difference(frame, original.frames[static_cast<std::size_t>(frame.frame_index)]),
              0.0)
        << "frame " << frame.frame_index;
  }
}

TEST_F(VideoTest, CorruptBytesInTheMiddleSkipWhatCannotBeDecoded) {
  const fs::path whole =
      make("corrupt_source.mkv",
           "-f lavfi -i testsrc2=size=160x120:rate=25:duration=4 " + inter_codec_args(25));
  const fs::path corrupt = path("corrupt.mkv");
  fs::copy_file(whole, corrupt, fs::copy_options::overwrite_existing);
  {
    std::fstream file(corrupt, std::ios::in | std::ios::out | std::ios::binary);
    const auto size = static_cast<std::streamoff>(fs::file_size(corrupt));
    file.seekp(size / 2);
    std::mt19937 rng(7);
    for (int i = 0; i < 3000; ++i) file.put(static_cast<char>(rng() & 0xFF));
  }
  const auto original = lwm::read_video_frames(whole, uniform(100));
  const auto batch = lwm::read_video_frames(corrupt, uniform(100));
  EXPECT_EQ(batch.report.samples_delivered +
                static_cast<std::int64_t>(batch.report.skipped_samples.size()),
            batch.report.samples_planned);
  ASSERT_GT(batch.report.samples_delivered, 20);
  if (!batch.report.skipped_samples.empty() || batch.report.frames_in_video < 100) {
    EXPECT_FALSE(batch.report.warnings.empty());
  }
  // Frames before the damage (first GOP) are intact.
  for (const auto& frame : batch.frames) {
    if (frame.frame_index >= 25) break;
    EXPECT_EQ(max_difference(frame, original.frames[static_cast<std::size_t>(frame.frame_index)]),
              0.0)
        << "frame " << frame.frame_index;
  }
}

// --- Delivery ----------------------------------------------------------------------------------

TEST_F(VideoTest, CallbackCanStopAndProgressCanCancel) {
  const fs::path file = h264_clip();
  int seen = 0;
  const auto report = lwm::sample_video_frames(file, uniform(8), [&](const lwm::VideoFrame& frame) {
    EXPECT_EQ(frame.sample_index, seen);
    return ++seen < 3;
  });
  EXPECT_EQ(seen, 3);
  EXPECT_EQ(report.samples_delivered, 3);

  auto options = uniform(8);
  std::vector<lwm::Progress> updates;
  options.progress = [&](const lwm::Progress& progress) {
    updates.push_back(progress);
    return progress.done < 4;
  };
  std::string message;
  EXPECT_EQ(error_kind_of([&] { lwm::read_video_frames(file, options); }, &message),
            ErrorKind::cancelled);
  EXPECT_NE(message.find("clip.mp4"), std::string::npos) << message;
  ASSERT_FALSE(updates.empty());
  EXPECT_EQ(updates.back().done, 4);
  EXPECT_EQ(updates.back().total, 8);
}

}  // namespace
