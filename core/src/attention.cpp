#include "lwm/attention.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "lwm/error.h"

namespace lwm {
namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstStridedMap = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;
using StridedMap = Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>>;

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();

void check_arguments(std::int64_t num_queries, std::int64_t num_keys, const AttentionShape& shape,
                     const AttentionOptions& options) {
  if (shape.num_heads <= 0 || shape.num_kv_heads <= 0 || shape.head_dim <= 0 ||
      shape.num_heads % shape.num_kv_heads != 0) {
    throw Error(ErrorKind::invalid_argument,
                "attention: impossible shape (heads " + std::to_string(shape.num_heads) + ", kv heads " +
                    std::to_string(shape.num_kv_heads) + ", head_dim " + std::to_string(shape.head_dim) + ")");
  }
  if (num_queries < 0 || num_keys < 0) {
    throw Error(ErrorKind::invalid_argument, "attention: negative sequence length");
  }
  if (options.query_chunk <= 0 || options.key_chunk <= 0) {
    throw Error(ErrorKind::invalid_argument, "attention: chunk sizes must be positive (query " +
                                                 std::to_string(options.query_chunk) + ", key " +
                                                 std::to_string(options.key_chunk) + ")");
  }
  if ((options.query_segments == nullptr) != (options.key_segments == nullptr)) {
    throw Error(ErrorKind::invalid_argument, "attention: segment ids must be given for both queries and keys");
  }
}

// One (head, query chunk) tile scanning every key chunk with the online softmax of spec §7.
struct TileScratch {
  RowMatrix scores;
  RowMatrix accumulator;
  std::vector<float> row_max, row_sum;
};

void attend_tile(const float* q, const float* k, const float* v, std::int64_t head, std::int64_t q0,
                 std::int64_t q_rows, std::int64_t num_queries, std::int64_t num_keys,
                 const AttentionShape& shape,
                 const AttentionOptions& options, float scale, float* out, float* lse, TileScratch& s) {
  const std::int64_t d = shape.head_dim;
  const std::int64_t kv_head = head / (shape.num_heads / shape.num_kv_heads);
  const std::int64_t q_stride = shape.num_heads * d;
  const std::int64_t kv_stride = shape.num_kv_heads * d;
  ConstStridedMap queries(q + q0 * q_stride + head * d, q_rows, d, Eigen::OuterStride<>(q_stride));

  s.accumulator.setZero(q_rows, d);
  s.row_max.assign(static_cast<std::size_t>(q_rows), kNegativeInfinity);
  s.row_sum.assign(static_cast<std::size_t>(q_rows), 0.0f);

  // With causal masking the last query of the tile sees keys up to this index; later chunks are
  // entirely masked and skipped.
  const std::int64_t key_limit =
      options.causal ? std::min(num_keys, options.query_offset + q0 + q_rows) : num_keys;
  for (std::int64_t k0 = 0; k0 < key_limit; k0 += options.key_chunk) {
    const std::int64_t k_rows = std::min(options.key_chunk, key_limit - k0);
    ConstStridedMap keys(k + k0 * kv_stride + kv_head * d, k_rows, d, Eigen::OuterStride<>(kv_stride));
    ConstStridedMap values(v + k0 * kv_stride + kv_head * d, k_rows, d, Eigen::OuterStride<>(kv_stride));
    s.scores.noalias() = (queries * keys.transpose()) * scale;

    const bool needs_causal_mask = options.causal && k0 + k_rows - 1 > options.query_offset + q0;
    if (needs_causal_mask || options.query_segments != nullptr) {
      for (std::int64_t i = 0; i < q_rows; ++i) {
        const std::int64_t visible_until = options.query_offset + q0 + i;  // inclusive
        for (std::int64_t j = 0; j < k_rows; ++j) {
          const bool future = options.causal && k0 + j > visible_until;
          const bool other_segment = options.query_segments != nullptr &&
                                     options.query_segments[q0 + i] != options.key_segments[k0 + j];
          if (future || other_segment) s.scores(i, j) = kNegativeInfinity;
        }
      }
    }

    for (std::int64_t i = 0; i < q_rows; ++i) {
      auto row = s.scores.row(i);
      const float chunk_max = row.maxCoeff();
      const float old_max = s.row_max[static_cast<std::size_t>(i)];
      const float new_max = std::max(old_max, chunk_max);
      if (new_max == kNegativeInfinity) {  // nothing visible yet in this row
        row.setZero();
        continue;
      }
      row = (row.array() - new_max).exp();  // exp(-inf) = 0 for masked keys
      const float rescale = std::exp(old_max - new_max);
      s.row_sum[static_cast<std::size_t>(i)] = s.row_sum[static_cast<std::size_t>(i)] * rescale + row.sum();
      s.accumulator.row(i) *= rescale;
      s.row_max[static_cast<std::size_t>(i)] = new_max;
    }
    s.accumulator.noalias() += s.scores * values;
  }

  for (std::int64_t i = 0; i < q_rows; ++i) {
    float* o = out + (q0 + i) * q_stride + head * d;
    const float sum = s.row_sum[static_cast<std::size_t>(i)];
    if (sum > 0.0f) {
      const float inv = 1.0f / sum;
      for (std::int64_t c = 0; c < d; ++c) o[c] = s.accumulator(i, c) * inv;
    } else {
      std::fill(o, o + d, 0.0f);
    }
    if (lse != nullptr) {
      lse[head * num_queries + q0 + i] =
          sum > 0.0f ? s.row_max[static_cast<std::size_t>(i)] + std::log(sum) : kNegativeInfinity;
    }
  }
}
}  // namespace

