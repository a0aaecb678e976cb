// Video probing and frame sampling on the FFmpeg libraries (video.h).
//
// Sampling works in three steps:
//  1. Index: demux the video stream's packets without decoding them, giving every frame's
//     presentation timestamp (sorted: presentation order) and which frames are keyframes. This
//     makes frame indices exact for variable frame rates and B-frames, and shows where a truncated
//     file really ends.
//  2. Plan: the frame indices to sample (uniform, §3.1) or, for a rate, the frame on screen at each
//     instant; each target is known by its exact pts.
//  3. Decode: for each target, seek to the keyframe before it when that keyframe lies beyond the
//     decoder's position (fewer frames to decode), else decode forward; deliver the frame whose
//     pts equals the target's.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "lwm/error.h"
#include "lwm/video.h"
#include "media/frame_preprocess.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/log.h>
}

namespace lwm {

bool video_support_available() noexcept {
  return true;
}

namespace {

using Clock = std::chrono::steady_clock;

// Frames a seek must save before automatic decoding prefers it to decoding forward.
constexpr std::int64_t kSeekMargin = 8;

// Appends instead of `"'" + path + "'"`, which trips GCC 12's -Wrestrict false positive.
std::string quoted(const std::filesystem::path& path) {
  std::string text(1, '\'');
  text.append(path.string());
  text.push_back('\'');
  return text;
}

std::string av_error_text(int code) {
  char buffer[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, buffer, sizeof buffer);
  return buffer;
}

std::string seconds_text(double seconds) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3f s", seconds);
  return buffer;
}

// FFmpeg reports damaged data on stderr by default; we turn damage into warnings and errors that
// name the file, so only its fatal messages stay visible.
void quiet_ffmpeg_logging() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_level(AV_LOG_FATAL); });
}

struct FormatCloser {
  void operator()(AVFormatContext* context) const { avformat_close_input(&context); }
};
using FormatPtr = std::unique_ptr<AVFormatContext, FormatCloser>;
struct CodecCloser {
  void operator()(AVCodecContext* context) const { avcodec_free_context(&context); }
};
using CodecPtr = std::unique_ptr<AVCodecContext, CodecCloser>;
struct FrameFree {
  void operator()(AVFrame* frame) const { av_frame_free(&frame); }
};
using FramePtr = std::unique_ptr<AVFrame, FrameFree>;
struct PacketFree {
  void operator()(AVPacket* packet) const { av_packet_free(&packet); }
};
using PacketPtr = std::unique_ptr<AVPacket, PacketFree>;

StreamKind stream_kind(AVMediaType type) {
  switch (type) {
    case AVMEDIA_TYPE_VIDEO:
      return StreamKind::video;
    case AVMEDIA_TYPE_AUDIO:
      return StreamKind::audio;
    case AVMEDIA_TYPE_SUBTITLE:
      return StreamKind::subtitle;
    case AVMEDIA_TYPE_DATA:
      return StreamKind::data;
    case AVMEDIA_TYPE_ATTACHMENT:
      return StreamKind::attachment;
    default:
      return StreamKind::unknown;
  }
}

const std::int32_t* display_matrix(const AVStream& stream) {
#if LIBAVCODEC_VERSION_INT >= AV_VERSION_INT(60, 29, 100)
  const AVPacketSideData* side_data =
      av_packet_side_data_get(stream.codecpar->coded_side_data, stream.codecpar->nb_coded_side_data,
                              AV_PKT_DATA_DISPLAYMATRIX);
  if (side_data == nullptr || side_data->size < 9 * sizeof(std::int32_t)) return nullptr;
  return reinterpret_cast<const std::int32_t*>(side_data->data);
#else
  std::size_t size = 0;
  const std::uint8_t* data = av_stream_get_side_data(&stream, AV_PKT_DATA_DISPLAYMATRIX, &size);
  if (data == nullptr || size < 9 * sizeof(std::int32_t)) return nullptr;
  return reinterpret_cast<const std::int32_t*>(data);
#endif
}

// Clockwise degrees to apply for display, as the ffmpeg command line's autorotation computes them:
// the display matrix states a counter-clockwise angle.
int clockwise_rotation(const AVStream& stream) {
  const std::int32_t* matrix = display_matrix(stream);
  if (matrix == nullptr) return 0;
  const double angle = av_display_rotation_get(matrix);
  if (std::isnan(angle)) return 0;
  const long degrees = std::lround(-angle);
  const long normalised = ((degrees % 360) + 360) % 360;
  // Only quarter turns are meaningful for video; round anything else to the nearest one.
  return static_cast<int>(((normalised + 45) / 90 % 4) * 90);
}

