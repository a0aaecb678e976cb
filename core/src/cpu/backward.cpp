// Backward passes of the CPU kernels (backward.h), checked against fp64 finite differences in
// tests/train/test_backward.cpp.
#include "lwm/backward.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "lwm/error.h"
#include "lwm/ops.h"

namespace lwm::cpu {
namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstStridedMap = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;
using StridedMap = Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>>;

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();
constexpr std::int64_t kColumnTile = 128;
// Below this many multiply-adds a parallel region costs more than it saves (tiny models, and
// machines whose cores are busy with other work).
constexpr std::int64_t kParallelWork = std::int64_t{1} << 20;

}  // namespace

void linear_backward_input(const float* dy, std::int64_t m, const float* weight, std::int64_t in,
                           std::int64_t out, float* dx) {
  // W [in, out] read as an [out', in'] = [in, out] out_in matrix gives y' = dy · Wᵀ.
  const Tensor view = Tensor::view(DType::f32, {in, out}, weight, nullptr);
  linear(dy, m, Linear{view, MatrixLayout::out_in}, dx);
}

void linear_backward_weight(const float* x, const float* dy, std::int64_t m, std::int64_t in,
                            std::int64_t out, float* dweight) {
  if (m <= 0) return;
  // Parallel over column tiles of dW: each thread owns its columns, so no two threads add to the
  // same element.
  const std::int64_t tiles = (out + kColumnTile - 1) / kColumnTile;
#pragma omp parallel for schedule(static) if (m * in * out > kParallelWork)
  for (std::int64_t t = 0; t < tiles; ++t) {
    const std::int64_t c0 = t * kColumnTile;
    const std::int64_t cols = std::min(kColumnTile, out - c0);
    ConstStridedMap xs(x, m, in, Eigen::OuterStride<>(in));
    ConstStridedMap dys(dy + c0, m, cols, Eigen::OuterStride<>(out));
    StridedMap dws(dweight + c0, in, cols, Eigen::OuterStride<>(out));
    dws.noalias() += xs.transpose() * dys;
  }
}

void rms_norm_backward(const float* x, const float* dy, std::int64_t m, std::int64_t n,
                       const float* gain, float eps, float* dx, float* dgain) {
  // y_i = g_i x_i r, r = (mean(x²) + eps)^-1/2:  dx_i = r (g_i dy_i − x_i r² Σ_j g_j dy_j x_j / n).
  // The gain gradient is summed over rows in a fixed order (per column), so results do not depend
  // on the thread count and a resumed training run repeats an uninterrupted one bit for bit.
  std::vector<double> inv_rms(static_cast<std::size_t>(m));
#pragma omp parallel for schedule(static) if (m * n > kParallelWork)
  for (std::int64_t row = 0; row < m; ++row) {
    const float* xi = x + row * n;
    const float* dyi = dy + row * n;
    double sum_sq = 0.0, dot = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      sum_sq += static_cast<double>(xi[i]) * xi[i];
      dot += static_cast<double>(gain[i]) * dyi[i] * xi[i];
    }
    const double r = 1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps);
    inv_rms[static_cast<std::size_t>(row)] = r;
    const double k = r * r * r * dot / static_cast<double>(n);
    float* dxi = dx + row * n;
    for (std::int64_t i = 0; i < n; ++i)
      dxi[i] = static_cast<float>(r * gain[i] * dyi[i] - k * xi[i]);
  }
#pragma omp parallel for schedule(static) if (m * n > kParallelWork)
  for (std::int64_t i = 0; i < n; ++i) {
    double sum = 0.0;
    for (std::int64_t row = 0; row < m; ++row) {
      sum += static_cast<double>(dy[row * n + i]) * x[row * n + i] *
             inv_rms[static_cast<std::size_t>(row)];
    }
    dgain[i] += static_cast<float>(sum);
  }
}

void swiglu_backward(const float* gate, const float* up, const float* dout, std::int64_t n,
                     float* dgate, float* dup) {
#pragma omp parallel for schedule(static) if (n > kParallelWork)
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    const float sig = 1.0f / (1.0f + std::exp(-g));
    const float silu = g * sig;
    dup[i] = dout[i] * silu;
    // d silu / dg = σ(g) (1 + g (1 − σ(g))).
    dgate[i] = dout[i] * up[i] * sig * (1.0f + g * (1.0f - sig));
  }
}

void embedding_backward(std::span<const std::int32_t> ids, const float* dout, std::int64_t dim,
                        float* dtable) {
  // Sequential over tokens: repeated ids add into the same row.
  for (std::size_t t = 0; t < ids.size(); ++t) {
    float* row = dtable + static_cast<std::int64_t>(ids[t]) * dim;
    const float* g = dout + static_cast<std::int64_t>(t) * dim;
    for (std::int64_t i = 0; i < dim; ++i) row[i] += g[i];
  }
}

