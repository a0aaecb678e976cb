// Storage types and the Tensor container against references computed independently: rounding is
// decided by comparing distances in double precision to the two neighbouring representable
// values, never by the bit tricks the implementation uses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "lwm/dtype.h"
#include "lwm/error.h"
#include "lwm/tensor.h"
#include "test_support.h"

namespace lwm {
namespace {

float float_from_bits(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::uint32_t bits_of(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, 4);
  return bits;
}

// Value of a bfloat16 pattern from its fields: (-1)^s · 2^(e−127) · (1 + m/128), or subnormal.
double bf16_value(std::uint16_t b) {
  const int sign = b >> 15, exponent = (b >> 7) & 0xff, mantissa = b & 0x7f;
  double magnitude;
  if (exponent == 0xff) {
    magnitude = mantissa == 0 ? std::numeric_limits<double>::infinity()
                              : std::numeric_limits<double>::quiet_NaN();
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<double>(mantissa), -126 - 7);
  } else {
    magnitude = std::ldexp(1.0 + mantissa / 128.0, exponent - 127);
  }
  return sign ? -magnitude : magnitude;
}

// Same for IEEE binary16: bias 15, 10 mantissa bits, subnormals 2^-24 · m.
double f16_value(std::uint16_t h) {
  const int sign = h >> 15, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  double magnitude;
  if (exponent == 0x1f) {
    magnitude = mantissa == 0 ? std::numeric_limits<double>::infinity()
                              : std::numeric_limits<double>::quiet_NaN();
  } else if (exponent == 0) {
    magnitude = std::ldexp(static_cast<double>(mantissa), -24);
  } else {
    magnitude = std::ldexp(1.0 + mantissa / 1024.0, exponent - 15);
  }
  return sign ? -magnitude : magnitude;
}

// Round-to-nearest-even for any non-NaN float, given the ascending table of non-negative
// representable magnitudes whose pattern index is its position (bf16 and f16 patterns are
// monotone in their magnitude). The entry after the largest finite value stands for the value
// one ulp above it (2^128 for bf16, 2^16 for f16): by IEEE rules a number at least halfway to it
// rounds to infinity, which is exactly that pattern (exponent all ones, even mantissa 0).
std::uint16_t round_with_table(float value, const std::vector<double>& magnitudes) {
  const double x = std::fabs(static_cast<double>(value));
  const std::uint16_t sign = std::signbit(value) ? 0x8000 : 0;
  const std::size_t inf_index = magnitudes.size() - 1;
  if (std::isinf(value)) return static_cast<std::uint16_t>(sign | inf_index);
  // First magnitude strictly greater than x, and the one below it.
  const auto upper = std::upper_bound(magnitudes.begin(), magnitudes.end(), x);
  if (upper == magnitudes.end()) return static_cast<std::uint16_t>(sign | inf_index);
  const std::size_t hi = static_cast<std::size_t>(upper - magnitudes.begin());
  const std::size_t lo = hi - 1;
  if (magnitudes[lo] == x) return static_cast<std::uint16_t>(sign | lo);
  const double below = x - magnitudes[lo], above = magnitudes[hi] - x;
  std::size_t chosen = below < above ? lo : above < below ? hi : (lo % 2 == 0 ? lo : hi);
  return static_cast<std::uint16_t>(sign | chosen);
}

std::vector<double> magnitudes(double (*value)(std::uint16_t), std::uint16_t inf_pattern,
                               double above_max) {
  std::vector<double> table;
  for (std::uint32_t b = 0; b < inf_pattern; ++b)
    table.push_back(value(static_cast<std::uint16_t>(b)));
  table.push_back(above_max);
  return table;
}

const std::vector<double>& bf16_table() {
  static const std::vector<double> table = magnitudes(bf16_value, 0x7f80, std::ldexp(1.0, 128));
  return table;
}

const std::vector<double>& f16_table() {
  static const std::vector<double> table = magnitudes(f16_value, 0x7c00, 65536.0);
  return table;
}

bool bf16_is_nan(std::uint16_t b) {
  return (b & 0x7f80) == 0x7f80 && (b & 0x7f) != 0;
}
bool f16_is_nan(std::uint16_t h) {
  return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
}

// The floats a rounding test must see: every representable value of the target type, the exact
// midpoints between neighbours (ties), one float ulp on either side of each midpoint, and both
// signs. The midpoints of bf16 and f16 neighbours have at most 12 significant bits, so they are
// exact floats.
std::vector<float> rounding_probes(const std::vector<double>& table) {
  std::vector<float> probes;
  for (std::size_t i = 0; i + 1 < table.size(); ++i) {
    const float v = static_cast<float>(table[i]);
    const float mid = static_cast<float>((table[i] + table[i + 1]) / 2);
    EXPECT_EQ(static_cast<double>(mid), (table[i] + table[i + 1]) / 2) << "midpoint not exact";
    for (float p : {v, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY)}) {
      probes.push_back(p);
      probes.push_back(-p);
    }
  }
  return probes;
}

