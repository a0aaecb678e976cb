// The parts of video.h that need no FFmpeg: LWM's frame selection and crop geometry (§3.1).
#include <cmath>
#include <string>

#include "lwm/error.h"
#include "lwm/video.h"

namespace lwm {

const char* to_string(StreamKind kind) noexcept {
  switch (kind) {
    case StreamKind::video:
      return "video";
    case StreamKind::audio:
      return "audio";
    case StreamKind::subtitle:
      return "subtitle";
    case StreamKind::data:
      return "data";
    case StreamKind::attachment:
      return "attachment";
    case StreamKind::unknown:
      break;
  }
  return "unknown";
}

std::vector<std::int64_t> uniform_frame_indices(std::int64_t frame_count, std::int64_t max_frames) {
  if (frame_count < 0 || max_frames < 1) {
    throw Error(ErrorKind::invalid_argument,
                "uniform frame selection needs frame_count >= 0 and max_frames >= 1, got " +
                    std::to_string(frame_count) + " and " + std::to_string(max_frames));
  }
  std::vector<std::int64_t> indices;
  if (frame_count <= max_frames) {
    indices.reserve(static_cast<std::size_t>(frame_count));
    for (std::int64_t i = 0; i < frame_count; ++i) indices.push_back(i);
    return indices;
  }
  // numpy.linspace(0, stop, num): step = stop / (num − 1), y[i] = i·step, y[num−1] = stop exactly;
  // num = 1 gives [0]. Truncation toward zero equals floor here (all values are ≥ 0).
  indices.reserve(static_cast<std::size_t>(max_frames));
  const double stop = static_cast<double>(frame_count - 1);
  if (max_frames == 1) return {0};
  const double step = stop / static_cast<double>(max_frames - 1);
  for (std::int64_t i = 0; i + 1 < max_frames; ++i) {
    indices.push_back(static_cast<std::int64_t>(std::floor(static_cast<double>(i) * step)));
  }
  indices.push_back(frame_count - 1);
  return indices;
}

namespace {
// Python's round() of excess/2 for a non-negative integer excess: halves go to the even neighbour.
int half_round_even(int excess) {
  if (excess % 2 == 0) return excess / 2;
  const int lower = excess / 2;
  return lower % 2 == 0 ? lower : lower + 1;
}
}  // namespace

CropGeometry shortest_side_crop_geometry(int width, int height, int resolution) {
  if (width < 1 || height < 1 || resolution < 1) {
    throw Error(ErrorKind::invalid_argument,
                "crop geometry needs a positive frame size and resolution, got " +
                    std::to_string(width) + "x" + std::to_string(height) + " to " +
                    std::to_string(resolution));
  }
  CropGeometry geometry;
  // int(256·H/W) in Python is float arithmetic truncated; 64-bit integer division is the same
  // for every size a video can have and avoids rounding of the float product.
  if (width < height) {
    geometry.resized_width = resolution;
    geometry.resized_height =
        static_cast<int>(static_cast<std::int64_t>(resolution) * height / width);
  } else {
    geometry.resized_height = resolution;
    geometry.resized_width =
        static_cast<int>(static_cast<std::int64_t>(resolution) * width / height);
  }
  geometry.left = half_round_even(geometry.resized_width - resolution);
  geometry.top = half_round_even(geometry.resized_height - resolution);
  return geometry;
}

}  // namespace lwm
