// Video input (spec/lwm-reference.md §3.1): probe a file FFmpeg can read, choose which frames to
// sample (uniformly over the frames, or at a rate), decode only what those samples need, and
// deliver each sampled frame resized (shortest side), centre-cropped and normalised to [-1, 1],
// with its exact presentation timestamp and frame index.
//
// Built on the FFmpeg libraries when they are found at configure time (LWM_HAVE_FFMPEG); without
// them every function here that reads a file throws Error(unsupported, "built without FFmpeg").
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "lwm/progress.h"

namespace lwm {

// Whether this build can read videos (FFmpeg was found at configure time).
bool video_support_available() noexcept;

enum class StreamKind { video, audio, subtitle, data, attachment, unknown };
const char* to_string(StreamKind kind) noexcept;

struct StreamInfo {
  int index = 0;
  StreamKind kind = StreamKind::unknown;
  std::string codec;  // FFmpeg's short codec name ("h264", "aac"); "unknown" when it has none
};

struct VideoInfo {
  std::filesystem::path path;
  std::string container;  // FFmpeg's demuxer name ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm")
  double duration_seconds = 0.0;    // from the container header; 0 when it does not say
  double start_seconds = 0.0;       // presentation time of the container's start
  double average_frame_rate = 0.0;  // frames / duration as the container states it; 0 when unknown
  double real_frame_rate = 0.0;     // the smallest rate that represents every timestamp
  std::int64_t frame_count = 0;     // from the header when it states it, else an estimate
  bool frame_count_exact = false;   // true when frame_count came from the header's frame count
  int width = 0;                    // coded size, before rotation
  int height = 0;
  // Clockwise rotation, in degrees (0, 90, 180 or 270), that the stream's display matrix asks for.
  int rotation_degrees = 0;
  int display_width = 0;  // size as shown, after rotation
  int display_height = 0;
  std::string codec;  // of the video stream used
  int video_stream_index = -1;
  std::vector<StreamInfo> streams;  // every stream in the file, in file order
};

// Opens `path` and reads its header (and a few packets when the header is incomplete). Throws
// Error(io) for a missing or unreadable file, Error(file_format) for a file FFmpeg cannot read as
// media (empty, not media, truncated before any stream was described), Error(unsupported) for a
// file with no video stream or whose video codec has no decoder in this build.
VideoInfo probe_video(const std::filesystem::path& path);

// LWM's frame selection (§3.1): all `frame_count` indices when frame_count ≤ max_frames, else
// floor(linspace(0, frame_count − 1, max_frames)) with both ends included, as numpy computes it.
std::vector<std::int64_t> uniform_frame_indices(std::int64_t frame_count, std::int64_t max_frames);

// Resize-then-crop geometry of §3.1 for a frame of `width`×`height` (after rotation): the shorter
// side becomes `resolution`, the longer one int(resolution·long/short) (truncated), and the crop
// offsets are round_half_even((resized − resolution) / 2).
struct CropGeometry {
  int resized_width = 0;
  int resized_height = 0;
  int left = 0;
  int top = 0;
};
CropGeometry shortest_side_crop_geometry(int width, int height, int resolution);

enum class FrameSelection {
  uniform,  // max_frames frames spread over all frames (LWM's rule above)
  rate,     // one frame per 1/frames_per_second seconds: the frame on screen at each instant
};

// How to reach the sampled frames. `automatic` seeks to the keyframe before a sample whenever that
// keyframe lies beyond the decoder's position (so fewer frames are decoded than by going on), and
// decodes forward otherwise. `sequential` never seeks; `seek` seeks before every sample. All three
// deliver the same frames; the last two exist for tests and benchmarks.
enum class DecodeStrategy { automatic, sequential, seek };

struct FrameSamplingOptions {
  FrameSelection selection = FrameSelection::uniform;
  std::int64_t max_frames = 8;     // for `uniform`; the chat script's default (§3.1)
  double frames_per_second = 1.0;  // for `rate`
  int resolution = 256;            // output frames are resolution×resolution (the VQGAN's input)
  DecodeStrategy strategy = DecodeStrategy::automatic;
  int decoder_threads = 0;  // 0: FFmpeg chooses
  // Called after the frame index is built and after every delivered sample (done = samples
  // handled, total = samples planned); returning false cancels with Error(cancelled).
  ProgressCallback progress;
};

// One sampled frame. `pixels` points to resolution·resolution·3 floats, HWC, RGB, in [-1, 1]
// (x/127.5 − 1); valid only during the callback that receives it.
struct VideoFrame {
  std::int64_t sample_index = 0;  // position among the planned samples
  std::int64_t frame_index = 0;   // position of the frame in presentation order, from 0
  double pts_seconds = 0.0;       // the decoded frame's presentation timestamp, as in the file
  double time_seconds = 0.0;      // pts_seconds − the first frame's pts: time into the video
  int resolution = 0;
  const float* pixels = nullptr;
};

// What a sampling run did. Samples that could not be decoded (truncated or corrupt data) are
// listed in `warnings` with their times; the run throws only when no sample could be decoded.
struct FrameSamplingReport {
  VideoInfo info;
  std::int64_t frames_in_video = 0;  // frames found by the packet index (exact, unlike frame_count)
  std::int64_t samples_planned = 0;
  std::int64_t samples_delivered = 0;
  std::int64_t frames_decoded = 0;  // every frame the decoder produced, sampled or not
  std::int64_t seeks = 0;
  std::vector<std::int64_t> skipped_samples;  // sample indices that could not be decoded
  std::vector<std::string> warnings;          // each names the file and what was skipped
};

// Returns true to go on, false to stop early (no error: the report says how many were delivered).
using VideoFrameCallback = std::function<bool(const VideoFrame&)>;

// Samples frames from `path` and hands each one, in presentation order, to `on_frame`. Holds one
// decoded frame and one output frame at a time. Throws as probe_video() does,
// Error(invalid_argument) for impossible options, Error(file_format) when no sampled frame can be
// decoded, and Error(cancelled) when the progress callback asks to stop.
FrameSamplingReport sample_video_frames(const std::filesystem::path& path,
                                        const FrameSamplingOptions& options,
                                        const VideoFrameCallback& on_frame);

// The same, collected into one compact batch: `pixels` holds frames.size() frames of
// resolution·resolution·3 floats, back to back; frames[i].pixels points into it.
struct VideoFrameBatch {
  FrameSamplingReport report;
  std::vector<VideoFrame> frames;
  std::vector<float> pixels;
  int resolution = 0;
};
VideoFrameBatch read_video_frames(const std::filesystem::path& path,
                                  const FrameSamplingOptions& options);

}  // namespace lwm
