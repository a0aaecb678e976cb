// Numbers for people (lwm/format.h), as the command line and the desktop app print them.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "lwm/format.h"

namespace lwm {
namespace {

TEST(Format, CountsHaveThousandsSeparators) {
  EXPECT_EQ(format_count(0), "0");
  EXPECT_EQ(format_count(999), "999");
  EXPECT_EQ(format_count(1000), "1,000");
  EXPECT_EQ(format_count(1234567), "1,234,567");
  EXPECT_EQ(format_count(-1234), "-1,234");
  EXPECT_EQ(format_count(std::numeric_limits<std::int64_t>::max()), "9,223,372,036,854,775,807");
}

TEST(Format, BytesUseBinaryUnitsWithThreeSignificantDigits) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1024), "1.00 KiB");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(std::int64_t{36} << 20), "36.0 MiB");
  EXPECT_EQ(format_bytes(std::int64_t{3} << 29), "1.50 GiB");
  EXPECT_EQ(format_bytes(std::int64_t{5} << 50), "5.00 PiB");
  EXPECT_EQ(format_bytes(std::int64_t{5000} << 50), "5000.0 PiB");  // no unit past PiB
}

}  // namespace
}  // namespace lwm
