// Errors raised by lwm::core. Every message names the offending file, key, shape or device;
// the kind lets the CLI and the GUI choose an exit code or a dialog without parsing text.
#pragma once

#include <stdexcept>
#include <string>

namespace lwm {

enum class ErrorKind {
  invalid_argument,  // a caller passed something impossible (shapes, options)
  io,                // a file could not be opened, read or written
  file_format,       // a file exists but its contents are wrong (truncated, corrupt, lying header)
  config,            // a model configuration that cannot describe a working model
  unsupported,       // valid input we do not handle (an unknown dtype, say)
  out_of_memory,     // the work does not fit in the memory available
  cancelled,         // a progress callback asked to stop
  communication,     // a peer rank failed, timed out, or disagreed on configuration or operations
  device,            // a GPU call failed: driver, launch, missing kernel image, hardware fault
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

// Short lowercase name of a kind ("file format"), for messages.
const char* to_string(ErrorKind kind) noexcept;

}  // namespace lwm
