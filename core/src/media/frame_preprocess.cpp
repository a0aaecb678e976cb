#include "media/frame_preprocess.h"

#include <string>

#include "lwm/error.h"

extern "C" {
#include <libavutil/frame.h>
#include <libavutil/mem.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

namespace lwm::media {

FramePreprocessor::FramePreprocessor(int resolution, int rotation_degrees)
    : resolution_(resolution), rotation_(rotation_degrees) {
  if (resolution < 1) {
    throw Error(ErrorKind::invalid_argument,
                "frame resolution must be positive, got " + std::to_string(resolution));
  }
  if (rotation_degrees != 0 && rotation_degrees != 90 && rotation_degrees != 180 &&
      rotation_degrees != 270) {
    throw Error(ErrorKind::invalid_argument,
                "frame rotation must be 0, 90, 180 or 270 degrees, got " +
                    std::to_string(rotation_degrees));
  }
}

FramePreprocessor::~FramePreprocessor() {
  sws_freeContext(scaler_);
}

namespace {

int swscale_colorspace(int colorspace) {
  switch (colorspace) {
    case AVCOL_SPC_BT709:
      return SWS_CS_ITU709;
    case AVCOL_SPC_FCC:
      return SWS_CS_FCC;
    case AVCOL_SPC_SMPTE240M:
      return SWS_CS_SMPTE240M;
    case AVCOL_SPC_BT2020_NCL:
    case AVCOL_SPC_BT2020_CL:
      return SWS_CS_BT2020;
    default:
      return SWS_CS_DEFAULT;  // BT.601, FFmpeg's choice for unspecified matrices
  }
}

bool is_full_range(const AVFrame& frame) {
  if (frame.color_range == AVCOL_RANGE_JPEG) return true;
  // The deprecated yuvj formats are full range by definition (MJPEG decoders still emit them).
  switch (frame.format) {
    case AV_PIX_FMT_YUVJ420P:
    case AV_PIX_FMT_YUVJ422P:
    case AV_PIX_FMT_YUVJ444P:
    case AV_PIX_FMT_YUVJ440P:
    case AV_PIX_FMT_YUVJ411P:
      return true;
    default:
      return false;
  }
}

}  // namespace

void FramePreprocessor::configure(const AVFrame& frame) {
  const bool quarter_turn = rotation_ == 90 || rotation_ == 270;
  const int display_width = quarter_turn ? frame.height : frame.width;
  const int display_height = quarter_turn ? frame.width : frame.height;
  geometry_ = shortest_side_crop_geometry(display_width, display_height, resolution_);
  // Scale before rotating (cheaper: the rotation then moves only the small image); a separable
  // filter gives the same pixels either way.
  scaled_width_ = quarter_turn ? geometry_.resized_height : geometry_.resized_width;
  scaled_height_ = quarter_turn ? geometry_.resized_width : geometry_.resized_height;

  sws_freeContext(scaler_);
  // Bicubic with B = 0, C = 0.5 is Keys' cubic with a = −0.5, the kernel of Pillow's BICUBIC that
  // LWM uses (§3.1); swscale widens it when downscaling, as Pillow's antialiasing does.
  const double bicubic_parameters[2] = {0.0, 0.5};
  scaler_ = sws_getContext(frame.width, frame.height, static_cast<AVPixelFormat>(frame.format),
                           scaled_width_, scaled_height_, AV_PIX_FMT_RGB24,
                           SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT | SWS_FULL_CHR_H_INP,
                           nullptr, nullptr, bicubic_parameters);
  if (scaler_ == nullptr) {
    const char* name = av_get_pix_fmt_name(static_cast<AVPixelFormat>(frame.format));
    throw Error(ErrorKind::unsupported, "cannot convert video frames of pixel format " +
                                            std::string(name != nullptr ? name : "unknown") + " (" +
                                            std::to_string(frame.width) + "x" +
                                            std::to_string(frame.height) + ") to RGB");
  }
  // YUV sources: convert with the frame's own matrix and range (as the ffmpeg command line's scale
  // filter does). RGB and grey sources keep swscale's defaults, which leave RGB values exact.
  const AVPixFmtDescriptor* descriptor =
      av_pix_fmt_desc_get(static_cast<AVPixelFormat>(frame.format));
  const bool is_yuv = descriptor != nullptr && descriptor->nb_components >= 3 &&
                      !(descriptor->flags & AV_PIX_FMT_FLAG_RGB);
  if (is_yuv) {
    // Output full-range RGB; brightness 0, contrast and saturation 1.0 in 16.16 fixed point.
    sws_setColorspaceDetails(scaler_, sws_getCoefficients(swscale_colorspace(frame.colorspace)),
                             is_full_range(frame) ? 1 : 0, sws_getCoefficients(SWS_CS_DEFAULT), 1,
                             0, 1 << 16, 1 << 16);
  }

  scaled_stride_ = (scaled_width_ * 3 + 63) / 64 * 64;  // aligned rows for swscale's SIMD paths
  scaled_ = {static_cast<std::uint8_t*>(
                 av_malloc(static_cast<std::size_t>(scaled_stride_) * scaled_height_ + 64)),
             av_free};
  if (!scaled_) throw Error(ErrorKind::out_of_memory, "cannot allocate a scaled video frame");

  source_width_ = frame.width;
  source_height_ = frame.height;
  source_format_ = frame.format;
  source_colorspace_ = frame.colorspace;
  source_range_ = frame.color_range;
}

void FramePreprocessor::process(const AVFrame& frame, float* out) {
  if (scaler_ == nullptr || frame.width != source_width_ || frame.height != source_height_ ||
      frame.format != source_format_ || frame.colorspace != source_colorspace_ ||
      frame.color_range != source_range_) {
    configure(frame);
  }
  std::uint8_t* destination[4] = {scaled_.get(), nullptr, nullptr, nullptr};
  const int destination_stride[4] = {scaled_stride_, 0, 0, 0};
  sws_scale(scaler_, frame.data, frame.linesize, 0, frame.height, destination, destination_stride);

  // Rotate (clockwise by rotation_) and crop in one pass: output pixel (y, x) is display pixel
  // (top + y, left + x), which lives in the unrotated scaled image at (sy, sx).
  const std::uint8_t* scaled = scaled_.get();
  const int w = scaled_width_;
  const int h = scaled_height_;
  for (int y = 0; y < resolution_; ++y) {
    const int dy = geometry_.top + y;
    for (int x = 0; x < resolution_; ++x) {
      const int dx = geometry_.left + x;
      int sy = dy, sx = dx;
      switch (rotation_) {
        case 90:
          sy = h - 1 - dx;
          sx = dy;
          break;
        case 180:
          sy = h - 1 - dy;
          sx = w - 1 - dx;
          break;
        case 270:
          sy = dx;
          sx = w - 1 - dy;
          break;
        default:
          break;
      }
      const std::uint8_t* pixel = scaled + static_cast<std::size_t>(sy) * scaled_stride_ + 3 * sx;
      float* target = out + (static_cast<std::size_t>(y) * resolution_ + x) * 3;
      // x/127.5 − 1 as §3.1 writes it; multiplying by the reciprocal can differ in the last bit.
      target[0] = static_cast<float>(pixel[0]) / 127.5f - 1.0f;
      target[1] = static_cast<float>(pixel[1]) / 127.5f - 1.0f;
      target[2] = static_cast<float>(pixel[2]) / 127.5f - 1.0f;
    }
  }
}

}  // namespace lwm::media
