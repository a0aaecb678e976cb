// Device helpers shared by the forward and decode attention kernels (attention_forward.cu,
// attention_decode.cu): reading eight consecutive elements of a K/V row in either storage format,
// the log-sum-exp merge of two normalised partial results, warp reductions, and the host-side
// argument checks both entry points run before launching anything.
#pragma once

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "cuda/attention.h"
#include "cuda/attention_checks.h"

namespace lwm::cuda::attention_detail {

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ float negative_infinity() {
  return -INFINITY;
}

__device__ __forceinline__ float warp_max(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    value = fmaxf(value, __shfl_xor_sync(0xffffffffu, value, offset));
  }
  return value;
}

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  }
  return value;
}

// Raw bytes of eight elements of one K/V row: 16 bytes of bf16 or 8 bytes of int8 (+ the row's
// scale). Loading raw first lets a loop issue several rows' loads before using any of them.
template <KvPrecision P>
struct Raw8;

template <>
struct Raw8<KvPrecision::bf16> {
  uint4 bits;
  __device__ __forceinline__ void load(const void* base, const float* /*scales*/,
                                       std::int64_t element, std::int64_t /*row*/) {
    bits = *reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(base) + element);
  }
  __device__ __forceinline__ void zero() { bits = make_uint4(0u, 0u, 0u, 0u); }
  __device__ __forceinline__ void to_float(float (&out)[8]) const {
    const auto* pairs = reinterpret_cast<const __nv_bfloat162*>(&bits);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __bfloat1622float2(pairs[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  }
  // Into shared memory as bf16 (the tensor-core operand format): a plain copy.
  __device__ __forceinline__ void to_bf16(__nv_bfloat16* destination) const {
    *reinterpret_cast<uint4*>(destination) = bits;
  }
};

template <>
struct Raw8<KvPrecision::int8> {
  uint2 bits;
  float scale;
  __device__ __forceinline__ void load(const void* base, const float* scales, std::int64_t element,
                                       std::int64_t row) {
    bits = *reinterpret_cast<const uint2*>(static_cast<const std::int8_t*>(base) + element);
    scale = scales[row];
  }
  __device__ __forceinline__ void zero() {
    bits = make_uint2(0u, 0u);
    scale = 0.0f;
  }
  __device__ __forceinline__ void to_float(float (&out)[8]) const {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const unsigned word = i < 4 ? bits.x : bits.y;
      const auto byte = static_cast<signed char>((word >> (8 * (i % 4))) & 0xffu);
      out[i] = static_cast<float>(byte) * scale;
    }
  }
  __device__ __forceinline__ void to_bf16(__nv_bfloat16* destination) const {
    float values[8];
    to_float(values);
    uint4 packed;
    auto* pairs = reinterpret_cast<__nv_bfloat162*>(&packed);
#pragma unroll
    for (int i = 0; i < 4; ++i) pairs[i] = __floats2bfloat162_rn(values[2 * i], values[2 * i + 1]);
    *reinterpret_cast<uint4*>(destination) = packed;
  }
};

// Weights that merge an incoming normalised state (lse_in) with a new one (lse_new):
// out = w_in·out_in + w_new·out_new, lse = log(e^lse_in + e^lse_new), relative to the larger lse
// so nothing overflows; a side with lse = -inf contributes nothing and both -inf stays -inf
// (spec ring-attention §1.1, pitfall 1), never NaN.
struct MergeWeights {
  float w_in;
  float w_new;
  float lse;
};
__device__ __forceinline__ MergeWeights merge_weights(float lse_in, float lse_new) {
  if (lse_in == negative_infinity()) return {0.0f, 1.0f, lse_new};
  if (lse_new == negative_infinity()) return {1.0f, 0.0f, lse_in};
  const float top = fmaxf(lse_in, lse_new);
  const float a = expf(lse_in - top);
  const float b = expf(lse_new - top);
  const float inv = 1.0f / (a + b);
  return {a * inv, b * inv, top + logf(a + b)};
}

// Whether query row qi (in [0, num_queries)) may see key kj (in [0, num_keys)).
struct MaskParams {
  bool causal;
  std::int64_t query_offset;
  const std::int32_t* query_segments;
  const std::int32_t* key_segments;
};

}  // namespace lwm::cuda::attention_detail
