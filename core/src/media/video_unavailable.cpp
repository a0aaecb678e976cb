// video.h in a build without FFmpeg (a GPU-machine build of core, design.md): the pure parts
// (frame selection, crop geometry) live in video_sampling.cpp; reading files says why it cannot.
#include "lwm/error.h"
#include "lwm/video.h"

namespace lwm {

namespace {
[[noreturn]] void no_ffmpeg(const std::filesystem::path& path) {
  throw Error(ErrorKind::unsupported,
              "cannot read video '" + path.string() +
                  "': LWM Studio was built without FFmpeg (install libavformat-dev, "
                  "libavcodec-dev, libavutil-dev and libswscale-dev, then reconfigure)");
}
}  // namespace

bool video_support_available() noexcept {
  return false;
}

VideoInfo probe_video(const std::filesystem::path& path) {
  no_ffmpeg(path);
}

FrameSamplingReport sample_video_frames(const std::filesystem::path& path,
                                        const FrameSamplingOptions&, const VideoFrameCallback&) {
  no_ffmpeg(path);
}

VideoFrameBatch read_video_frames(const std::filesystem::path& path, const FrameSamplingOptions&) {
  no_ffmpeg(path);
}

}  // namespace lwm
