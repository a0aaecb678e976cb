// Turns a decoded FFmpeg frame into the VQGAN's input (§3.1): rotate as the display matrix asks,
// resize so the shorter side is `resolution`, centre-crop, RGB float32 HWC in [-1, 1].
#pragma once

#include <cstdint>
#include <memory>

#include "lwm/video.h"

extern "C" {
struct AVFrame;
struct SwsContext;
}

namespace lwm::media {

class FramePreprocessor {
 public:
  // rotation_degrees: clockwise, one of 0, 90, 180, 270.
  FramePreprocessor(int resolution, int rotation_degrees);
  ~FramePreprocessor();
  FramePreprocessor(const FramePreprocessor&) = delete;
  FramePreprocessor& operator=(const FramePreprocessor&) = delete;

  // Writes resolution·resolution·3 floats to `out`. Frames may change size or pixel format
  // between calls (the scaler is rebuilt when they do).
  void process(const AVFrame& frame, float* out);

  int resolution() const noexcept { return resolution_; }

 private:
  void configure(const AVFrame& frame);

  int resolution_;
  int rotation_;
  SwsContext* scaler_ = nullptr;
  int source_width_ = 0, source_height_ = 0, source_format_ = -1;
  int source_colorspace_ = -1, source_range_ = -1;
  CropGeometry geometry_;                     // in display orientation
  int scaled_width_ = 0, scaled_height_ = 0;  // in coded orientation
  int scaled_stride_ = 0;
  std::unique_ptr<std::uint8_t, void (*)(void*)> scaled_{nullptr, nullptr};
};

}  // namespace lwm::media