TEST(DType, NamesSizesAndParsing) {
  EXPECT_EQ(dtype_size(DType::f32), 4u);
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::f16), 2u);
  EXPECT_STREQ(dtype_name(DType::f32), "f32");
  EXPECT_STREQ(dtype_name(DType::bf16), "bf16");
  EXPECT_STREQ(dtype_name(DType::f16), "f16");
  for (DType d : {DType::f32, DType::bf16, DType::f16}) EXPECT_EQ(parse_dtype(dtype_name(d)), d);
  EXPECT_EQ(parse_dtype("F32"), DType::f32);
  EXPECT_EQ(parse_dtype("BF16"), DType::bf16);
  EXPECT_EQ(parse_dtype("F16"), DType::f16);
  EXPECT_THROW(parse_dtype("I8"), Error);
  EXPECT_THROW(parse_dtype("F64"), Error);
  EXPECT_THROW(parse_dtype(""), Error);
}

TEST(DType, Bf16ToFloatIsExactForEveryPattern) {
  for (std::uint32_t b = 0; b <= 0xffff; ++b) {
    const auto pattern = static_cast<std::uint16_t>(b);
    const double expected = bf16_value(pattern);
    const float actual = bf16_to_float(pattern);
    if (std::isnan(expected)) {
      ASSERT_TRUE(std::isnan(actual)) << std::hex << b;
    } else {
      ASSERT_EQ(static_cast<double>(actual), expected) << std::hex << b;
      ASSERT_EQ(std::signbit(actual), (b & 0x8000) != 0) << std::hex << b;  // -0 stays -0
    }
  }
}

TEST(DType, F16ToFloatIsExactForEveryPattern) {
  for (std::uint32_t h = 0; h <= 0xffff; ++h) {
    const auto pattern = static_cast<std::uint16_t>(h);
    const double expected = f16_value(pattern);
    const float actual = f16_to_float(pattern);
    if (std::isnan(expected)) {
      ASSERT_TRUE(std::isnan(actual)) << std::hex << h;
    } else {
      ASSERT_EQ(static_cast<double>(actual), expected) << std::hex << h;
      ASSERT_EQ(std::signbit(actual), (h & 0x8000) != 0) << std::hex << h;
    }
  }
}

TEST(DType, FloatToBf16RoundsToNearestEvenAtEveryTie) {
  for (float p : rounding_probes(bf16_table())) {
    ASSERT_EQ(float_to_bf16(p), round_with_table(p, bf16_table()))
        << p << " bits " << std::hex << bits_of(p);
  }
}

TEST(DType, FloatToF16RoundsToNearestEvenAtEveryTie) {
  // Includes 2^-25 (half the smallest subnormal: ties to 0), 65520 (halfway from the largest
  // finite value 65504 to 2^16: ties to infinity) and every subnormal.
  for (float p : rounding_probes(f16_table())) {
    ASSERT_EQ(float_to_f16(p), round_with_table(p, f16_table()))
        << p << " bits " << std::hex << bits_of(p);
  }
}

