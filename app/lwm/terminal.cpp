#include "terminal.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <utility>

namespace lwm::cli {
namespace {

// Written from the signal handler, so it must be lock-free.
std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

struct sigaction g_previous_action;

extern "C" void on_interrupt(int) {
  g_interrupted.store(true, std::memory_order_relaxed);
}

constexpr int kBarWidth = 28;
// A redraw costs a write syscall; ten per second look smooth and cost nothing.
constexpr double kRedrawSeconds = 0.1;
// Plain lines for logs: often enough to show life, rarely enough to keep the log short.
constexpr double kPlainLineSeconds = 5.0;

double seconds_between(std::chrono::steady_clock::time_point a,
                       std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

bool stderr_is_terminal() {
  return ::isatty(STDERR_FILENO) == 1;
}

InterruptGuard::InterruptGuard() {
  g_interrupted.store(false);
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  // SA_RESETHAND restores the default action after the first signal, so a second Ctrl-C kills.
  action.sa_flags = SA_RESETHAND;
  ::sigaction(SIGINT, &action, &g_previous_action);
}

InterruptGuard::~InterruptGuard() {
  ::sigaction(SIGINT, &g_previous_action, nullptr);
}

bool InterruptGuard::interrupted() noexcept {
  return g_interrupted.load(std::memory_order_relaxed);
}

ProgressBar::ProgressBar(std::string label, std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      interactive_(stderr_is_terminal()),
      last_output_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() {
  finish();
}

std::string ProgressBar::describe(const Progress& progress) const {
  const double fraction =
      progress.total > 0 ? static_cast<double>(progress.done) / static_cast<double>(progress.total)
                         : 0.0;
  std::string text = std::to_string(static_cast<int>(std::floor(fraction * 100.0))) + "%  " +
                     format_count(progress.done) + "/" + format_count(progress.total) + " " + unit_;
  if (progress.elapsed_seconds > 0.0 && progress.done > 0) {
    text += "  " + format_rate(static_cast<double>(progress.done) / progress.elapsed_seconds) +
            " " + unit_ + "/s";
  }
  if (progress.done >= progress.total) {
    text += "  in " + format_duration(progress.elapsed_seconds);
  } else if (const double eta = progress.eta_seconds(); eta >= 0.0) {
    text += "  ETA " + format_duration(eta);
  }
  return text;
}

void ProgressBar::update(const Progress& progress) {
  if (finished_) return;
  last_ = progress;
  const auto now = std::chrono::steady_clock::now();
  const bool complete = progress.total > 0 && progress.done >= progress.total;
  const double since_last = seconds_between(last_output_, now);
  if (interactive_) {
    if (!complete && drawn_ && since_last < kRedrawSeconds) return;
    const double fraction = progress.total > 0 ? static_cast<double>(progress.done) /
                                                     static_cast<double>(progress.total)
                                               : 0.0;
    const int filled = static_cast<int>(std::lround(fraction * kBarWidth));
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.append(static_cast<std::size_t>(kBarWidth - filled), '-');
    // \x1b[K clears what a longer previous line left behind.
    std::fprintf(stderr, "\r%s [%s] %s\x1b[K", label_.c_str(), bar.c_str(),
                 describe(progress).c_str());
    std::fflush(stderr);
    drawn_ = true;
  } else {
    if (!complete && since_last < kPlainLineSeconds) return;
    std::fprintf(stderr, "lwm: %s %s\n", label_.c_str(), describe(progress).c_str());
    std::fflush(stderr);
  }
  last_output_ = now;
  if (complete) finish();
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (interactive_ && drawn_) {
    std::fputc('\n', stderr);
    std::fflush(stderr);
  }
}

std::string format_duration(double seconds) {
  char buffer[32];
  if (!std::isfinite(seconds) || seconds < 0.0) return "?";
  if (seconds < 60.0) {
    std::snprintf(buffer, sizeof buffer, "%.1f s", seconds);
    return buffer;
  }
  const auto total = static_cast<long long>(std::llround(seconds));
  if (total < 3600) {
    std::snprintf(buffer, sizeof buffer, "%lld:%02lld", total / 60, total % 60);
  } else {
    std::snprintf(buffer, sizeof buffer, "%lld:%02lld:%02lld", total / 3600, total / 60 % 60,
                  total % 60);
  }
  return buffer;
}

std::string format_rate(double per_second) {
  if (!std::isfinite(per_second)) return "?";
  if (per_second >= 100.0) return format_count(std::llround(per_second));
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.1f", per_second);
  return buffer;
}

}  // namespace lwm::cli