// An opened file with its video stream and a decoder for it.
struct OpenedVideo {
  FormatPtr format;
  int stream_index = -1;
  const AVCodec* decoder = nullptr;
  AVStream* stream() const { return format->streams[stream_index]; }
};

OpenedVideo open_video(const std::filesystem::path& path) {
  quiet_ffmpeg_logging();
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (!std::filesystem::exists(status)) {
    throw Error(ErrorKind::io, "video " + quoted(path) + ": no such file");
  }
  if (std::filesystem::is_directory(status)) {
    throw Error(ErrorKind::io, "video " + quoted(path) + " is a directory, not a file");
  }
  const auto size = std::filesystem::file_size(path, error);
  if (!error && size == 0) {
    throw Error(ErrorKind::file_format, "video " + quoted(path) + " is empty (0 bytes)");
  }

  OpenedVideo opened;
  AVFormatContext* raw = nullptr;
  int result = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
  if (result < 0) {
    if (result == AVERROR(EACCES) || result == AVERROR(EIO)) {
      throw Error(ErrorKind::io,
                  "video " + quoted(path) + " cannot be read: " + av_error_text(result));
    }
    throw Error(ErrorKind::file_format,
                "video " + quoted(path) +
                    " is not a media file FFmpeg can read (or is truncated before "
                    "its header ends): " +
                    av_error_text(result));
  }
  opened.format.reset(raw);
  result = avformat_find_stream_info(raw, nullptr);
  if (result < 0) {
    throw Error(
        ErrorKind::file_format,
        "video " + quoted(path) + ": cannot read its stream information: " + av_error_text(result));
  }

  // The best video stream that is a moving picture, not a cover image attached to an audio file.
  int chosen = av_find_best_stream(raw, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  const auto is_moving_video = [raw](int index) {
    const AVStream* stream = raw->streams[index];
    return stream->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
           !(stream->disposition & AV_DISPOSITION_ATTACHED_PIC);
  };
  if (chosen < 0 || !is_moving_video(chosen)) {
    chosen = -1;
    for (unsigned i = 0; i < raw->nb_streams; ++i) {
      if (is_moving_video(static_cast<int>(i))) {
        chosen = static_cast<int>(i);
        break;
      }
    }
  }
  if (chosen < 0) {
    std::string streams;
    for (unsigned i = 0; i < raw->nb_streams; ++i) {
      const AVCodecParameters* parameters = raw->streams[i]->codecpar;
      if (!streams.empty()) streams.append(", ");
      streams.append(to_string(stream_kind(parameters->codec_type)))
          .append(" ")
          .append(avcodec_get_name(parameters->codec_id));
      if (raw->streams[i]->disposition & AV_DISPOSITION_ATTACHED_PIC) streams += " (cover image)";
    }
    throw Error(ErrorKind::unsupported,
                "file " + quoted(path) + " has no video stream (its streams: " +
                    (streams.empty() ? std::string("none") : streams) + ")");
  }
  opened.stream_index = chosen;
  const AVCodecParameters* parameters = raw->streams[chosen]->codecpar;
  opened.decoder = avcodec_find_decoder(parameters->codec_id);
  if (opened.decoder == nullptr) {
    throw Error(ErrorKind::unsupported, "video " + quoted(path) +
                                            ": this FFmpeg build has no decoder for codec " +
                                            avcodec_get_name(parameters->codec_id));
  }
  if (parameters->width <= 0 || parameters->height <= 0) {
    throw Error(ErrorKind::file_format,
                "video " + quoted(path) + ": its video stream has no frame size (" +
                    std::to_string(parameters->width) + "x" + std::to_string(parameters->height) +
                    "); the file is damaged");
  }
  return opened;
}

VideoInfo describe(const std::filesystem::path& path, const OpenedVideo& opened) {
  const AVFormatContext* format = opened.format.get();
  const AVStream* stream = opened.stream();
  VideoInfo info;
  info.path = path;
  info.container = format->iformat->name;
  info.video_stream_index = opened.stream_index;
  info.codec = avcodec_get_name(stream->codecpar->codec_id);
  info.width = stream->codecpar->width;
  info.height = stream->codecpar->height;
  info.rotation_degrees = clockwise_rotation(*stream);
  const bool quarter_turn = info.rotation_degrees == 90 || info.rotation_degrees == 270;
  info.display_width = quarter_turn ? info.height : info.width;
  info.display_height = quarter_turn ? info.width : info.height;
  if (stream->avg_frame_rate.num > 0 && stream->avg_frame_rate.den > 0)
    info.average_frame_rate = av_q2d(stream->avg_frame_rate);
  if (stream->r_frame_rate.num > 0 && stream->r_frame_rate.den > 0)
    info.real_frame_rate = av_q2d(stream->r_frame_rate);
  if (format->duration != AV_NOPTS_VALUE && format->duration > 0) {
    info.duration_seconds = static_cast<double>(format->duration) / AV_TIME_BASE;
  } else if (stream->duration != AV_NOPTS_VALUE && stream->duration > 0) {
    info.duration_seconds = static_cast<double>(stream->duration) * av_q2d(stream->time_base);
  }
  if (format->start_time != AV_NOPTS_VALUE)
    info.start_seconds = static_cast<double>(format->start_time) / AV_TIME_BASE;
  if (stream->nb_frames > 0) {
    info.frame_count = stream->nb_frames;
    info.frame_count_exact = true;
  } else {
    const double rate =
        info.average_frame_rate > 0 ? info.average_frame_rate : info.real_frame_rate;
    info.frame_count = static_cast<std::int64_t>(std::llround(info.duration_seconds * rate));
  }
  for (unsigned i = 0; i < format->nb_streams; ++i) {
    const AVCodecParameters* parameters = format->streams[i]->codecpar;
    StreamInfo entry;
    entry.index = static_cast<int>(i);
    entry.kind = stream_kind(parameters->codec_type);
    entry.codec = parameters->codec_id == AV_CODEC_ID_NONE ? "unknown"
                                                           : avcodec_get_name(parameters->codec_id);
    info.streams.push_back(entry);
  }
  return info;
}

// Every frame of the video stream in presentation order, from a pass over its packets.
struct FrameIndex {
  std::vector<std::int64_t> pts;        // sorted, unique, in the stream's time base
  std::vector<std::int64_t> keyframes;  // positions in `pts` of frames that start a decodable run
  std::int64_t damaged_packets = 0;     // packets the demuxer flagged corrupt
  std::string read_error;               // why reading stopped early, when it did
  double end_pts_seconds = 0.0;         // pts of the last packet + its duration
};

void check_cancel(const ProgressCallback& progress, const Progress& state,
                  const std::filesystem::path& path) {
  if (progress && !progress(state)) {
    throw Error(ErrorKind::cancelled, "sampling frames from " + quoted(path) + " was cancelled");
  }
}

FrameIndex index_frames(const std::filesystem::path& path, AVFormatContext* format,
                        int stream_index, const ProgressCallback& progress,
                        Clock::time_point start) {
  for (unsigned i = 0; i < format->nb_streams; ++i) {
    format->streams[i]->discard =
        static_cast<int>(i) == stream_index ? AVDISCARD_DEFAULT : AVDISCARD_ALL;
  }
  const AVRational time_base = format->streams[stream_index]->time_base;
  FrameIndex index;
  std::vector<std::int64_t> keyframe_pts;
  PacketPtr packet(av_packet_alloc());
  if (!packet)
    throw Error(ErrorKind::out_of_memory, "cannot allocate a packet for " + quoted(path));
  int consecutive_errors = 0;
  std::int64_t packets_read = 0;
  std::int64_t missing_timestamps = 0;
  for (;;) {
    const int result = av_read_frame(format, packet.get());
    if (result == AVERROR_EOF) break;
    if (result < 0) {
      // A damaged stretch: demuxers resynchronise on the next call, unless the file has ended.
      index.read_error = av_error_text(result);
      if ((format->pb != nullptr && avio_feof(format->pb)) || ++consecutive_errors > 64) break;
      continue;
    }
    consecutive_errors = 0;
    if (packet->stream_index == stream_index) {
      const std::int64_t timestamp = packet->pts != AV_NOPTS_VALUE ? packet->pts : packet->dts;
      if (timestamp == AV_NOPTS_VALUE) {
        ++missing_timestamps;
      } else {
        if (packet->flags & AV_PKT_FLAG_CORRUPT) ++index.damaged_packets;
        if (packet->flags & AV_PKT_FLAG_KEY) keyframe_pts.push_back(timestamp);
        // Packets the demuxer marks "discard" (before an edit list's start) are decoded but never
        // shown.
        if (!(packet->flags & AV_PKT_FLAG_DISCARD)) {
          index.pts.push_back(timestamp);
          const double end =
              static_cast<double>(timestamp + std::max<std::int64_t>(packet->duration, 0)) *
              av_q2d(time_base);
          index.end_pts_seconds = std::max(index.end_pts_seconds, end);
        }
      }
    }
    av_packet_unref(packet.get());
    if (++packets_read % 4096 == 0) {
      Progress state;
      state.elapsed_seconds = std::chrono::duration<double>(Clock::now() - start).count();
      check_cancel(progress, state, path);
    }
  }
  if (index.pts.empty() && missing_timestamps > 0) {
    throw Error(ErrorKind::unsupported,
                "video " + quoted(path) +
                    ": its video packets carry no timestamps (a raw elementary stream?); "
                    "remux it into a container such as MP4 or Matroska");
  }
  std::sort(index.pts.begin(), index.pts.end());
  index.pts.erase(std::unique(index.pts.begin(), index.pts.end()), index.pts.end());
  std::sort(keyframe_pts.begin(), keyframe_pts.end());
  for (const std::int64_t timestamp : keyframe_pts) {
    const auto at = std::lower_bound(index.pts.begin(), index.pts.end(), timestamp);
    const std::int64_t position = at - index.pts.begin();
    if (index.keyframes.empty() || index.keyframes.back() != position)
      index.keyframes.push_back(position);
  }
  return index;
}

// Positions in the index to sample, ascending and unique.
std::vector<std::int64_t> plan_samples(const FrameIndex& index, const FrameSamplingOptions& options,
                                       AVRational time_base) {
  const auto frame_count = static_cast<std::int64_t>(index.pts.size());
  if (options.selection == FrameSelection::uniform)
    return uniform_frame_indices(frame_count, options.max_frames);
  std::vector<std::int64_t> positions;
  if (frame_count == 0) return positions;
  // The frame on screen at first + k/rate: the last frame whose pts is not after that instant.
  // Instants are computed in seconds then converted with rounding, so a frame exactly on an
  // instant is found despite the time base.
  const double tick = av_q2d(time_base);
  const double first = static_cast<double>(index.pts.front()) * tick;
  // The video lasts until its last frame's end (its pts when the packet states no duration).
  const double end =
      std::max(static_cast<double>(index.pts.back()) * tick + 1e-9, index.end_pts_seconds);
  for (std::int64_t k = 0;; ++k) {
    const double instant = first + static_cast<double>(k) / options.frames_per_second;
    if (instant >= end - 1e-9) break;
    const auto target = static_cast<std::int64_t>(std::llround(instant / tick));
    const auto after = std::upper_bound(index.pts.begin(), index.pts.end(), target);
    const std::int64_t position = std::max<std::int64_t>(0, (after - index.pts.begin()) - 1);
    if (positions.empty() || positions.back() != position) positions.push_back(position);
  }
  return positions;
}

// Pulls decoded frames in presentation order, counting them, seeking on request.
class FrameSource {
 public:
  FrameSource(const std::filesystem::path& path, OpenedVideo opened, int threads)
      : path_(path),
        opened_(std::move(opened)),
        packet_(av_packet_alloc()),
        frame_(av_frame_alloc()) {
    if (!packet_ || !frame_)
      throw Error(ErrorKind::out_of_memory, "cannot allocate frames for " + quoted(path_));
    AVFormatContext* format = opened_.format.get();
    for (unsigned i = 0; i < format->nb_streams; ++i) {
      format->streams[i]->discard =
          static_cast<int>(i) == opened_.stream_index ? AVDISCARD_DEFAULT : AVDISCARD_ALL;
    }
    codec_.reset(avcodec_alloc_context3(opened_.decoder));
    if (!codec_)
      throw Error(ErrorKind::out_of_memory, "cannot allocate a decoder for " + quoted(path_));
    int result = avcodec_parameters_to_context(codec_.get(), opened_.stream()->codecpar);
    if (result >= 0) {
      codec_->pkt_timebase = opened_.stream()->time_base;
      codec_->thread_count = threads;
      result = avcodec_open2(codec_.get(), opened_.decoder, nullptr);
    }
    if (result < 0) {
      throw Error(ErrorKind::unsupported, "video " + quoted(path_) + ": cannot open the " +
                                              opened_.decoder->name +
                                              " decoder: " + av_error_text(result));
    }
  }

  // The next decoded frame, or nullptr at the end of the stream. The frame stays valid until the
  // next call or seek.
  AVFrame* next() {
    for (;;) {
      const int received = avcodec_receive_frame(codec_.get(), frame_.get());
      if (received >= 0) {
        ++frames_decoded_;
        return frame_.get();
      }
      if (received == AVERROR_EOF) return nullptr;
      if (received != AVERROR(EAGAIN)) {
        ++decode_errors_;  // a damaged frame (frame threading reports errors here); go on
        continue;
      }
      if (draining_) return nullptr;
      feed();
    }
  }

  // Repositions at the keyframe at or before `timestamp` (stream time base).
  bool seek(std::int64_t timestamp) {
    ++seeks_;
    if (av_seek_frame(opened_.format.get(), opened_.stream_index, timestamp, AVSEEK_FLAG_BACKWARD) <
        0)
      return false;
    avcodec_flush_buffers(codec_.get());
    draining_ = false;
    return true;
  }

  std::int64_t frames_decoded() const noexcept { return frames_decoded_; }
  std::int64_t seeks() const noexcept { return seeks_; }
  std::int64_t decode_errors() const noexcept { return decode_errors_; }

 private:
  // Sends the next video packet, or the end-of-stream marker.
  void feed() {
    for (int failures = 0;;) {
      const int result = av_read_frame(opened_.format.get(), packet_.get());
      if (result < 0) {
        const bool ended = result == AVERROR_EOF ||
                           (opened_.format->pb != nullptr && avio_feof(opened_.format->pb)) ||
                           ++failures > 64;
        if (!ended) continue;
        avcodec_send_packet(codec_.get(), nullptr);
        draining_ = true;
        return;
      }
      if (packet_->stream_index != opened_.stream_index) {
        av_packet_unref(packet_.get());
        continue;
      }
      const int sent = avcodec_send_packet(codec_.get(), packet_.get());
      av_packet_unref(packet_.get());
      if (sent < 0 && sent != AVERROR(EAGAIN)) ++decode_errors_;
      return;
    }
  }

  std::filesystem::path path_;
  OpenedVideo opened_;
  CodecPtr codec_;
  PacketPtr packet_;
  FramePtr frame_;
  bool draining_ = false;
  std::int64_t frames_decoded_ = 0;
  std::int64_t seeks_ = 0;
  std::int64_t decode_errors_ = 0;
};

std::int64_t frame_timestamp(const AVFrame& frame) {
  return frame.best_effort_timestamp != AV_NOPTS_VALUE ? frame.best_effort_timestamp : frame.pts;
}

bool frame_is_damaged(const AVFrame& frame) {
  return (frame.flags & AV_FRAME_FLAG_CORRUPT) != 0 || frame.decode_error_flags != 0;
}

void validate(const FrameSamplingOptions& options) {
  if (options.resolution < 1 || options.resolution > 16384) {
    throw Error(ErrorKind::invalid_argument, "frame resolution must be between 1 and 16384, got " +
                                                 std::to_string(options.resolution));
  }
  if (options.selection == FrameSelection::uniform && options.max_frames < 1) {
    throw Error(ErrorKind::invalid_argument, "uniform sampling needs max_frames >= 1, got " +
                                                 std::to_string(options.max_frames));
  }
  if (options.selection == FrameSelection::rate &&
      !(options.frames_per_second > 0.0 && std::isfinite(options.frames_per_second))) {
    throw Error(ErrorKind::invalid_argument,
                "rate sampling needs a positive frames_per_second, got " +
                    std::to_string(options.frames_per_second));
  }
  if (options.decoder_threads < 0) {
    throw Error(ErrorKind::invalid_argument,
                "decoder_threads must be >= 0 (0: FFmpeg chooses), got " +
                    std::to_string(options.decoder_threads));
  }
}

// "samples 3–5 (12.000 s – 20.000 s), 9 (30.000 s)" for runs of consecutive skipped samples.
std::string describe_skipped(const std::vector<std::int64_t>& skipped,
                             const std::vector<double>& times) {
  std::string text;
  for (std::size_t i = 0; i < skipped.size();) {
    std::size_t j = i;
    while (j + 1 < skipped.size() && skipped[j + 1] == skipped[j] + 1) ++j;
    if (!text.empty()) text += ", ";
    if (i == j) {
      text += std::to_string(skipped[i]) + " (" + seconds_text(times[i]) + ")";
    } else {
      text += std::to_string(skipped[i]) + "-" + std::to_string(skipped[j]) + " (" +
              seconds_text(times[i]) + " to " + seconds_text(times[j]) + ")";
    }
    i = j + 1;
  }
  return text;
}

}  // namespace

