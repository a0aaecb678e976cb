// CPU kernels of the LWM transformer (float32 compute over f32/bf16/f16 storage, OpenMP threads).
// Layouts are row-major; sequence-major activations are [tokens, features].
#pragma once

#include <cstdint>
#include <span>

#include "lwm/linear.h"
#include "lwm/tensor.h"

namespace lwm::cpu {

// y[m, out] = x[m, in] · W. Accumulates in float32; y must not alias x.
void linear(const float* x, std::int64_t m, const Linear& w, float* y);

// y[i, :] = x[i, :] · rsqrt(mean(x[i, :]²) + eps) · weight  for each of the m rows (spec §1.2).
void rms_norm(const float* x, std::int64_t m, std::int64_t n, const Tensor& weight, float eps, float* y);

// out[i] = silu(gate[i]) · up[i], silu(x) = x · sigmoid(x). out may alias gate or up.
void swiglu(const float* gate, const float* up, float* out, std::int64_t n);

// out[i, :] = table[ids[i], :] (table [vocab, dim], any storage dtype). Throws for an id out of range.
void embedding(const Tensor& table, std::span<const std::int32_t> ids, float* out);

// In-place numerically stable softmax of each of the m rows of length n.
void softmax(float* x, std::int64_t m, std::int64_t n);

// y[i] += x[i].
void add_inplace(float* y, const float* x, std::int64_t n);

}  // namespace lwm::cpu
