// Terminal helpers shared by the `lwm` commands: a progress bar for long work, Ctrl-C handling
// and human-readable numbers. Progress and cancellation are one mechanism (design.md): the bar's
// owner returns `!interrupted()` from the library's progress callback.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "lwm/format.h"  // format_count, format_bytes
#include "lwm/progress.h"

namespace lwm::cli {

bool stderr_is_terminal();

// While alive, the first Ctrl-C (SIGINT) only raises a flag that progress and token callbacks
// read, so work stops between chunks and the command exits cleanly; a second Ctrl-C kills the
// process as usual, for when a single chunk takes too long.
class InterruptGuard {
 public:
  InterruptGuard();
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

  static bool interrupted() noexcept;
};

// Shows the progress of one long step on stderr. On a terminal it redraws one line with a bar,
// the percentage, the rate, and the time left; when stderr is a file or a pipe it writes a plain
// line every few seconds instead, so logs stay readable.
class ProgressBar {
 public:
  // `label` names the step ("prefill"), `unit` what is counted ("tok").
  ProgressBar(std::string label, std::string unit);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void update(const Progress& progress);
  // Ends the bar's line (idempotent); later output starts on a fresh line.
  void finish();

 private:
  std::string describe(const Progress& progress) const;

  std::string label_;
  std::string unit_;
  bool interactive_;
  bool drawn_ = false;
  bool finished_ = false;
  Progress last_;
  std::chrono::steady_clock::time_point last_output_;
};

std::string format_duration(double seconds);   // 75.2 → "1:15", 3.21 → "3.2 s"
std::string format_rate(double per_second);    // 1234.5 → "1,234", 12.34 → "12.3"

}  // namespace lwm::cli
