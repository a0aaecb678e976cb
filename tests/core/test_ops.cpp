// CPU kernels (ops.h) against plain double-precision references written here.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "lwm/error.h"
#include "lwm/linear.h"
#include "lwm/ops.h"
#include "lwm/tensor.h"
#include "test_support.h"

namespace lwm {
namespace {

constexpr double kFloatEps = 1.0 / (1 << 24);  // unit roundoff of float32 (2^-24)

std::string seed_trace(std::uint64_t seed) {
  return "LWM_TEST_SEED=" + std::to_string(seed);
}

using test::expect_within;

void expect_close(const std::vector<float>& actual, const std::vector<double>& expected,
                  double atol, double rtol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  const test::Closeness c =
      test::compare(actual.data(), expected.data(), actual.size(), atol, rtol);
  EXPECT_TRUE(c.ok) << what << ": worst element " << c.worst_index << " is "
                    << actual[c.worst_index] << ", expected " << expected[c.worst_index]
                    << " (ratio " << c.worst_ratio << ", max abs error " << c.max_abs_error << ")";
}

// --- linear -----------------------------------------------------------------------------------

struct LinearCase {
  std::int64_t m, in, out;
};

TEST(Linear, MatchesFp64ForBothLayoutsAndAllStorageTypes) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  const std::vector<LinearCase> cases = {{1, 1, 1},     {1, 7, 65},   {3, 65, 7},   {17, 257, 65},
                                         {64, 65, 257}, {3, 257, 1},  {17, 1, 257}, {64, 7, 7},
                                         {1, 257, 257}, {64, 128, 96}};
  for (const LinearCase& c : cases) {
    for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
      for (MatrixLayout layout : {MatrixLayout::in_out, MatrixLayout::out_in}) {
        const std::string what = "m=" + std::to_string(c.m) + " in=" + std::to_string(c.in) +
                                 " out=" + std::to_string(c.out) + " " + dtype_name(dtype) +
                                 (layout == MatrixLayout::in_out ? " in_out" : " out_in");
        SCOPED_TRACE(what);
        const std::vector<float> x = test::random_normal(static_cast<std::size_t>(c.m * c.in), rng);
        const Shape shape =
            layout == MatrixLayout::in_out ? Shape{c.in, c.out} : Shape{c.out, c.in};
        const std::vector<float> w_values =
            test::random_normal(static_cast<std::size_t>(c.in * c.out), rng, 0.5f);
        Linear w{Tensor::from_floats(shape, w_values).to(dtype), layout};
        ASSERT_EQ(w.in_features(), c.in);
        ASSERT_EQ(w.out_features(), c.out);
        // The reference multiplies by the stored (already rounded) weights widened to double, so
        // the only difference left is float32 accumulation.
        const std::vector<float> stored = w.weight.to_floats();
        auto weight = [&](std::int64_t i, std::int64_t o) {
          return static_cast<double>(layout == MatrixLayout::in_out ? stored[i * c.out + o]
                                                                    : stored[o * c.in + i]);
        };
        std::vector<double> expected(static_cast<std::size_t>(c.m * c.out)), bound(expected.size());
        for (std::int64_t r = 0; r < c.m; ++r) {
          for (std::int64_t o = 0; o < c.out; ++o) {
            double sum = 0.0, magnitude = 0.0;
            for (std::int64_t i = 0; i < c.in; ++i) {
              const double term = x[r * c.in + i] * weight(i, o);
              sum += term;
              magnitude += std::fabs(term);
            }
            expected[r * c.out + o] = sum;
            // Float32 summation of k terms errs by at most about k·u·Σ|terms| (worst case) and
            // typically sqrt(k)·u·Σ|terms|; 4·sqrt(k) + 4 ulps of Σ|terms| leaves headroom for any
            // summation order (blocked, pairwise, FMA) while a bf16 rounding of x or of the
            // result (2^-9 relative) would be 100× over.
            bound[r * c.out + o] =
                (4.0 * std::sqrt(static_cast<double>(c.in)) + 4.0) * kFloatEps * magnitude + 1e-30;
          }
        }
        std::vector<float> y(expected.size(), std::numeric_limits<float>::quiet_NaN());
        cpu::linear(x.data(), c.m, w, y.data());
        expect_within(y, expected, bound, what);
      }
    }
  }
}

