// RotaryEmbedding against the closed form of spec lwm-reference §1.3, computed here in double from
// the spec's float32 recipe, and the Hugging Face "rotate-half" pairing against the §1.6 row
// permutation of the interleaved one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "lwm/rope.h"
#include "test_support.h"

namespace lwm {
namespace {

std::string seed_trace(std::uint64_t seed) {
  return "LWM_TEST_SEED=" + std::to_string(seed);
}

// inv_freq[i] = 1 / theta^(float32(2i) / d), every step rounded to float32 as JAX does it in a
// float32 program. std::pow in double rounded once is at least as accurate as XLA's float pow.
std::vector<float> reference_inverse_frequencies(std::int64_t head_dim, double theta) {
  std::vector<float> inv(static_cast<std::size_t>(head_dim / 2));
  const float theta32 = static_cast<float>(theta);
  for (std::int64_t i = 0; i < head_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float power =
        static_cast<float>(std::pow(static_cast<double>(theta32), static_cast<double>(exponent)));
    inv[static_cast<std::size_t>(i)] = 1.0f / power;
  }
  return inv;
}

// Units in the last place between two positive floats.
std::int64_t ulp_distance(float a, float b) {
  std::int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::abs(static_cast<std::int64_t>(ia) - ib);
}

std::vector<std::int64_t> test_positions(std::mt19937_64& rng) {
  std::vector<std::int64_t> positions;
  for (std::int64_t t = 0; t < 40; ++t) positions.push_back(t);
  for (std::int64_t p : {127, 128, 4095, 4096, 32767, 32768, 131071, 524287, 1000000, 1048575})
    positions.push_back(p);
  std::uniform_int_distribution<std::int64_t> any(0, 1048575);
  for (int i = 0; i < 40; ++i) positions.push_back(any(rng));
  return positions;
}

TEST(Rope, InverseFrequenciesFollowTheFloat32Recipe) {
  for (double theta : {1e4, 1e6, 1e7, 2.5e7, 5e7}) {
    for (std::int64_t d : {64, 128}) {
      const RotaryEmbedding rope(d, theta, RopePairing::interleaved);
      EXPECT_EQ(rope.head_dim(), d);
      const std::vector<float> expected = reference_inverse_frequencies(d, theta);
      const std::vector<float>& actual = rope.inverse_frequencies();
      ASSERT_EQ(actual.size(), expected.size());
      EXPECT_EQ(actual[0], 1.0f);
      for (std::size_t i = 0; i < expected.size(); ++i) {
        // XLA's float32 pow is not correctly rounded, so one or two ulps either way are the same
        // recipe; a double-precision table would still agree here, which is why the angle test
        // below also pins the float32 rounding of t·inv_freq.
        EXPECT_LE(ulp_distance(actual[i], expected[i]), 2)
            << "theta " << theta << " d " << d << " i " << i << ": " << actual[i] << " vs "
            << expected[i];
      }
    }
  }
}

TEST(Rope, AnglesAreCosSinOfTheFloat32RoundedAngle) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  const std::vector<std::int64_t> positions = test_positions(rng);
  for (double theta : {1e4, 1e6, 1e7, 2.5e7, 5e7}) {
    for (std::int64_t d : {64, 128}) {
      SCOPED_TRACE("theta " + std::to_string(theta) + " head_dim " + std::to_string(d));
      const RotaryEmbedding rope(d, theta, RopePairing::interleaved);
      const std::vector<float>& inv = rope.inverse_frequencies();
      const std::size_t half = static_cast<std::size_t>(d / 2);
      std::vector<float> cos_table(positions.size() * half, NAN),
          sin_table(positions.size() * half, NAN);
      rope.angles(positions, cos_table.data(), sin_table.data());
      double worst = 0.0;
      for (std::size_t p = 0; p < positions.size(); ++p) {
        for (std::size_t i = 0; i < half; ++i) {
          // §1.3: the product formed exactly (double) and rounded once to float32; then cos/sin of
          // that float32 angle. At t ≈ 1e6 skipping the rounding moves the angle by up to
          // 1e6·2^-24 ≈ 0.06 rad, far beyond the 4e-7 allowed here (a couple of float ulps of a
          // value ≤ 1, for a cos/sin evaluated in float32 with proper range reduction).
          const float angle =
              static_cast<float>(static_cast<double>(positions[p]) * static_cast<double>(inv[i]));
          const double c = std::cos(static_cast<double>(angle)),
                       s = std::sin(static_cast<double>(angle));
          const double ec = std::fabs(cos_table[p * half + i] - c),
                       es = std::fabs(sin_table[p * half + i] - s);
          worst = std::max({worst, ec, es});
          ASSERT_LE(std::max(ec, es), 4e-7)
              << "position " << positions[p] << " pair " << i << " angle " << angle << ": cos "
              << cos_table[p * half + i] << " vs " << c << ", sin " << sin_table[p * half + i]
              << " vs " << s;
        }
      }
    }
  }
}

// y[2i] = x[2i]·c − x[2i+1]·s, y[2i+1] = x[2i]·s + x[2i+1]·c (spec §1.3), per token and head.
std::vector<double> rotate_interleaved(const std::vector<float>& x, std::int64_t tokens,
                                       std::int64_t heads, std::int64_t d,
                                       const std::vector<float>& cos_table,
                                       const std::vector<float>& sin_table) {
  std::vector<double> y(x.size());
  for (std::int64_t t = 0; t < tokens; ++t)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < d / 2; ++i) {
        const std::size_t base = static_cast<std::size_t>((t * heads + h) * d);
        const double c = cos_table[t * (d / 2) + i], s = sin_table[t * (d / 2) + i];
        const double a = x[base + 2 * i], b = x[base + 2 * i + 1];
        y[base + 2 * i] = a * c - b * s;
        y[base + 2 * i + 1] = a * s + b * c;
      }
  return y;
}