void blockwise_attention(const float* q, const float* k, const float* v, std::int64_t num_queries,
                         std::int64_t num_keys, const AttentionShape& shape, const AttentionOptions& options,
                         float* out, float* lse) {
  check_arguments(num_queries, num_keys, shape, options);
  const float scale = options.scale != 0.0f ? options.scale : 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  const std::int64_t query_tiles = (num_queries + options.query_chunk - 1) / options.query_chunk;
  // Tiny problems run on the calling thread: a parallel region costs more than their arithmetic.
#pragma omp parallel if (num_queries * num_keys * shape.num_heads * shape.head_dim > (std::int64_t{1} << 20))
  {
    TileScratch scratch;
#pragma omp for collapse(2) schedule(dynamic)
    for (std::int64_t head = 0; head < shape.num_heads; ++head) {
      for (std::int64_t tile = 0; tile < query_tiles; ++tile) {
        const std::int64_t q0 = tile * options.query_chunk;
        const std::int64_t rows = std::min(options.query_chunk, num_queries - q0);
        attend_tile(q, k, v, head, q0, rows, num_queries, num_keys, shape, options, scale, out, lse, scratch);
      }
    }
  }
}

}  // namespace lwm

namespace lwm {

void merge_attention(float* out_a, float* lse_a, const float* out_b, const float* lse_b,
                     std::int64_t num_queries, const AttentionShape& shape) {
  const std::int64_t d = shape.head_dim;
  const std::int64_t row_stride = shape.num_heads * d;
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t head = 0; head < shape.num_heads; ++head) {
    for (std::int64_t i = 0; i < num_queries; ++i) {
      float& la = lse_a[head * num_queries + i];
      const float lb = lse_b[head * num_queries + i];
      if (lb == kNegativeInfinity) continue;  // b saw no key: nothing to add
      float* oa = out_a + i * row_stride + head * d;
      const float* ob = out_b + i * row_stride + head * d;
      if (la == kNegativeInfinity) {
        std::copy(ob, ob + d, oa);
        la = lb;
        continue;
      }
      // Weights e^{lse}/Σe^{lse}, formed relative to the larger lse so nothing overflows.
      const float top = std::max(la, lb);
      const float wa = std::exp(la - top);
      const float wb = std::exp(lb - top);
      const float inv = 1.0f / (wa + wb);
      for (std::int64_t c = 0; c < d; ++c) oa[c] = (oa[c] * wa + ob[c] * wb) * inv;
      la = top + std::log(wa + wb);
    }
  }
}

}  // namespace lwm
