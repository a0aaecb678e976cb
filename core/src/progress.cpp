#include "lwm/progress.h"

#include <utility>

#include "lwm/error.h"

namespace lwm {

ProgressReporter::ProgressReporter(ProgressCallback callback, std::int64_t total, std::string what,
                                   std::string unit)
    : callback_(std::move(callback)),
      total_(total),
      what_(std::move(what)),
      unit_(std::move(unit)),
      start_(std::chrono::steady_clock::now()) {}

void ProgressReporter::report(std::int64_t done) const {
  if (!callback_) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (!callback_(Progress{done, total_, elapsed})) {
    throw Error(ErrorKind::cancelled, what_ + " was cancelled after " + std::to_string(done) +
                                          " of " + std::to_string(total_) +
                                          (unit_.empty() ? "" : " " + unit_));
  }
}

}  // namespace lwm