// Every float pattern whose low 16 bits are one of the interesting values (exact, tie, one off a
// tie, extremes), for all 65536 upper halves: covers all exponents, signs, subnormals, overflow.
TEST(DType, FloatToBf16DenseSweep) {
  const std::uint32_t lows[] = {0x0000, 0x0001, 0x7fff, 0x8000, 0x8001, 0xffff, 0x4000, 0xc000};
  for (std::uint32_t high = 0; high <= 0xffff; ++high) {
    for (std::uint32_t low : lows) {
      const std::uint32_t bits = (high << 16) | low;
      const float f = float_from_bits(bits);
      const std::uint16_t actual = float_to_bf16(f);
      if (std::isnan(f)) {
        ASSERT_TRUE(bf16_is_nan(actual)) << std::hex << bits;  // a NaN must not become Inf
        ASSERT_EQ(actual & 0x8000, (bits >> 16) & 0x8000) << std::hex << bits;
      } else {
        ASSERT_EQ(actual, round_with_table(f, bf16_table())) << std::hex << bits;
      }
    }
  }
}

// A strided sweep over all float patterns (a prime stride so every low-bit residue is visited)
// plus random patterns from this run's seed.
TEST(DType, FloatToF16DenseSweep) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("LWM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::vector<std::uint32_t> patterns;
  for (std::uint64_t bits = 0; bits <= 0xffffffffu; bits += 4099)
    patterns.push_back(static_cast<std::uint32_t>(bits));
  for (int i = 0; i < 200000; ++i) patterns.push_back(static_cast<std::uint32_t>(rng()));
  for (std::uint32_t bits : patterns) {
    const float f = float_from_bits(bits);
    const std::uint16_t actual = float_to_f16(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(f16_is_nan(actual)) << std::hex << bits;
      ASSERT_EQ(actual & 0x8000, (bits >> 16) & 0x8000) << std::hex << bits;
    } else {
      ASSERT_EQ(actual, round_with_table(f, f16_table())) << std::hex << bits << " = " << f;
    }
  }
}

