// Video sampling cost on an hour of 720p video at 30 fps (h264, a keyframe every 250 frames):
// sampling 1 frame per second (3,600 frames), and sparse uniform sampling, against decoding every
// frame. The video is written once with the ffmpeg command line (a two-minute testsrc2 segment,
// repeated by stream copy) and cached in the build directory. Prints a markdown table.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "bench_support.h"
#include "lwm/error.h"
#include "lwm/video.h"

namespace fs = std::filesystem;

namespace {

using lwm::bench::Clock;
using lwm::bench::cpu_name;
using lwm::bench::seconds_since;
using lwm::bench::today;

void run(const std::string& command) {
  std::printf("$ %s\n", command.c_str());
  std::fflush(stdout);
  if (std::system(command.c_str()) != 0) throw std::runtime_error("command failed: " + command);
}

fs::path hour_video(const fs::path& cache, int minutes) {
  const fs::path video = cache / ("hour_720p30_g250_" + std::to_string(minutes) + "min.mp4");
  if (fs::exists(video)) return video;
  fs::create_directories(cache);
  const fs::path segment = cache / "segment_720p30_g250_2min.mp4";
  if (!fs::exists(segment)) {
    run("ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i "
        "testsrc2=size=1280x720:rate=30:duration=120 "
        "-c:v libx264 -preset ultrafast -crf 30 -g 250 -pix_fmt yuv420p '" +
        segment.string() + "'");
  }
  const fs::path list = cache / "segments.txt";
  {
    std::FILE* file = std::fopen(list.c_str(), "w");
    for (int i = 0; i < (minutes + 1) / 2; ++i) std::fprintf(file, "file '%s'\n", segment.c_str());
    std::fclose(file);
  }
  const fs::path partial = cache / "partial.mp4";
  run("ffmpeg -nostdin -hide_banner -loglevel error -y -f concat -safe 0 -i '" + list.string() +
      "' -c copy '" + partial.string() + "'");
  fs::rename(partial, video);
  return video;
}

struct Row {
  std::string what;
  std::int64_t samples = 0;
  std::int64_t decoded = 0;
  std::int64_t seeks = 0;
  double seconds = 0;
};

Row measure(const std::string& what, const fs::path& video, lwm::FrameSamplingOptions options,
            std::int64_t stop_after = -1) {
  Row row;
  row.what = what;
  const auto start = Clock::now();
  const auto report = lwm::sample_video_frames(video, options, [&](const lwm::VideoFrame&) {
    ++row.samples;
    return stop_after < 0 || row.samples < stop_after;
  });
  row.seconds = seconds_since(start);
  row.decoded = report.frames_decoded;
  row.seeks = report.seeks;
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Video sampling benchmark (lwm_bench_video)"};
  std::string cache = LWM_BENCH_CACHE_DIR;
  int minutes = 60;
  int sequential_seconds = 120;
  app.add_option("--cache", cache, "where the generated video is kept");
  app.add_option("--minutes", minutes, "length of the generated video (even number)");
  app.add_option("--sequential-seconds", sequential_seconds,
                 "seconds of video decoded sequentially to estimate decoding everything");
  CLI11_PARSE(app, argc, argv);
  try {
    const fs::path video = hour_video(cache, minutes);
    const lwm::VideoInfo info = lwm::probe_video(video);
    std::printf("video: %s, %dx%d, %.2f fps, %.1f s, %lld frames, %.0f MB\n", video.c_str(),
                info.width, info.height, info.average_frame_rate, info.duration_seconds,
                static_cast<long long>(info.frame_count),
                static_cast<double>(fs::file_size(video)) / 1e6);

    lwm::FrameSamplingOptions options;
    options.resolution = 256;

    // The packet index alone (the first sample is the first frame, so almost nothing is decoded).
    options.selection = lwm::FrameSelection::uniform;
    options.max_frames = 1;
    const Row index = measure("index + first frame", video, options);

    // Sequential decoding of the first minutes, to extrapolate decoding every frame.
    options.selection = lwm::FrameSelection::rate;
    options.frames_per_second = 1.0;
    options.strategy = lwm::DecodeStrategy::sequential;
    const Row sequential = measure("sequential, first " + std::to_string(sequential_seconds) + " s",
                                   video, options, sequential_seconds);
    const double decode_rate =
        static_cast<double>(sequential.decoded) / (sequential.seconds - index.seconds);
    const double all_frames = static_cast<double>(info.frame_count);

    options.strategy = lwm::DecodeStrategy::automatic;
    const Row one_fps = measure("rate 1 fps (automatic)", video, options);
    options.selection = lwm::FrameSelection::uniform;
    options.max_frames = 8;
    const Row sparse = measure("uniform 8 frames (automatic)", video, options);
    options.max_frames = 360;
    const Row every10 = measure("uniform 360 frames (automatic)", video, options);

    std::printf(
        "\n| run | samples | frames decoded | seeks | wall s | samples/s |\n| --- | ---: | ---: | "
        "---: | ---: | ---: |\n");
    for (const Row& row : {index, sequential, one_fps, every10, sparse}) {
      std::printf("| %s | %lld | %lld | %lld | %.2f | %.1f |\n", row.what.c_str(),
                  static_cast<long long>(row.samples), static_cast<long long>(row.decoded),
                  static_cast<long long>(row.seeks), row.seconds,
                  static_cast<double>(row.samples) / row.seconds);
    }
    std::printf(
        "\nsequential decode rate %.0f frames/s -> decoding all %.0f frames: about %.0f s (plus "
        "the index)\n",
        decode_rate, all_frames, all_frames / decode_rate);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "lwm_bench_video: %s\n", error.what());
    return 1;
  }
  return 0;
}