// A view of row-major [in, out] weights that is a slice of a larger tensor (the way stacked JAX
// layers arrive) must be read at its own offset.
TEST(Linear, WorksOnSlicedViews) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  const std::int64_t layers = 3, in = 9, out = 5, m = 4;
  const std::vector<float> all =
      test::random_normal(static_cast<std::size_t>(layers * in * out), rng);
  const Tensor stacked = Tensor::from_floats({layers, in, out}, all).to(DType::bf16);
  const std::vector<float> widened = stacked.to_floats();
  const std::vector<float> x = test::random_normal(static_cast<std::size_t>(m * in), rng);
  for (std::int64_t l = 0; l < layers; ++l) {
    Linear w{stacked.slice_rows(l, l + 1).reshaped({in, out}), MatrixLayout::in_out};
    std::vector<double> expected(static_cast<std::size_t>(m * out), 0.0);
    for (std::int64_t r = 0; r < m; ++r)
      for (std::int64_t o = 0; o < out; ++o)
        for (std::int64_t i = 0; i < in; ++i)
          expected[r * out + o] +=
              x[r * in + i] * static_cast<double>(widened[(l * in + i) * out + o]);
    std::vector<float> y(expected.size());
    cpu::linear(x.data(), m, w, y.data());
    expect_close(y, expected, 1e-5, 1e-5, "layer " + std::to_string(l));
  }
}

// --- rms_norm ---------------------------------------------------------------------------------

TEST(RmsNorm, MatchesFp64) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  const float eps = 1e-6f;
  // Scales: ordinary activations, large residual streams, and values so small that eps dominates
  // mean(x²) (which shows where eps is added).
  for (float scale : {1.0f, 300.0f, 1e-4f}) {
    for (std::int64_t n : {1, 7, 64, 257}) {
      for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
        const std::int64_t m = 5;
        SCOPED_TRACE("n=" + std::to_string(n) + " scale=" + std::to_string(scale) + " " +
                     dtype_name(dtype));
        const std::vector<float> x =
            test::random_normal(static_cast<std::size_t>(m * n), rng, scale);
        std::vector<float> w_values = test::random_normal(static_cast<std::size_t>(n), rng, 0.3f);
        for (float& v : w_values) v += 1.0f;
        const Tensor weight = Tensor::from_floats({n}, w_values).to(dtype);
        const std::vector<float> w = weight.to_floats();
        std::vector<double> expected(x.size());
        for (std::int64_t r = 0; r < m; ++r) {
          double mean_square = 0.0;
          for (std::int64_t i = 0; i < n; ++i)
            mean_square += static_cast<double>(x[r * n + i]) * x[r * n + i];
          mean_square /= static_cast<double>(n);
          const double inv = 1.0 / std::sqrt(mean_square + static_cast<double>(eps));
          for (std::int64_t i = 0; i < n; ++i) expected[r * n + i] = x[r * n + i] * inv * w[i];
        }
        std::vector<float> y(x.size(), std::numeric_limits<float>::quiet_NaN());
        cpu::rms_norm(x.data(), m, n, weight, eps, y.data());
        // Outputs are O(1); the float32 sum of squares, rsqrt and two products each cost a few
        // ulps (sqrt(n)·u for the sum): 2e-6 relative, 1e-6 absolute near zero.
        expect_close(y, expected, 1e-6, 2e-6 * (1.0 + std::sqrt(static_cast<double>(n)) / 4.0),
                     "rms_norm");
      }
    }
  }
}

// --- swiglu -----------------------------------------------------------------------------------

std::vector<double> swiglu_reference(const std::vector<float>& gate, const std::vector<float>& up) {
  std::vector<double> out(gate.size());
  for (std::size_t i = 0; i < gate.size(); ++i) {
    const double g = gate[i];
    out[i] = g / (1.0 + std::exp(-g)) * up[i];
  }
  return out;
}

TEST(Swiglu, MatchesFp64IncludingAliasedOutputs) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (std::size_t n : {1u, 7u, 65u, 257u, 1000u}) {
    std::vector<float> gate = test::random_normal(n, rng, 4.0f);
    const std::vector<float> up = test::random_normal(n, rng, 2.0f);
    // Saturated gates: silu(±1000) must be ±1000·(0 or 1), never NaN from inf/inf.
    gate[0] = n > 1 ? -1000.0f : 1000.0f;
    if (n > 2) gate[1] = 1000.0f;
    if (n > 3) gate[2] = -90.0f;
    const std::vector<double> expected = swiglu_reference(gate, up);
    // Relative 1e-5 covers a vectorised exp (a few ulps) plus the divide and two products;
    // absolute 1e-30 only for the subnormal tail of silu(−90).
    std::vector<float> out(n, std::numeric_limits<float>::quiet_NaN());
    cpu::swiglu(gate.data(), up.data(), out.data(), static_cast<std::int64_t>(n));
    expect_close(out, expected, 1e-30, 1e-5, "separate output");
    std::vector<float> in_gate = gate;
    cpu::swiglu(in_gate.data(), up.data(), in_gate.data(), static_cast<std::int64_t>(n));
    expect_close(in_gate, expected, 1e-30, 1e-5, "out aliases gate");
    std::vector<float> in_up = up;
    cpu::swiglu(gate.data(), in_up.data(), in_up.data(), static_cast<std::int64_t>(n));
    expect_close(in_up, expected, 1e-30, 1e-5, "out aliases up");
  }
}

