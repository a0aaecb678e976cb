// Element-wise and row-wise kernels of the LWM transformer on one GPU (the CUDA counterparts of
// lwm/ops.h and lwm/rope.h). Storage is bf16 or f32; every kernel computes in f32. Every op
// validates shapes and dtypes on the host first (op_checks.h: Error(invalid_argument), no CUDA
// call made) and is ordered on the context's stream; none synchronizes unless it says so.
#pragma once

#include <cstdint>
#include <span>

#include "cuda/context.h"
#include "cuda/device_tensor.h"
#include "lwm/rope.h"

namespace lwm::cuda {

// y[i] += x[i].
void add(Context& ctx, DeviceTensor& y, const DeviceTensor& x);

// The pre-norm residual step of every layer (spec §1.2), fused so the residual stream is read
// once: per row, h += x (when x is given; the sum is stored in h's dtype and the norm is taken of
// what was stored), then out = h · rsqrt(mean(h²) + eps) · weight. h, x, out: [rows, n]; weight:
// [n], any storage dtype. out must not alias h or x.
void residual_rms_norm(Context& ctx, DeviceTensor& residual, const DeviceTensor* x,
                       const DeviceTensor& weight, float eps, DeviceTensor& out);

// Rotates x = [tokens, heads, head_dim] in place exactly as RotaryEmbedding::apply with angles
// from RotaryEmbedding::angles: the same float32 inverse frequencies, angle = float32(t ·
// inv_freq) and its cos/sin evaluated in double. Token j's position is position_offset + j, or
// position_offset + positions[j] when a device array `positions` (one per token) is given (for
// sequence shards whose positions are not contiguous).
void rope(Context& ctx, DeviceTensor& x, const RotaryEmbedding& rotary,
          std::int64_t position_offset, const std::int64_t* positions = nullptr);

// out = silu(gate) · up. out may alias gate or up.
void swiglu(Context& ctx, const DeviceTensor& gate, const DeviceTensor& up, DeviceTensor& out);

// out[i, :] = table[ids[i], :] with ids from the host: every id is checked before any CUDA call
// (Error(invalid_argument) naming the id and its position, as the CPU embedding does).
void embedding(Context& ctx, const DeviceTensor& table, std::span<const std::int32_t> ids,
               DeviceTensor& out);
// Where kernels record the first token id outside the vocabulary they meet, read later: a
// decode step (or a captured CUDA graph) looks its tokens up without a synchronization per call
// and checks once. The record is one device word: (position << 32 | id), lowest position wins.
class TokenIdCheck {
 public:
  explicit TokenIdCheck(Context& ctx);  // allocates and clears (stream-ordered)
  void clear(Context& ctx);
  // Waits for the stream; throws Error(invalid_argument) naming the first bad id, its position
  // and the vocabulary, when one was recorded since the last clear.
  void throw_if_bad(Context& ctx, std::int64_t vocab) const;
  unsigned long long* device_word() noexcept { return word_.data(); }

 private:
  DeviceBuffer<unsigned long long> word_;
};

// The same with `count` ids already on the device (a sampled token). An id outside the
// vocabulary produces a zero row (never an out-of-bounds read) and is recorded in `check`;
// nothing synchronizes.
void embedding(Context& ctx, const DeviceTensor& table, const std::int32_t* device_ids,
               std::int64_t count, DeviceTensor& out, TokenIdCheck& check);
// ... and checked at once: synchronizes the stream and throws as the host-id overload does.
void embedding(Context& ctx, const DeviceTensor& table, const std::int32_t* device_ids,
               std::int64_t count, DeviceTensor& out);

// dst = src converted between any two of f32, bf16, f16 (round to nearest even).
void convert(Context& ctx, const DeviceTensor& src, DeviceTensor& dst);

}  // namespace lwm::cuda
