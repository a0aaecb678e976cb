// The exit codes of every LWM Studio command-line program (`lwm`, `lwm-train`), documented in
// their --help: one mapping from the library's error kinds, so both programs say the same thing.
#pragma once

#include "lwm/error.h"

namespace lwm::cli {

enum ExitCode : int {
  kExitOk = 0,
  kExitUsage = 1,
  kExitBadInput = 2,
  kExitTooLarge = 3,
  kExitCancelled = 4,
  kExitInternal = 5,
  kExitCheckFailed = 6,  // a check the user asked for failed (lwm eval needle --min-accuracy)
};

inline int exit_code_for(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::invalid_argument:
      return kExitUsage;
    case ErrorKind::io:
    case ErrorKind::file_format:
    case ErrorKind::config:
    case ErrorKind::unsupported:
      return kExitBadInput;
    case ErrorKind::out_of_memory:
      return kExitTooLarge;
    case ErrorKind::cancelled:
      return kExitCancelled;
    case ErrorKind::communication:  // a device or rank failed under us: not the user's input
    case ErrorKind::device:
      return kExitInternal;
  }
  return kExitInternal;
}

}  // namespace lwm::cli
