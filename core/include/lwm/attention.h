// Blockwise (flash-style) scaled dot-product attention on the CPU with an online softmax
// (spec lwm-reference §7, ring-attention §1). It never materialises the full score matrix: query
// chunks scan over key chunks keeping a running max, denominator and numerator per row, and it
// returns the natural-log log-sum-exp of every row so partial results over disjoint key sets can
// be merged exactly (the ring and split decode rely on this).
#pragma once

#include <cstdint>

namespace lwm {

struct AttentionShape {
  std::int64_t num_heads = 0;     // query heads
  // Key/value heads; num_heads must be a multiple (GQA): query head h reads kv head
  // h / (num_heads / num_kv_heads), so consecutive query heads share a kv head.
  std::int64_t num_kv_heads = 0;
  std::int64_t head_dim = 0;
};

struct AttentionOptions {
  std::int64_t query_chunk = 256;  // queries processed together
  std::int64_t key_chunk = 512;    // keys scanned per step of the online softmax
  bool causal = true;
  // Index, in key positions, of query row 0. With causal masking query i may see keys
  // j <= query_offset + i. Chunked prefill passes the number of tokens already in the cache; a
  // ring passes the distance between its query and key blocks, negative when the keys come later
  // in the sequence than the queries (then every row is masked).
  std::int64_t query_offset = 0;
  // Optional per-token segment ids (packed sequences): attention only within equal ids.
  const std::int32_t* query_segments = nullptr;  // [num_queries]
  const std::int32_t* key_segments = nullptr;    // [num_keys]
  float scale = 0.0f;                            // 0 → 1/sqrt(head_dim)
};

// q: [num_queries, num_heads, head_dim]; k, v: [num_keys, num_kv_heads, head_dim];
// out: [num_queries, num_heads, head_dim]; lse (optional): [num_heads, num_queries].
// A row that may attend to no key gets out = 0 and lse = -inf (so merging ignores it).
void blockwise_attention(const float* q, const float* k, const float* v, std::int64_t num_queries,
                         std::int64_t num_keys, const AttentionShape& shape,
                         const AttentionOptions& options, float* out, float* lse);

// Merges a partial result (out_b, lse_b) over another key set into (out_a, lse_a), in place:
// out = (e^{lse_a}·out_a + e^{lse_b}·out_b) / (e^{lse_a} + e^{lse_b}), lse = log(e^{lse_a} + e^{lse_b}).
// Layouts as in blockwise_attention.
void merge_attention(float* out_a, float* lse_a, const float* out_b, const float* lse_b,
                     std::int64_t num_queries, const AttentionShape& shape);

}  // namespace lwm