VideoInfo probe_video(const std::filesystem::path& path) {
  const OpenedVideo opened = open_video(path);
  return describe(path, opened);
}

FrameSamplingReport sample_video_frames(const std::filesystem::path& path,
                                        const FrameSamplingOptions& options,
                                        const VideoFrameCallback& on_frame) {
  validate(options);
  const auto start = Clock::now();
  FrameSamplingReport report;

  // Step 1: the frame index, from a pass over the packets of a first opening of the file.
  FrameIndex index;
  AVRational time_base{};
  {
    OpenedVideo scan = open_video(path);
    report.info = describe(path, scan);
    time_base = scan.stream()->time_base;
    index = index_frames(path, scan.format.get(), scan.stream_index, options.progress, start);
  }
  report.frames_in_video = static_cast<std::int64_t>(index.pts.size());
  if (index.pts.empty()) {
    throw Error(ErrorKind::file_format,
                "video " + quoted(path) + ": no video frame could be read" +
                    (index.read_error.empty() ? std::string(" (the stream is empty)")
                                              : " (" + index.read_error + ")") +
                    "; the file is truncated or corrupt");
  }
  const double tick = av_q2d(time_base);
  const double first_pts_seconds = static_cast<double>(index.pts.front()) * tick;
  const auto time_of = [&](std::int64_t position) {
    return static_cast<double>(index.pts[static_cast<std::size_t>(position)]) * tick -
           first_pts_seconds;
  };
  // A file that ends well before its header says was cut short; we sample what is there.
  const double header_end = report.info.start_seconds + report.info.duration_seconds;
  const double frame_seconds =
      report.info.average_frame_rate > 0 ? 1.0 / report.info.average_frame_rate : 0.0;
  if (report.info.duration_seconds > 0 &&
      index.end_pts_seconds + std::max(1.0, 3 * frame_seconds) < header_end) {
    report.warnings.push_back(
        "video " + quoted(path) + " ends at " + seconds_text(index.end_pts_seconds) +
        " although its header says " + seconds_text(header_end) +
        " (truncated?): frames after that point were skipped and sampling covers the "
        "frames that are there");
  }
  if (!index.read_error.empty()) {
    report.warnings.push_back("video " + quoted(path) +
                              ": reading stopped early or skipped damaged data (" +
                              index.read_error + ")");
  }

  // Step 2: the plan.
  const std::vector<std::int64_t> plan = plan_samples(index, options, time_base);
  report.samples_planned = static_cast<std::int64_t>(plan.size());
  Progress progress_state;
  progress_state.total = report.samples_planned;
  const auto report_progress = [&] {
    progress_state.elapsed_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    check_cancel(options.progress, progress_state, path);
  };
  report_progress();

  // Step 3: decode.
  FrameSource source(path, open_video(path), options.decoder_threads);
  media::FramePreprocessor preprocess(options.resolution, report.info.rotation_degrees);
  std::vector<float> pixels(static_cast<std::size_t>(options.resolution) * options.resolution * 3);
  const auto position_of = [&](std::int64_t timestamp) {
    const auto at = std::upper_bound(index.pts.begin(), index.pts.end(), timestamp);
    return static_cast<std::int64_t>(at - index.pts.begin()) - 1;  // -1 before the first frame
  };
  const auto keyframe_before = [&](std::int64_t position) {
    const auto after = std::upper_bound(index.keyframes.begin(), index.keyframes.end(), position);
    return after == index.keyframes.begin() ? std::int64_t{0} : *(after - 1);
  };

  // The frame the decoder handed us last and that we have not passed yet (it may be the next
  // target), and the position the next decoded frame will have.
  AVFrame* current = nullptr;
  bool at_end = false;
  std::int64_t next_position = 0;
  std::int64_t damaged_targets = 0;
  std::vector<double> skipped_times;

  for (std::size_t sample = 0; sample < plan.size(); ++sample) {
    const std::int64_t target = plan[sample];
    const std::int64_t target_pts = index.pts[static_cast<std::size_t>(target)];
    // Seek when the keyframe before the target lies well beyond where the decoder is: everything
    // between would be decoded for nothing. A seek costs about as much as decoding a few frames
    // (demuxer repositioning, flushing and refilling the decoder), hence the margin.
    std::int64_t keyframe = keyframe_before(target);
    const bool want_seek =
        options.strategy == DecodeStrategy::seek ||
        (options.strategy == DecodeStrategy::automatic && keyframe >= next_position + kSeekMargin);
    // After a seek, a frame later than the target means the demuxer landed past it: step back
    // one keyframe and try again, then fall back to the start of the stream.
    bool delivered = false;
    bool damaged = false;
    for (int attempt = 0; attempt < 4; ++attempt) {
      if (want_seek) {
        const std::int64_t seek_to =
            attempt < 3 ? index.pts[static_cast<std::size_t>(keyframe)] : index.pts.front();
        if (!source.seek(seek_to)) break;  // not seekable: decode forward from where we are
        current = nullptr;
        at_end = false;
      }
      bool overshot = false;
      for (;;) {
        if (current == nullptr || frame_timestamp(*current) < target_pts) {
          if (at_end) break;
          current = source.next();
          if (current == nullptr) {
            at_end = true;
            break;
          }
          next_position = position_of(frame_timestamp(*current)) + 1;
          continue;
        }
        const std::int64_t timestamp = frame_timestamp(*current);
        if (timestamp > target_pts) {
          overshot = true;
          break;
        }
        // timestamp == target_pts
        if (frame_is_damaged(*current)) {
          damaged = true;
          break;
        }
        preprocess.process(*current, pixels.data());
        VideoFrame frame;
        frame.sample_index = static_cast<std::int64_t>(sample);
        frame.frame_index = target;
        frame.pts_seconds = static_cast<double>(timestamp) * tick;
        frame.time_seconds = frame.pts_seconds - first_pts_seconds;
        frame.resolution = options.resolution;
        frame.pixels = pixels.data();
        delivered = true;
        ++report.samples_delivered;
        if (!on_frame(frame)) {
          report.frames_decoded = source.frames_decoded();
          report.seeks = source.seeks();
          return report;
        }
        break;
      }
      if (delivered || damaged || !overshot || !want_seek) break;
      // Overshot right after a seek: retry from the keyframe before (the last attempt starts
      // from the first frame).
      keyframe = keyframe_before(std::max<std::int64_t>(0, keyframe - 1));
    }
    if (!delivered) {
      report.skipped_samples.push_back(static_cast<std::int64_t>(sample));
      skipped_times.push_back(time_of(target));
      if (damaged) ++damaged_targets;
    }
    ++progress_state.done;
    report_progress();
  }
  report.frames_decoded = source.frames_decoded();
  report.seeks = source.seeks();

  if (!report.skipped_samples.empty()) {
    report.warnings.push_back(
        "video " + quoted(path) + ": " + std::to_string(report.skipped_samples.size()) + " of " +
        std::to_string(report.samples_planned) + " samples could not be decoded and were skipped" +
        (damaged_targets > 0 ? " (" + std::to_string(damaged_targets) + " decoded damaged)"
                             : std::string()) +
        ": samples " + describe_skipped(report.skipped_samples, skipped_times));
  }
  if (report.samples_delivered == 0 && report.samples_planned > 0) {
    throw Error(ErrorKind::file_format,
                "video " + quoted(path) + ": none of the " +
                    std::to_string(report.samples_planned) +
                    " sampled frames could be decoded; the file is truncated or corrupt");
  }
  return report;
}

VideoFrameBatch read_video_frames(const std::filesystem::path& path,
                                  const FrameSamplingOptions& options) {
  VideoFrameBatch batch;
  batch.resolution = options.resolution;
  const std::size_t frame_floats =
      static_cast<std::size_t>(options.resolution) * options.resolution * 3;
  batch.report = sample_video_frames(path, options, [&](const VideoFrame& frame) {
    batch.frames.push_back(frame);
    batch.pixels.insert(batch.pixels.end(), frame.pixels, frame.pixels + frame_floats);
    return true;
  });
  for (std::size_t i = 0; i < batch.frames.size(); ++i)
    batch.frames[i].pixels = batch.pixels.data() + i * frame_floats;
  return batch;
}

}  // namespace lwm
