#include "lwm/error.h"

namespace lwm {

const char* to_string(ErrorKind kind) noexcept {
  switch (kind) {
    case ErrorKind::invalid_argument: return "invalid argument";
    case ErrorKind::io: return "input/output";
    case ErrorKind::file_format: return "file format";
    case ErrorKind::config: return "configuration";
    case ErrorKind::unsupported: return "unsupported";
    case ErrorKind::out_of_memory: return "out of memory";
    case ErrorKind::cancelled: return "cancelled";
    case ErrorKind::communication: return "communication";
    case ErrorKind::device: return "device";
  }
  return "unknown";
}

}  // namespace lwm
