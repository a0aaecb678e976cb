#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "lwm/error.h"
#include "lwm/ops.h"

namespace lwm::cpu {

void rms_norm(const float* x, std::int64_t m, std::int64_t n, const Tensor& weight, float eps, float* y) {
  if (weight.numel() != n) {
    throw Error(ErrorKind::invalid_argument, "rms_norm: weight " + shape_string(weight.shape()) +
                                                 " does not match width " + std::to_string(n));
  }
  const std::vector<float> gain = weight.to_floats();
#pragma omp parallel for schedule(static) if (m * n > (std::int64_t{1} << 18))
  for (std::int64_t row = 0; row < m; ++row) {
    const float* in = x + row * n;
    float* out = y + row * n;
    // Sum of squares in double: the mean of 4096 squares in float loses a few bits we keep.
    double sum = 0.0;
    for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(in[i]) * in[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(n) + eps));
    for (std::int64_t i = 0; i < n; ++i) out[i] = in[i] * inv * gain[static_cast<std::size_t>(i)];
  }
}

void swiglu(const float* gate, const float* up, float* out, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > (std::int64_t{1} << 18))
  for (std::int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void embedding(const Tensor& table, std::span<const std::int32_t> ids, float* out) {
  if (table.rank() != 2) {
    throw Error(ErrorKind::invalid_argument, "embedding: table must be rank 2, got " + shape_string(table.shape()));
  }
  const std::int64_t vocab = table.dim(0);
  const std::int64_t dim = table.dim(1);
  const std::size_t row_bytes = static_cast<std::size_t>(dim) * dtype_size(table.dtype());
  const auto* base = static_cast<const unsigned char*>(table.raw());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      throw Error(ErrorKind::invalid_argument, "token id " + std::to_string(ids[i]) + " at position " +
                                                   std::to_string(i) + " is outside the vocabulary of " +
                                                   std::to_string(vocab));
    }
    to_float(table.dtype(), base + static_cast<std::size_t>(ids[i]) * row_bytes, out + i * dim,
             static_cast<std::size_t>(dim));
  }
}

void softmax(float* x, std::int64_t m, std::int64_t n) {
#pragma omp parallel for schedule(static) if (m * n > (std::int64_t{1} << 18))
  for (std::int64_t row = 0; row < m; ++row) {
    float* v = x + row * n;
    float max = -std::numeric_limits<float>::infinity();
    for (std::int64_t i = 0; i < n; ++i) max = std::max(max, v[i]);
    if (max == -std::numeric_limits<float>::infinity()) {
      // Every entry masked: define the result as zeros rather than NaN.
      std::fill(v, v + n, 0.0f);
      continue;
    }
    double sum = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      v[i] = std::exp(v[i] - max);
      sum += v[i];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (std::int64_t i = 0; i < n; ++i) v[i] *= inv;
  }
}

void add_inplace(float* y, const float* x, std::int64_t n) {
#pragma omp parallel for schedule(static) if (n > (std::int64_t{1} << 18))
  for (std::int64_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace lwm::cpu
