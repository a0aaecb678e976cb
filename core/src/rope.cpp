#include "lwm/rope.h"

#include <cmath>
#include <string>

#include "lwm/error.h"

namespace lwm {

RotaryEmbedding::RotaryEmbedding(std::int64_t head_dim, double theta, RopePairing pairing)
    : head_dim_(head_dim), pairing_(pairing) {
  if (head_dim <= 0 || head_dim % 2 != 0) {
    throw Error(ErrorKind::invalid_argument, "RoPE needs a positive even head dimension, got " + std::to_string(head_dim));
  }
  if (!(theta > 0.0) || !std::isfinite(theta)) {
    throw Error(ErrorKind::invalid_argument, "RoPE theta must be positive and finite, got " + std::to_string(theta));
  }
  // Spec §1.3: inv_freq[i] = 1 / theta^(float32(2i) / d), evaluated in float32 like the reference.
  const float theta_f = static_cast<float>(theta);
  inv_freq_.resize(static_cast<std::size_t>(head_dim / 2));
  for (std::int64_t i = 0; i < head_dim / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq_[static_cast<std::size_t>(i)] = 1.0f / std::pow(theta_f, exponent);
  }
}

void RotaryEmbedding::angles(std::span<const std::int64_t> positions, float* cos_out, float* sin_out) const {
  const std::size_t half = inv_freq_.size();
  for (std::size_t t = 0; t < positions.size(); ++t) {
    for (std::size_t i = 0; i < half; ++i) {
      // The product is rounded once to float32 (exact float32 multiply for t < 2^24), and cos/sin
      // are taken of that float32 angle; double evaluation then rounding keeps them correctly
      // rounded, which matters at positions near 1M where the angle is ~1e6 radians.
      const float angle = static_cast<float>(static_cast<double>(positions[t]) * inv_freq_[i]);
      cos_out[t * half + i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      sin_out[t * half + i] = static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
}

void RotaryEmbedding::apply(float* x, std::int64_t tokens, std::int64_t heads, const float* cos_table,
                            const float* sin_table) const {
  const std::int64_t half = head_dim_ / 2;
#pragma omp parallel for schedule(static) if (tokens * heads * head_dim_ > (std::int64_t{1} << 18))
  for (std::int64_t t = 0; t < tokens; ++t) {
    const float* c = cos_table + t * half;
    const float* s = sin_table + t * half;
    for (std::int64_t h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * head_dim_;
      for (std::int64_t i = 0; i < half; ++i) {
        // Interleaved pairs (2i, 2i+1) for LWM/JAX weights; (i, i+d/2) for HF rotate-half weights,
        // whose q/k rows were permuted so that the same pairs land there (spec §1.6).
        const std::int64_t a = pairing_ == RopePairing::interleaved ? 2 * i : i;
        const std::int64_t b = pairing_ == RopePairing::interleaved ? 2 * i + 1 : i + half;
        const float x0 = v[a];
        const float x1 = v[b];
        v[a] = x0 * c[i] - x1 * s[i];
        v[b] = x0 * s[i] + x1 * c[i];
      }
    }
  }
}

}  // namespace lwm