// --- embedding --------------------------------------------------------------------------------

TEST(Embedding, GathersRowsForEveryStorageType) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  const std::int64_t vocab = 97, dim = 33;
  const std::vector<float> values = test::random_normal(static_cast<std::size_t>(vocab * dim), rng);
  const std::vector<std::int32_t> ids = {0, 96, 5, 5, 42, 1, 95};
  for (DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Tensor table = Tensor::from_floats({vocab, dim}, values).to(dtype);
    const std::vector<float> widened = table.to_floats();
    std::vector<float> out(ids.size() * dim, std::numeric_limits<float>::quiet_NaN());
    cpu::embedding(table, ids, out.data());
    for (std::size_t t = 0; t < ids.size(); ++t)
      for (std::int64_t d = 0; d < dim; ++d)
        ASSERT_EQ(out[t * dim + d], widened[ids[t] * dim + d]) << "token " << t << " dim " << d;
  }
}

TEST(Embedding, OutOfRangeIdThrows) {
  const Tensor table = Tensor::zeros(DType::bf16, {10, 4});
  std::vector<float> out(3 * 4);
  const std::vector<std::int32_t> too_big = {1, 10, 2};
  const std::vector<std::int32_t> negative = {-1};
  EXPECT_THROW(cpu::embedding(table, too_big, out.data()), Error);
  EXPECT_THROW(cpu::embedding(table, negative, out.data()), Error);
  const std::vector<std::int32_t> last = {9};
  EXPECT_NO_THROW(cpu::embedding(table, last, out.data()));
}

// --- softmax ----------------------------------------------------------------------------------

TEST(Softmax, MatchesFp64WithLargeValuesAndMaskedEntries) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  const float minus_inf = -std::numeric_limits<float>::infinity();
  for (std::int64_t n : {1, 2, 7, 65, 257}) {
    const std::int64_t m = 6;
    std::vector<float> x = test::random_normal(static_cast<std::size_t>(m * n), rng, 3.0f);
    // Row 1: shifted by +1e4 (overflows exp without the max subtraction); row 2: by −1e4;
    // row 3: some −inf entries (masks), keeping at least one finite; row 4: peaked (one entry
    // 80 above the rest); row 5: all equal.
    for (std::int64_t i = 0; i < n; ++i) {
      x[1 * n + i] += 1e4f;
      x[2 * n + i] -= 1e4f;
      if (i % 3 == 1) x[3 * n + i] = minus_inf;
      x[5 * n + i] = 0.5f;
    }
    x[4 * n + n / 2] += 80.0f;
    std::vector<double> expected(x.size());
    for (std::int64_t r = 0; r < m; ++r) {
      double max = -INFINITY;
      for (std::int64_t i = 0; i < n; ++i) max = std::max(max, static_cast<double>(x[r * n + i]));
      double sum = 0.0;
      for (std::int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[r * n + i]) - max);
      for (std::int64_t i = 0; i < n; ++i)
        expected[r * n + i] = std::exp(static_cast<double>(x[r * n + i]) - max) / sum;
    }
    std::vector<float> y = x;
    cpu::softmax(y.data(), m, n);
    // Probabilities: 2e-5 relative for exp, subtraction and normalisation in float32 (inputs near
    // 1e4 carry only 1e-3 absolute precision, but the reference sees the same rounded inputs);
    // 1e-7 absolute for tiny entries.
    SCOPED_TRACE("n=" + std::to_string(n));
    expect_close(y, expected, 1e-7, 2e-5, "softmax");
    for (std::int64_t i = 1; i < n; i += 3) EXPECT_EQ(y[3 * n + i], 0.0f) << "masked entry " << i;
  }
}

TEST(AddInplace, IsExactlyRoundedSum) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (std::size_t n : {1u, 7u, 65u, 1001u}) {
    std::vector<float> y = test::random_normal(n, rng, 100.0f);
    const std::vector<float> x = test::random_normal(n, rng, 1e-3f);
    std::vector<float> expected(n);
    // Double rounding through double is harmless for one float addition (53 ≥ 2·24 + 2), so the
    // correctly rounded float sum is exactly this.
    for (std::size_t i = 0; i < n; ++i)
      expected[i] = static_cast<float>(static_cast<double>(y[i]) + x[i]);
    cpu::add_inplace(y.data(), x.data(), static_cast<std::int64_t>(n));
    EXPECT_EQ(y, expected) << "n=" << n;
  }
}

}  // namespace
}  // namespace lwm
