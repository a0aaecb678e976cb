// Progress and cancellation are one mechanism (design.md): long work calls a callback with how far
// it is, and stops with Error(cancelled) when the callback returns false.
#pragma once

#include <cstdint>
#include <functional>

namespace lwm {

struct Progress {
  std::int64_t done = 0;
  std::int64_t total = 0;
  double elapsed_seconds = 0.0;
  // Seconds left, extrapolated from the rate so far; negative when unknown yet.
  double eta_seconds() const noexcept {
    return (done > 0 && total >= done) ? elapsed_seconds * static_cast<double>(total - done) / done : -1.0;
  }
};

// Returns true to go on, false to cancel.
using ProgressCallback = std::function<bool(const Progress&)>;

}  // namespace lwm
