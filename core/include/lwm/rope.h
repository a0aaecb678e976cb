// Rotary position embedding exactly as LWM computes it (spec §1.3): float32 inverse frequencies
// 1 / theta^(2i/d), angle = float32(t · inv_freq[i]) for the integer position t, then cos and sin
// of that float32 angle. Angles are formed per position on demand, so a 1M-token context needs no
// table.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace lwm {

// How the two halves of each rotated pair sit inside a head.
enum class RopePairing : std::uint8_t {
  interleaved,  // pairs (x[2i], x[2i+1]): LWM/JAX weights
  half,         // pairs (x[i], x[i + d/2]): Hugging Face "rotate-half" weights (spec §1.6)
};

class RotaryEmbedding {
 public:
  RotaryEmbedding(std::int64_t head_dim, double theta, RopePairing pairing);

  std::int64_t head_dim() const noexcept { return head_dim_; }
  RopePairing pairing() const noexcept { return pairing_; }
  const std::vector<float>& inverse_frequencies() const noexcept { return inv_freq_; }

  // cos/sin of every pair's angle for each position: outputs are [positions.size(), head_dim / 2].
  void angles(std::span<const std::int64_t> positions, float* cos_out, float* sin_out) const;

  // Rotates x = [tokens, heads, head_dim] in place with angles from `angles()` for those tokens.
  void apply(float* x, std::int64_t tokens, std::int64_t heads, const float* cos_table,
             const float* sin_table) const;

 private:
  std::int64_t head_dim_;
  RopePairing pairing_;
  std::vector<float> inv_freq_;
};

}  // namespace lwm