// HF row h·d + j·d/2 + i ← JAX row h·d + 2i + j (spec §1.6), applied to the features of a head.
std::vector<float> permute_to_half(const std::vector<float>& x, std::int64_t d) {
  std::vector<float> out(x.size());
  for (std::size_t head = 0; head < x.size() / static_cast<std::size_t>(d); ++head)
    for (std::int64_t i = 0; i < d / 2; ++i)
      for (std::int64_t j = 0; j < 2; ++j)
        out[head * d + j * (d / 2) + i] = x[head * d + 2 * i + j];
  return out;
}

TEST(Rope, InterleavedApplyMatchesClosedForm) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (std::int64_t d : {64, 128}) {
    for (double theta : {1e4, 5e7}) {
      const std::int64_t heads = 3;
      std::vector<std::int64_t> positions = test_positions(rng);
      const auto tokens = static_cast<std::int64_t>(positions.size());
      const RotaryEmbedding rope(d, theta, RopePairing::interleaved);
      std::vector<float> cos_table(positions.size() * d / 2), sin_table(cos_table.size());
      rope.angles(positions, cos_table.data(), sin_table.data());
      const std::vector<float> x =
          test::random_normal(static_cast<std::size_t>(tokens * heads * d), rng, 2.0f);
      const std::vector<double> expected =
          rotate_interleaved(x, tokens, heads, d, cos_table, sin_table);
      std::vector<float> y = x;
      rope.apply(y.data(), tokens, heads, cos_table.data(), sin_table.data());
      // Two products and one sum per element: a few float ulps of |x| ≈ 2..8.
      const test::Closeness c = test::compare(y.data(), expected.data(), y.size(), 4e-6, 1e-6);
      EXPECT_TRUE(c.ok) << "d " << d << " theta " << theta << " element " << c.worst_index << ": "
                        << y[c.worst_index] << " vs " << expected[c.worst_index];
      // A rotation preserves each pair's norm (a second, formula-free check of the pairing).
      for (std::size_t p = 0; p < x.size(); p += 2) {
        const double before = double{x[p]} * x[p] + double{x[p + 1]} * x[p + 1];
        const double after = double{y[p]} * y[p] + double{y[p + 1]} * y[p + 1];
        ASSERT_NEAR(after, before, 1e-5 * (1.0 + before)) << "pair at " << p;
      }
    }
  }
}

