#include "cuda/op_checks.h"

#include <string>

#include "lwm/error.h"

namespace lwm::cuda {
namespace {

[[noreturn]] void fail(const char* op, const std::string& what) {
  throw Error(ErrorKind::invalid_argument, std::string("CUDA ") + op + ": " + what);
}

std::string describe(const char* name, const TensorDesc& t) {
  return std::string(name) + " " + shape_string(t.shape) + " " + dtype_name(t.dtype);
}

void check_same_shape(const char* op, const char* a_name, const TensorDesc& a, const char* b_name,
                      const TensorDesc& b) {
  if (a.shape != b.shape) {
    fail(op, describe(a_name, a) + " and " + describe(b_name, b) + " must have the same shape");
  }
}

std::int64_t last_dim(const char* op, const char* name, const TensorDesc& t) {
  if (t.shape.empty()) fail(op, describe(name, t) + " must have at least one axis");
  return t.shape.back();
}

}  // namespace

void check_activation(const char* op, const char* name, const TensorDesc& t) {
  if (t.dtype != DType::f32 && t.dtype != DType::bf16) {
    fail(op, describe(name, t) + ": activations must be f32 or bf16");
  }
}

void check_add(const TensorDesc& y, const TensorDesc& x) {
  check_activation("add", "y", y);
  check_activation("add", "x", x);
  check_same_shape("add", "y", y, "x", x);
}

std::int64_t check_residual_rms_norm(const TensorDesc& residual, const TensorDesc* x,
                                     const TensorDesc& weight, const TensorDesc& out) {
  const char* op = "residual_rms_norm";
  check_activation(op, "residual", residual);
  check_activation(op, "out", out);
  if (x != nullptr) {
    check_activation(op, "x", *x);
    check_same_shape(op, "residual", residual, "x", *x);
  }
  check_same_shape(op, "residual", residual, "out", out);
  const std::int64_t n = last_dim(op, "residual", residual);
  if (n <= 0) fail(op, describe("residual", residual) + " has rows of width 0");
  if (shape_numel(weight.shape) != n) {
    fail(op, describe("weight", weight) + " does not match the row width " + std::to_string(n));
  }
  return n;
}

std::int64_t check_rope(const TensorDesc& x, std::int64_t head_dim) {
  check_activation("rope", "x", x);
  if (x.shape.size() != 3 || x.shape[2] != head_dim) {
    fail("rope", describe("x", x) + " must be [tokens, heads, " + std::to_string(head_dim) + "]");
  }
  if (head_dim > kMaxRopeHeadDim) {
    fail("rope", "head dimension " + std::to_string(head_dim) + " is above the kernel's " +
                     std::to_string(kMaxRopeHeadDim));
  }
  return x.shape[0];
}

void check_swiglu(const TensorDesc& gate, const TensorDesc& up, const TensorDesc& out) {
  check_activation("swiglu", "gate", gate);
  check_activation("swiglu", "up", up);
  check_activation("swiglu", "out", out);
  check_same_shape("swiglu", "gate", gate, "up", up);
  check_same_shape("swiglu", "gate", gate, "out", out);
  if (gate.dtype != up.dtype || gate.dtype != out.dtype) {
    fail("swiglu", describe("gate", gate) + ", " + describe("up", up) + " and " +
                       describe("out", out) + " must share a dtype");
  }
}

void check_embedding(const TensorDesc& table, std::int64_t count, const TensorDesc& out) {
  if (table.shape.size() != 2) fail("embedding", describe("table", table) + " must be rank 2");
  check_activation("embedding", "out", out);
  const Shape expected{count, table.shape[1]};
  if (out.shape != expected) {
    fail("embedding", describe("out", out) + " must be " + shape_string(expected) + " for " +
                          std::to_string(count) + " ids");
  }
}

void check_token_ids(std::span<const std::int32_t> ids, std::int64_t vocab) {
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      fail("embedding", "token id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                            " is outside the vocabulary of " + std::to_string(vocab));
    }
  }
}

void check_convert(const TensorDesc& src, const TensorDesc& dst) {
  check_same_shape("convert", "src", src, "dst", dst);
}

std::int64_t check_logits(const TensorDesc& logits) {
  check_activation("sample", "logits", logits);
  if (logits.shape.size() != 2 || logits.shape[1] < 1) {
    fail("sample", describe("logits", logits) + " must be [rows, vocab] with vocab >= 1");
  }
  if (logits.shape[1] > (std::int64_t{1} << 31) - 1) {
    fail("sample", describe("logits", logits) + ": the vocabulary must fit 32-bit token ids");
  }
  return logits.shape[0];
}

GemmPlan plan_linear(const TensorDesc& x, const TensorDesc& weight, MatrixLayout layout,
                     const TensorDesc& y) {
  const char* op = "linear";
  if (weight.shape.size() != 2) fail(op, describe("weight", weight) + " must be rank 2");
  const bool in_out = layout == MatrixLayout::in_out;
  const std::int64_t in = in_out ? weight.shape[0] : weight.shape[1];
  const std::int64_t out = in_out ? weight.shape[1] : weight.shape[0];
  if (x.shape.size() != 2 || x.shape[1] != in) {
    fail(op, describe("x", x) + " must be [tokens, " + std::to_string(in) + "] for " +
                 describe("weight", weight) + (in_out ? " ([in, out])" : " ([out, in])"));
  }
  const Shape expected{x.shape[0], out};
  if (y.shape != expected) fail(op, describe("y", y) + " must be " + shape_string(expected));
  if (x.dtype != weight.dtype) {
    fail(op, describe("x", x) + " and " + describe("weight", weight) +
                 " must share a dtype (convert the activations first)");
  }
  if (y.dtype != x.dtype && y.dtype != DType::f32) {
    fail(op, describe("y", y) + " must be " + dtype_name(x.dtype) + " or f32");
  }
  GemmPlan plan;
  plan.transpose_a = !in_out;
  plan.m = out;
  plan.n = x.shape[0];
  plan.k = in;
  // in_out: W [in, out] row-major is Wᵀ [out, in] column-major, ld = out.
  // out_in: W [out, in] row-major is W [in, out] column-major, ld = in, used transposed.
  plan.lda = in_out ? out : in;
  plan.ldb = in;
  plan.ldc = out;
  return plan;
}

}  // namespace lwm::cuda
