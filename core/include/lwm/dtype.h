// Storage element types and conversions. Compute on the CPU is always float32; weights and
// caches may be stored in bfloat16 or float16 and are widened on the fly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace lwm {

enum class DType : std::uint8_t { f32, bf16, f16 };

std::size_t dtype_size(DType dtype) noexcept;
// "f32", "bf16", "f16".
const char* dtype_name(DType dtype) noexcept;
// Accepts our names and the safetensors ones ("F32", "BF16", "F16"); throws Error otherwise.
DType parse_dtype(std::string_view name);

// bfloat16: the upper half of a float32, rounded to nearest even (NaN stays NaN).
inline std::uint16_t float_to_bf16(float value) noexcept {
  std::uint32_t bits;
  std::memcpy(&bits, &value, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>(bits >> 16);
}

inline float bf16_to_float(std::uint16_t value) noexcept {
  const std::uint32_t bits = static_cast<std::uint32_t>(value) << 16;
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

// IEEE binary16, round to nearest even, with subnormals, infinities and NaN.
std::uint16_t float_to_f16(float value) noexcept;
float f16_to_float(std::uint16_t value) noexcept;

// Converts n elements of `src` (stored as `dtype`) to float32.
void to_float(DType dtype, const void* src, float* dst, std::size_t n) noexcept;
// Converts n float32 values to `dtype` storage.
void from_float(DType dtype, const float* src, void* dst, std::size_t n) noexcept;

}  // namespace lwm