TEST(Rope, HalfPairingIsThePermutedInterleavedRotation) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (std::int64_t d : {64, 128}) {
    const double theta = 1e6;
    const std::int64_t heads = 4;
    const std::vector<std::int64_t> positions = test_positions(rng);
    const auto tokens = static_cast<std::int64_t>(positions.size());
    const RotaryEmbedding interleaved(d, theta, RopePairing::interleaved);
    const RotaryEmbedding half(d, theta, RopePairing::half);
    EXPECT_EQ(half.pairing(), RopePairing::half);
    EXPECT_EQ(half.inverse_frequencies(), interleaved.inverse_frequencies());
    std::vector<float> cos_i(positions.size() * d / 2), sin_i(cos_i.size()), cos_h(cos_i.size()),
        sin_h(cos_i.size());
    interleaved.angles(positions, cos_i.data(), sin_i.data());
    half.angles(positions, cos_h.data(), sin_h.data());
    EXPECT_EQ(cos_i, cos_h);
    EXPECT_EQ(sin_i, sin_h);

    const std::vector<float> q =
        test::random_normal(static_cast<std::size_t>(tokens * heads * d), rng);
    const std::vector<float> k = test::random_normal(q.size(), rng);
    std::vector<float> q_jax = q, k_jax = k;
    std::vector<float> q_hf = permute_to_half(q, d), k_hf = permute_to_half(k, d);
    interleaved.apply(q_jax.data(), tokens, heads, cos_i.data(), sin_i.data());
    interleaved.apply(k_jax.data(), tokens, heads, cos_i.data(), sin_i.data());
    half.apply(q_hf.data(), tokens, heads, cos_h.data(), sin_h.data());
    half.apply(k_hf.data(), tokens, heads, cos_h.data(), sin_h.data());

    // Same arithmetic on the same numbers in another order: equal up to a float ulp or two.
    const std::vector<float> expected_hf = permute_to_half(q_jax, d);
    for (std::size_t e = 0; e < q_hf.size(); ++e)
      ASSERT_NEAR(q_hf[e], expected_hf[e], 1e-6 * (1.0 + std::fabs(expected_hf[e])))
          << "d " << d << " element " << e;

    // Attention only sees q·k: identical in both conventions for every token pair and head.
    for (std::int64_t a = 0; a < tokens; a += 7)
      for (std::int64_t b = 0; b < tokens; b += 5)
        for (std::int64_t h = 0; h < heads; ++h) {
          double dot_jax = 0.0, dot_hf = 0.0, scale = 0.0;
          for (std::int64_t e = 0; e < d; ++e) {
            const std::size_t qa = static_cast<std::size_t>((a * heads + h) * d + e);
            const std::size_t kb = static_cast<std::size_t>((b * heads + h) * d + e);
            dot_jax += double{q_jax[qa]} * k_jax[kb];
            dot_hf += double{q_hf[qa]} * k_hf[kb];
            scale += std::fabs(double{q_jax[qa]} * k_jax[kb]);
          }
          ASSERT_NEAR(dot_hf, dot_jax, 1e-6 * scale) << "tokens " << a << "," << b << " head " << h;
        }
  }
}

// RoPE's reason to exist: q·k after rotation depends only on the position difference. Checked on
// exact float angles would be circular; instead two pairs of positions with the same distance
// must give dot products agreeing to the float32 rounding of their angles (at positions near 100
// an angle carries ~4e-6 rad of rounding, so |q·k| ≈ 8 may move by ~1e-4; a wrong rotation moves
// it by O(1)).
TEST(Rope, DotProductDependsOnRelativePosition) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  const std::int64_t d = 64;
  const RotaryEmbedding rope(d, 1e4, RopePairing::interleaved);
  const std::vector<std::int64_t> positions = {3, 10, 103, 110};
  std::vector<float> cos_t(positions.size() * d / 2), sin_t(cos_t.size());
  rope.angles(positions, cos_t.data(), sin_t.data());
  const std::vector<float> q0 = test::random_normal(static_cast<std::size_t>(d), rng);
  const std::vector<float> k0 = test::random_normal(static_cast<std::size_t>(d), rng);
  std::vector<float> q(positions.size() * d), k(q.size());
  for (std::size_t t = 0; t < positions.size(); ++t)
    for (std::int64_t e = 0; e < d; ++e) {
      q[t * d + e] = q0[e];
      k[t * d + e] = k0[e];
    }
  rope.apply(q.data(), static_cast<std::int64_t>(positions.size()), 1, cos_t.data(), sin_t.data());
  rope.apply(k.data(), static_cast<std::int64_t>(positions.size()), 1, cos_t.data(), sin_t.data());
  auto dot = [&](std::size_t a, std::size_t b) {
    double s = 0.0;
    for (std::int64_t e = 0; e < d; ++e) s += double{q[a * d + e]} * k[b * d + e];
    return s;
  };
  EXPECT_NEAR(dot(1, 0), dot(3, 2), 1e-3);  // distance 7 at positions 10/3 and 110/103
  EXPECT_NEAR(dot(0, 1), dot(2, 3), 1e-3);  // distance −7
}

}  // namespace
}  // namespace lwm
