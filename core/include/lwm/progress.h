// Progress and cancellation are one mechanism (design.md): long work calls a callback with how far
// it is, and stops with Error(cancelled) when the callback returns false.
#pragma once

#include <cstdint>
#include <chrono>
#include <functional>
#include <string>

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

// Calls a callback with the time elapsed since construction, and throws Error(cancelled)
// ("<what> was cancelled after <done> of <total> <unit>") when it returns false. Without a
// callback it does nothing.
class ProgressReporter {
 public:
  ProgressReporter(ProgressCallback callback, std::int64_t total, std::string what,
                   std::string unit = {});
  void report(std::int64_t done) const;

 private:
  ProgressCallback callback_;
  std::int64_t total_;
  std::string what_;
  std::string unit_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace lwm
