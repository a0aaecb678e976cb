// Byte counts in messages ("12.50 GiB"), shared by the KV cache's and the planner's errors.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace lwm {

inline std::string gib_text(std::int64_t bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f GiB",
                static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
  return text;
}

}  // namespace lwm
