// Host-side validation of the CUDA ops' arguments, and the row-major → cuBLAS column-major
// mapping of y = x · W. Pure C++ (no CUDA call), so every op rejects wrong shapes and dtypes
// with lwm::Error before it touches the GPU, and the checks run in tests on machines without one.
#pragma once

#include <cstdint>
#include <span>

#include "lwm/dtype.h"
#include "lwm/linear.h"
#include "lwm/tensor.h"

namespace lwm::cuda {

// What a check needs to know about a tensor.
struct TensorDesc {
  DType dtype = DType::f32;
  Shape shape;
};

// Activations (inputs and outputs of the element-wise ops) are f32 or bf16; weights and tables
// may also be f16. Each check throws Error(invalid_argument) naming the op, the argument, its
// shape or dtype, and what was expected.
void check_activation(const char* op, const char* name, const TensorDesc& t);

// y += x.
void check_add(const TensorDesc& y, const TensorDesc& x);
// h [rows, n] (+= x [rows, n]); out [rows, n] = rmsnorm(h) · weight [n]. Returns n.
std::int64_t check_residual_rms_norm(const TensorDesc& residual, const TensorDesc* x,
                                     const TensorDesc& weight, const TensorDesc& out);
// x [tokens, heads, head_dim] against a rotary embedding of `head_dim`; the kernel handles head
// dimensions up to kMaxRopeHeadDim. Returns tokens.
constexpr std::int64_t kMaxRopeHeadDim = 256;
std::int64_t check_rope(const TensorDesc& x, std::int64_t head_dim);
// out = silu(gate) · up, all the same shape and dtype.
void check_swiglu(const TensorDesc& gate, const TensorDesc& up, const TensorDesc& out);
// out [count, dim] = table [vocab, dim] rows.
void check_embedding(const TensorDesc& table, std::int64_t count, const TensorDesc& out);
// Every id in [0, vocab), with the CPU embedding's message for the first that is not.
void check_token_ids(std::span<const std::int32_t> ids, std::int64_t vocab);
// Any storage dtype to any, same shape.
void check_convert(const TensorDesc& src, const TensorDesc& dst);
// logits [rows, vocab], vocab ≥ 1. Returns rows.
std::int64_t check_logits(const TensorDesc& logits);

// y[m, out] = x[m, in] · W as one column-major cuBLAS product C = op(A) · B with
// C = yᵀ [out, m], A = the weight as stored, B = xᵀ [in, m]: row-major matrices are their
// transposes in column-major order, so neither layout of W needs a transposed copy.
struct GemmPlan {
  bool transpose_a = false;  // out_in weights: A is stored [in, out] column-major
  std::int64_t m = 0;        // rows of C = out features
  std::int64_t n = 0;        // columns of C = tokens
  std::int64_t k = 0;        // in features
  std::int64_t lda = 0;
  std::int64_t ldb = 0;
  std::int64_t ldc = 0;
};
// Checks shapes and the dtype combination (x and W both bf16, f16 or f32; y as x or f32).
GemmPlan plan_linear(const TensorDesc& x, const TensorDesc& weight, MatrixLayout layout,
                     const TensorDesc& y);

}  // namespace lwm::cuda
