// Backward passes of the CPU kernels (design.md: each backend has the same operations, forward
// and backward). Conventions: `d*` are gradients of a scalar loss. Input gradients are written
// (overwritten) unless a comment says they accumulate; parameter gradients always accumulate
// (+=), so gradients over several rows or micro-batches add up in one buffer. Weight matrices are
// float32 [in, out] (the JAX layout the trainer keeps its master parameters in).
#pragma once

#include <cstdint>
#include <span>

#include "lwm/attention.h"
#include "lwm/rope.h"

namespace lwm::cpu {

// y = x · W with W [in, out]:  dx[m, in] = dy[m, out] · Wᵀ (overwritten).
void linear_backward_input(const float* dy, std::int64_t m, const float* weight, std::int64_t in,
                           std::int64_t out, float* dx);
// dW[in, out] += xᵀ · dy.
void linear_backward_weight(const float* x, const float* dy, std::int64_t m, std::int64_t in,
                            std::int64_t out, float* dweight);

// y = rms_norm(x) · g (ops.h): dx (overwritten) and dg[n] += Σ_rows dy ∘ x·rsqrt(mean(x²)+eps).
void rms_norm_backward(const float* x, const float* dy, std::int64_t m, std::int64_t n,
                       const float* gain, float eps, float* dx, float* dgain);

// out = silu(gate) ∘ up: dgate, dup (overwritten; may alias neither input).
void swiglu_backward(const float* gate, const float* up, const float* dout, std::int64_t n,
                     float* dgate, float* dup);

// out[i] = table[ids[i]]: dtable[ids[i], :] += dout[i, :] (dtable [vocab, dim]).
void embedding_backward(std::span<const std::int32_t> ids, const float* dout, std::int64_t dim,
                        float* dtable);

// RoPE rotates each pair by its angle; the gradient is rotated back by the same angle (a rotation's
// transpose is its inverse). dx = [tokens, heads, head_dim] in place, tables as RotaryEmbedding.
void rope_backward(const RotaryEmbedding& rope, float* dx, std::int64_t tokens, std::int64_t heads,
                   const float* cos_table, const float* sin_table);

// Backward of blockwise_attention (attention.h) in the same blockwise form, never materialising
// the score matrix: per query row D = rowsum(dout ∘ out); per (query chunk, key chunk) the
// probabilities are recomputed from the forward's log-sum-exp, P = exp(q·kᵀ·scale − lse), and
// dv += Pᵀ·dout, dS = P ∘ (dout·vᵀ − D), dq += dS·k·scale, dk += dSᵀ·q·scale. Masks (causal,
// query_offset, segment ids) are those of the forward, through the same options.
// q, out, dout, dq: [num_queries, num_heads, head_dim]; k, v, dk, dv: [num_keys, num_kv_heads,
// head_dim]; lse: [num_heads, num_queries] as the forward returned it. dq, dk, dv ACCUMULATE, so a
// ring can add the contributions of every key block.
void blockwise_attention_backward(const float* q, const float* k, const float* v, const float* out,
                                  const float* lse, const float* dout, std::int64_t num_queries,
                                  std::int64_t num_keys, const AttentionShape& shape,
                                  const AttentionOptions& options, float* dq, float* dk, float* dv);

}  // namespace lwm::cpu