void rope_backward(const RotaryEmbedding& rope, float* dx, std::int64_t tokens, std::int64_t heads,
                   const float* cos_table, const float* sin_table) {
  const std::size_t count = static_cast<std::size_t>(tokens * (rope.head_dim() / 2));
  std::vector<float> negated_sin(sin_table, sin_table + count);
  for (float& s : negated_sin) s = -s;
  rope.apply(dx, tokens, heads, cos_table, negated_sin.data());
}

namespace {

struct AttentionGeometry {
  const AttentionShape& shape;
  const AttentionOptions& options;
  std::int64_t num_queries, num_keys;
  float scale;
  std::int64_t q_stride() const { return shape.num_heads * shape.head_dim; }
  std::int64_t kv_stride() const { return shape.num_kv_heads * shape.head_dim; }
  std::int64_t kv_head_of(std::int64_t head) const {
    return head / (shape.num_heads / shape.num_kv_heads);
  }
  // Keys a query tile [q0, q0 + rows) can see at all under the causal mask.
  std::int64_t key_limit(std::int64_t q0, std::int64_t rows) const {
    if (!options.causal) return num_keys;
    return std::clamp<std::int64_t>(options.query_offset + q0 + rows, 0, num_keys);
  }
};

// P = exp(q·kᵀ·scale − lse) for one (head, query tile, key tile), masked entries 0, and
// dS = P ∘ (dout·vᵀ − D). Both are left in `p` and `ds`.
void probabilities_and_score_grads(const AttentionGeometry& g, const float* q, const float* k,
                                   const float* v, const float* lse, const float* dout,
                                   const float* delta, std::int64_t head, std::int64_t q0,
                                   std::int64_t q_rows, std::int64_t k0, std::int64_t k_rows,
                                   RowMatrix& p, RowMatrix& ds) {
  const std::int64_t d = g.shape.head_dim;
  const std::int64_t kv_head = g.kv_head_of(head);
  ConstStridedMap queries(q + q0 * g.q_stride() + head * d, q_rows, d,
                          Eigen::OuterStride<>(g.q_stride()));
  ConstStridedMap keys(k + k0 * g.kv_stride() + kv_head * d, k_rows, d,
                       Eigen::OuterStride<>(g.kv_stride()));
  ConstStridedMap values(v + k0 * g.kv_stride() + kv_head * d, k_rows, d,
                         Eigen::OuterStride<>(g.kv_stride()));
  ConstStridedMap douts(dout + q0 * g.q_stride() + head * d, q_rows, d,
                        Eigen::OuterStride<>(g.q_stride()));
  p.noalias() = (queries * keys.transpose()) * g.scale;
  ds.noalias() = douts * values.transpose();
  const AttentionOptions& o = g.options;
  for (std::int64_t i = 0; i < q_rows; ++i) {
    const float row_lse = lse[head * g.num_queries + q0 + i];
    const float row_delta = delta[head * g.num_queries + q0 + i];
    const std::int64_t visible_until = o.query_offset + q0 + i;
    for (std::int64_t j = 0; j < k_rows; ++j) {
      const bool masked =
          row_lse == kNegativeInfinity || (o.causal && k0 + j > visible_until) ||
          (o.query_segments != nullptr && o.query_segments[q0 + i] != o.key_segments[k0 + j]);
      const float prob = masked ? 0.0f : std::exp(p(i, j) - row_lse);
      p(i, j) = prob;
      ds(i, j) = prob * (ds(i, j) - row_delta);
    }
  }
}

}  // namespace

