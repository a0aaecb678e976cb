// Attention on a CUDA device (issue 3 item 2): a flash-style forward kernel for prefill and ring
// steps, and a split-K decode kernel for a few queries against a long KV cache. Both follow the
// contract of the CPU blockwise_attention (lwm/attention.h) exactly: same layouts, same masks
// (causal with a query offset, segment ids), same GQA mapping, fp32 log-sum-exp [heads, queries],
// and a row that sees no key gives out = 0 and lse = -inf. Inputs are bf16 (queries) and bf16 or
// int8 (keys/values, dequantised inside the kernels); all accumulation and the softmax statistics
// are fp32, and a call can merge into an incoming fp32 (out, lse) state so a ring never rounds a
// partial result to bf16 (spec ring-attention §1.1).
//
// All pointers are device pointers; every call is asynchronous on the given stream.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "lwm/attention.h"
#include "lwm/planner.h"

namespace lwm::cuda {

// A run of keys and values in one of the KV storage formats, laid out like the CPU cache:
// [num_keys, num_kv_heads, head_dim] rows (row stride num_kv_heads·head_dim elements).
struct KvBlock {
  KvPrecision precision = KvPrecision::bf16;  // bf16 or int8 (f32 is the CPU's format)
  const void* keys = nullptr;                 // __nv_bfloat16 or std::int8_t elements
  const void* values = nullptr;
  // int8 only: one fp32 scale per (token, kv head) row, [num_keys, num_kv_heads]; an element
  // dequantises to int8 · scale (planner.h's int8 accounting: head_dim + 4 bytes per row).
  const float* key_scales = nullptr;
  const float* value_scales = nullptr;
  std::int64_t num_keys = 0;
};

// Masks and scale, with the CPU's meaning (lwm::AttentionOptions; the chunk sizes there are the
// CPU's tiling and have no counterpart here).
struct DeviceAttentionOptions {
  bool causal = true;
  // Key position of query row 0: query i sees keys j <= query_offset + i when causal. Negative
  // when the keys lie later in the sequence than the queries (then every row is masked).
  std::int64_t query_offset = 0;
  const std::int32_t* query_segments = nullptr;  // device [num_queries], or null
  const std::int32_t* key_segments = nullptr;    // device [num_keys], or null
  float scale = 0.0f;                            // 0 -> 1/sqrt(head_dim)
};

// Where the result goes. `out` and `lse` are fp32 (the state a ring carries); `out_bf16`
// optionally receives the same normalised output rounded once, for the next layer.
struct AttentionResult {
  float* out = nullptr;               // [num_queries, num_heads, head_dim]
  float* lse = nullptr;               // [num_heads, num_queries], natural log
  __nv_bfloat16* out_bf16 = nullptr;  // optional [num_queries, num_heads, head_dim]
  // When true, (out, lse) already hold attention over another key set (lse = -inf for rows that
  // saw nothing) and this call merges its keys into them by log-sum-exp; out and lse required.
  bool merge = false;
};

// Head dims with compiled kernels. Any other head dim is refused with Error(unsupported); there
// is no slow fallback kernel.
bool attention_head_dim_supported(std::int64_t head_dim) noexcept;

// Prefill / ring step: q [num_queries, num_heads, head_dim] bf16 against `kv`. Tensor cores
// (bf16 WMMA, fp32 accumulation), 64 queries × 64 keys per tile, online softmax in fp32.
// Throws Error(invalid_argument) for impossible shapes or options, Error(unsupported) for a head
// dim without a kernel, Error(device) for CUDA failures.
void flash_attention_forward(const __nv_bfloat16* q, std::int64_t num_queries, const KvBlock& kv,
                             const AttentionShape& shape, const DeviceAttentionOptions& options,
                             const AttentionResult& result, cudaStream_t stream);

// Decode: up to kMaxDecodeQueries queries against a long KV run. The keys are split across
// thread blocks (enough to fill the GPU), each block writes a partial (out, lse), and a second
// kernel merges them by log-sum-exp (flash-decoding). Same contract and errors as the forward;
// temporary partials come from the stream's memory pool. `key_splits` 0 picks the split count
// (decode_key_splits); tests force others to check the merge.
inline constexpr std::int64_t kMaxDecodeQueries = 8;
void flash_attention_decode(const __nv_bfloat16* q, std::int64_t num_queries, const KvBlock& kv,
                            const AttentionShape& shape, const DeviceAttentionOptions& options,
                            const AttentionResult& result, cudaStream_t stream,
                            std::int64_t key_splits = 0);

// How many key splits decode uses for this problem on the current device (exposed for tests and
// benchmarks; 1 means a single block per head).
std::int64_t decode_key_splits(std::int64_t num_keys, const AttentionShape& shape);

}  // namespace lwm::cuda
