// y = x · W over weights of any storage dtype and either layout (linear.h).
//
// The output is cut into tiles of rows × output columns processed in parallel. Each tile widens
// its slice of W to float32 in a thread-local buffer (unless W already is float32, in which case
// Eigen reads it in place) and runs one Eigen GEMM. Widening per tile costs in·cols conversions
// against rows·in·cols multiply-adds, so it is negligible for prefill, and for decode (one row)
// it streams the weights once, which is the bandwidth floor anyway.
#include <Eigen/Core>
#include <algorithm>
#include <vector>

#include "lwm/error.h"
#include "lwm/ops.h"

namespace lwm::cpu {
namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using StridedMap = Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>>;
using ConstStridedMap = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;

constexpr std::int64_t kRowTile = 256;

std::int64_t column_tile(std::int64_t m, std::int64_t out) {
  // Small batches are bandwidth bound: narrow tiles give every thread work. Large batches want
  // wide tiles so each widened weight slice is reused across many rows.
  const std::int64_t tile = m <= 16 ? 64 : 256;
  return std::min(tile, out);
}

// Widens output columns [c0, c0 + cols) of W into `buffer`, keeping the stored orientation:
// [cols, in] for out_in weights (their rows are contiguous), [in, cols] for in_out weights (one
// contiguous run per input row). No transposition: scattered writes cost more than the GEMM.
const float* widen_tile(const Linear& w, std::int64_t in, std::int64_t out, std::int64_t c0,
                        std::int64_t cols, std::vector<float>& buffer) {
  const std::size_t element = dtype_size(w.weight.dtype());
  const auto* base = static_cast<const unsigned char*>(w.weight.raw());
  buffer.resize(static_cast<std::size_t>(cols * in));
  if (w.layout == MatrixLayout::out_in) {
    to_float(w.weight.dtype(), base + static_cast<std::size_t>(c0 * in) * element, buffer.data(),
             static_cast<std::size_t>(cols * in));
  } else {
    for (std::int64_t k = 0; k < in; ++k) {
      to_float(w.weight.dtype(), base + static_cast<std::size_t>(k * out + c0) * element,
               buffer.data() + k * cols, static_cast<std::size_t>(cols));
    }
  }
  return buffer.data();
}

}  // namespace

void linear(const float* x, std::int64_t m, const Linear& w, float* y) {
  if (w.weight.rank() != 2) {
    throw Error(ErrorKind::invalid_argument, "linear: weight must be rank 2, got " + shape_string(w.weight.shape()));
  }
  const std::int64_t in = w.in_features();
  const std::int64_t out = w.out_features();
  if (m <= 0 || out == 0) return;
  const std::int64_t col_tile = column_tile(m, out);
  const std::int64_t row_tiles = (m + kRowTile - 1) / kRowTile;
  const std::int64_t col_tiles = (out + col_tile - 1) / col_tile;
  const bool in_place_f32 = w.weight.dtype() == DType::f32;
  const auto* weights_f32 = static_cast<const float*>(w.weight.raw());

  // Tiny products (small models, decode of test models) run on the calling thread: a parallel
  // region costs more than their arithmetic.
#pragma omp parallel for collapse(2) schedule(static) if (m * in * out > (std::int64_t{1} << 20))
  for (std::int64_t ct = 0; ct < col_tiles; ++ct) {
    for (std::int64_t rt = 0; rt < row_tiles; ++rt) {
      thread_local std::vector<float> buffer;
      const std::int64_t c0 = ct * col_tile;
      const std::int64_t cols = std::min(col_tile, out - c0);
      const std::int64_t r0 = rt * kRowTile;
      const std::int64_t rows = std::min(kRowTile, m - r0);
      ConstStridedMap xs(x + r0 * in, rows, in, Eigen::OuterStride<>(in));
      StridedMap ys(y + r0 * out + c0, rows, cols, Eigen::OuterStride<>(out));
      // Either the weights in place (f32) or a widened copy of this tile's columns.
      const bool in_out = w.layout == MatrixLayout::in_out;
      const float* tile = in_place_f32 ? weights_f32 + (in_out ? c0 : c0 * in)
                                       : widen_tile(w, in, out, c0, cols, buffer);
      const std::int64_t stride = in_place_f32 ? (in_out ? out : in) : (in_out ? cols : in);
      if (in_out) {
        ys.noalias() = xs * ConstStridedMap(tile, in, cols, Eigen::OuterStride<>(stride));
      } else {
        ys.noalias() = xs * ConstStridedMap(tile, cols, in, Eigen::OuterStride<>(stride)).transpose();
      }
    }
  }
}

}  // namespace lwm::cpu