void blockwise_attention_backward(const float* q, const float* k, const float* v, const float* out,
                                  const float* lse, const float* dout, std::int64_t num_queries,
                                  std::int64_t num_keys, const AttentionShape& shape,
                                  const AttentionOptions& options, float* dq, float* dk,
                                  float* dv) {
  if (shape.num_heads <= 0 || shape.num_kv_heads <= 0 || shape.head_dim <= 0 ||
      shape.num_heads % shape.num_kv_heads != 0 || options.query_chunk <= 0 ||
      options.key_chunk <= 0 ||
      (options.query_segments == nullptr) != (options.key_segments == nullptr)) {
    throw Error(ErrorKind::invalid_argument,
                "attention backward: impossible shape or options (heads " +
                    std::to_string(shape.num_heads) + ", kv heads " +
                    std::to_string(shape.num_kv_heads) + ", head_dim " +
                    std::to_string(shape.head_dim) + ")");
  }
  const float scale =
      options.scale != 0.0f ? options.scale : 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  const AttentionGeometry g{shape, options, num_queries, num_keys, scale};
  const std::int64_t d = shape.head_dim;

  const bool parallel = num_queries * num_keys * shape.num_heads * d > kParallelWork;
  // D = rowsum(dout ∘ out) per (head, query).
  std::vector<float> delta(static_cast<std::size_t>(shape.num_heads * num_queries));
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
  for (std::int64_t head = 0; head < shape.num_heads; ++head) {
    for (std::int64_t i = 0; i < num_queries; ++i) {
      const float* o = out + i * g.q_stride() + head * d;
      const float* go = dout + i * g.q_stride() + head * d;
      double sum = 0.0;
      for (std::int64_t c = 0; c < d; ++c) sum += static_cast<double>(o[c]) * go[c];
      delta[static_cast<std::size_t>(head * num_queries + i)] = static_cast<float>(sum);
    }
  }

  const std::int64_t q_tiles = (num_queries + options.query_chunk - 1) / options.query_chunk;
  const std::int64_t k_tiles = (num_keys + options.key_chunk - 1) / options.key_chunk;

  // Pass 1, dq: each (head, query tile) owns its rows of dq.
#pragma omp parallel if (parallel)
  {
    RowMatrix p, ds;
#pragma omp for collapse(2) schedule(dynamic)
    for (std::int64_t head = 0; head < shape.num_heads; ++head) {
      for (std::int64_t tile = 0; tile < q_tiles; ++tile) {
        const std::int64_t q0 = tile * options.query_chunk;
        const std::int64_t q_rows = std::min(options.query_chunk, num_queries - q0);
        const std::int64_t kv_head = g.kv_head_of(head);
        StridedMap dqs(dq + q0 * g.q_stride() + head * d, q_rows, d,
                       Eigen::OuterStride<>(g.q_stride()));
        const std::int64_t limit = g.key_limit(q0, q_rows);
        for (std::int64_t k0 = 0; k0 < limit; k0 += options.key_chunk) {
          const std::int64_t k_rows = std::min(options.key_chunk, limit - k0);
          probabilities_and_score_grads(g, q, k, v, lse, dout, delta.data(), head, q0, q_rows, k0,
                                        k_rows, p, ds);
          ConstStridedMap keys(k + k0 * g.kv_stride() + kv_head * d, k_rows, d,
                               Eigen::OuterStride<>(g.kv_stride()));
          dqs.noalias() += (ds * keys) * scale;
        }
      }
    }
  }

  // Pass 2, dk and dv: each (kv head, key tile) owns its rows, summing over the query heads that
  // share the kv head (GQA) and over every query tile that can see the keys.
#pragma omp parallel if (parallel)
  {
    RowMatrix p, ds;
#pragma omp for collapse(2) schedule(dynamic)
    for (std::int64_t kv_head = 0; kv_head < shape.num_kv_heads; ++kv_head) {
      for (std::int64_t tile = 0; tile < k_tiles; ++tile) {
        const std::int64_t k0 = tile * options.key_chunk;
        const std::int64_t k_rows = std::min(options.key_chunk, num_keys - k0);
        StridedMap dks(dk + k0 * g.kv_stride() + kv_head * d, k_rows, d,
                       Eigen::OuterStride<>(g.kv_stride()));
        StridedMap dvs(dv + k0 * g.kv_stride() + kv_head * d, k_rows, d,
                       Eigen::OuterStride<>(g.kv_stride()));
        const std::int64_t group = shape.num_heads / shape.num_kv_heads;
        for (std::int64_t head = kv_head * group; head < (kv_head + 1) * group; ++head) {
          for (std::int64_t q0 = 0; q0 < num_queries; q0 += options.query_chunk) {
            const std::int64_t q_rows = std::min(options.query_chunk, num_queries - q0);
            if (g.key_limit(q0, q_rows) <= k0) continue;  // every key of this tile is in the future
            probabilities_and_score_grads(g, q, k, v, lse, dout, delta.data(), head, q0, q_rows, k0,
                                          k_rows, p, ds);
            ConstStridedMap queries(q + q0 * g.q_stride() + head * d, q_rows, d,
                                    Eigen::OuterStride<>(g.q_stride()));
            ConstStridedMap douts(dout + q0 * g.q_stride() + head * d, q_rows, d,
                                  Eigen::OuterStride<>(g.q_stride()));
            dvs.noalias() += p.transpose() * douts;
            dks.noalias() += (ds.transpose() * queries) * scale;
          }
        }
      }
    }
  }
}

}  // namespace lwm::cpu
