// Numbers written for people, the same in the command line and the desktop app: counts with
// thousands separators and byte sizes in binary units.
#pragma once

#include <cstdint>
#include <string>

namespace lwm {

// 1234567 → "1,234,567"; -1234 → "-1,234".
std::string format_count(std::int64_t value);
// "512 B", "1.50 KiB", "36.0 MiB", "2.00 GiB": three significant digits from KiB up.
std::string format_bytes(std::int64_t bytes);

}  // namespace lwm