TEST(DType, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(float_to_bf16(inf), 0x7f80);
  EXPECT_EQ(float_to_bf16(-inf), 0xff80);
  EXPECT_EQ(float_to_f16(inf), 0x7c00);
  EXPECT_EQ(float_to_f16(-inf), 0xfc00);
  EXPECT_TRUE(bf16_is_nan(float_to_bf16(nan)));
  EXPECT_TRUE(f16_is_nan(float_to_f16(nan)));
  // A signalling NaN whose payload lives only in the low 16 bits must still be a NaN in bf16.
  EXPECT_TRUE(bf16_is_nan(float_to_bf16(float_from_bits(0x7f800001u))));
  EXPECT_TRUE(f16_is_nan(float_to_f16(float_from_bits(0x7f800001u))));
  EXPECT_EQ(float_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_f16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_f16(65519.996f), 0x7bff);
  EXPECT_EQ(float_to_f16(65520.0f), 0x7c00);
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(float_to_f16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(float_to_f16(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(float_to_f16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 subnormal ulps: tie to even
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_TRUE(std::isinf(f16_to_float(0x7c00)));
  EXPECT_TRUE(std::isnan(f16_to_float(0x7e00)));
  EXPECT_TRUE(std::isnan(bf16_to_float(0x7fc0)));
}

TEST(DType, BulkConversionsMatchElementwise) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("LWM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  // Odd length so any vectorised path has a tail; values span many binades.
  std::vector<float> values = test::random_normal(1031, rng, 3.0f);
  for (std::size_t i = 0; i < values.size(); i += 7)
    values[i] *= std::ldexp(1.0f, static_cast<int>(i % 40) - 20);
  values.push_back(std::numeric_limits<float>::infinity());
  values.push_back(-0.0f);
  values.push_back(1e-30f);
  values.push_back(70000.0f);
  const std::size_t n = values.size();

  std::vector<std::uint16_t> half(n);
  std::vector<float> back(n);
  from_float(DType::bf16, values.data(), half.data(), n);
  to_float(DType::bf16, half.data(), back.data(), n);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(half[i], round_with_table(values[i], bf16_table())) << i;
    ASSERT_EQ(static_cast<double>(back[i]), bf16_value(half[i])) << i;
  }
  from_float(DType::f16, values.data(), half.data(), n);
  to_float(DType::f16, half.data(), back.data(), n);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(half[i], round_with_table(values[i], f16_table())) << i;
    ASSERT_EQ(static_cast<double>(back[i]), f16_value(half[i])) << i;
  }
  std::vector<float> copy(n);
  from_float(DType::f32, values.data(), copy.data(), n);
  EXPECT_EQ(std::memcmp(copy.data(), values.data(), n * 4), 0);
  std::fill(back.begin(), back.end(), 0.0f);
  to_float(DType::f32, copy.data(), back.data(), n);
  EXPECT_EQ(std::memcmp(back.data(), values.data(), n * 4), 0);
}

// --- Tensor ---------------------------------------------------------------------------------

TEST(Tensor, ShapeHelpers) {
  EXPECT_EQ(shape_numel({2, 3, 4}), 24);
  EXPECT_EQ(shape_numel({5, 0}), 0);
  EXPECT_EQ(shape_string({32, 4096}), "[32, 4096]");
  EXPECT_EQ(shape_string({7}), "[7]");
}

TEST(Tensor, ZerosHasShapeDtypeAndZeroBytes) {
  for (DType d : {DType::f32, DType::bf16, DType::f16}) {
    const Tensor t = Tensor::zeros(d, {3, 5, 2});
    EXPECT_TRUE(t.defined());
    EXPECT_EQ(t.dtype(), d);
    EXPECT_EQ(t.rank(), 3);
    EXPECT_EQ(t.numel(), 30);
    EXPECT_EQ(t.nbytes(), 30 * dtype_size(d));
    EXPECT_EQ(t.dim(0), 3);
    EXPECT_EQ(t.dim(-1), 2);
    EXPECT_EQ(t.dim(-3), 3);
    EXPECT_THROW(t.dim(3), Error);
    EXPECT_THROW(t.dim(-4), Error);
    const auto* bytes = static_cast<const unsigned char*>(t.raw());
    EXPECT_TRUE(std::all_of(bytes, bytes + t.nbytes(), [](unsigned char b) { return b == 0; }));
    for (float v : t.to_floats()) EXPECT_EQ(v, 0.0f);
  }
}

TEST(Tensor, TypedAccessChecksTheDtype) {
  Tensor f = Tensor::zeros(DType::f32, {4});
  EXPECT_NO_THROW(f.f32());
  f.mutable_f32()[2] = 5.0f;
  EXPECT_EQ(f.f32()[2], 5.0f);
  const Tensor b = Tensor::zeros(DType::bf16, {4});
  EXPECT_THROW(b.f32(), Error);
  Tensor h = Tensor::zeros(DType::f16, {4});
  EXPECT_THROW(h.mutable_f32(), Error);
}

TEST(Tensor, FromFloatsCopiesAndChecksCount) {
  std::vector<float> values = {1, 2, 3, 4, 5, 6};
  const Tensor t = Tensor::from_floats({2, 3}, values);
  values[0] = 100;  // a copy: later changes to the source do not show
  EXPECT_EQ(t.dtype(), DType::f32);
  EXPECT_EQ(t.f32()[0], 1.0f);
  EXPECT_EQ(t.f32()[5], 6.0f);
  EXPECT_THROW(Tensor::from_floats({4, 2}, {1, 2, 3}), Error);
}

TEST(Tensor, ViewReadsExternalBytesAndKeepsThemAlive) {
  auto owner = std::make_shared<std::vector<std::uint16_t>>();
  for (float v : {1.5f, -2.0f, 0.25f, 3.0f, 1e-3f, 7.0f}) owner->push_back(float_to_bf16(v));
  const void* data = owner->data();
  Tensor t = Tensor::view(DType::bf16, {3, 2}, data, owner);
  std::weak_ptr<std::vector<std::uint16_t>> watch = owner;
  owner.reset();
  EXPECT_FALSE(watch.expired()) << "the view must hold its keep_alive";
  EXPECT_EQ(t.raw(), data);
  const std::vector<float> floats = t.to_floats();
  ASSERT_EQ(floats.size(), 6u);
  EXPECT_EQ(floats[1], -2.0f);
  EXPECT_EQ(floats[4], bf16_to_float(float_to_bf16(1e-3f)));
  // Views are of read-only memory (a const pointer, typically a mapped file).
  EXPECT_THROW(t.mutable_raw(), Error);
  Tensor row = t.slice_rows(2, 3);
  t = Tensor();
  EXPECT_FALSE(watch.expired()) << "a slice must keep the bytes alive too";
  EXPECT_EQ(row.to_floats(), (std::vector<float>{bf16_to_float(float_to_bf16(1e-3f)), 7.0f}));
  row = Tensor();
  EXPECT_TRUE(watch.expired()) << "no copy of the owner may outlive the last tensor";
}

TEST(Tensor, SliceRowsSharesStorage) {
  std::vector<float> values(4 * 3);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
  Tensor t = Tensor::from_floats({4, 3}, values);
  Tensor middle = t.slice_rows(1, 3);
  EXPECT_EQ(middle.shape(), (Shape{2, 3}));
  EXPECT_EQ(middle.f32(), t.f32() + 3);
  EXPECT_EQ(middle.f32()[0], 3.0f);
  middle.mutable_f32()[1] = -1.0f;
  EXPECT_EQ(t.f32()[4], -1.0f) << "writes through a slice must reach the parent";
  EXPECT_EQ(t.slice_rows(0, 0).numel(), 0);
  EXPECT_EQ(t.slice_rows(4, 4).numel(), 0);
  EXPECT_EQ(t.slice_rows(0, 4).numel(), 12);
  EXPECT_THROW(t.slice_rows(0, 5), Error);
  EXPECT_THROW(t.slice_rows(3, 2), Error);
  EXPECT_THROW(t.slice_rows(-1, 2), Error);
  // Rank 3: a row is a whole [d1, d2] block.
  const Tensor cube = Tensor::zeros(DType::bf16, {5, 2, 3});
  const Tensor s = cube.slice_rows(2, 4);
  EXPECT_EQ(s.shape(), (Shape{2, 2, 3}));
  EXPECT_EQ(static_cast<const char*>(s.raw()), static_cast<const char*>(cube.raw()) + 2 * 6 * 2);
}

TEST(Tensor, ReshapedKeepsBytesAndChecksCount) {
  std::vector<float> values(24);
  for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.5f;
  const Tensor t = Tensor::from_floats({2, 3, 4}, values);
  const Tensor r = t.reshaped({6, 4});
  EXPECT_EQ(r.shape(), (Shape{6, 4}));
  EXPECT_EQ(r.raw(), t.raw());
  EXPECT_EQ(r.to_floats(), values);
  EXPECT_EQ(t.reshaped({24}).dim(0), 24);
  EXPECT_THROW(t.reshaped({5, 5}), Error);
  EXPECT_THROW(t.reshaped({25}), Error);
}

TEST(Tensor, ToConvertsWithRoundingAndOwnsTheCopy) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("LWM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::vector<float> values = test::random_normal(37, rng, 10.0f);
  const Tensor t = Tensor::from_floats({37}, values);
  for (DType d : {DType::bf16, DType::f16}) {
    const Tensor c = t.to(d);
    EXPECT_EQ(c.dtype(), d);
    EXPECT_EQ(c.shape(), t.shape());
    EXPECT_NE(c.raw(), t.raw());
    const auto* stored = static_cast<const std::uint16_t*>(c.raw());
    const std::vector<float> widened = c.to_floats();
    for (std::size_t i = 0; i < values.size(); ++i) {
      const std::uint16_t expected =
          round_with_table(values[i], d == DType::bf16 ? bf16_table() : f16_table());
      ASSERT_EQ(stored[i], expected) << i;
      ASSERT_EQ(static_cast<double>(widened[i]),
                d == DType::bf16 ? bf16_value(expected) : f16_value(expected));
    }
    // And back: widening a bf16/f16 tensor to f32 is exact.
    const Tensor back = c.to(DType::f32);
    EXPECT_EQ(back.to_floats(), widened);
  }
  const Tensor same = t.to(DType::f32);
  EXPECT_NE(same.raw(), t.raw()) << "to() returns an owned copy";
  EXPECT_EQ(same.to_floats(), values);
}

}  // namespace
}  // namespace lwm
