// cuBLASLt call of linear.h. The row-major product is expressed as a column-major one in
// op_checks.cpp (plan_linear); this file only turns that plan into cuBLASLt descriptors, asks
// the heuristic once per shape, and launches.
#include "cuda/linear.h"

#include <cstdint>
#include <string>
#include <utility>

#include "cuda/cuda_check.h"
#include "cuda/op_checks.h"
#include "lwm/error.h"

namespace lwm::cuda {
namespace {

cudaDataType_t cuda_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return CUDA_R_32F;
    case DType::bf16:
      return CUDA_R_16BF;
    case DType::f16:
      return CUDA_R_16F;
  }
  throw Error(ErrorKind::unsupported, "CUDA linear: unknown dtype");
}

// Owns the cuBLASLt descriptors of one call (destroyed on every path out).
struct Descriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr;
  cublasLtMatrixLayout_t b = nullptr;
  cublasLtMatrixLayout_t c = nullptr;
  cublasLtMatmulPreference_t preference = nullptr;
  Descriptors() = default;
  Descriptors(const Descriptors&) = delete;
  Descriptors& operator=(const Descriptors&) = delete;
  ~Descriptors() {
    if (preference != nullptr) static_cast<void>(cublasLtMatmulPreferenceDestroy(preference));
    if (c != nullptr) static_cast<void>(cublasLtMatrixLayoutDestroy(c));
    if (b != nullptr) static_cast<void>(cublasLtMatrixLayoutDestroy(b));
    if (a != nullptr) static_cast<void>(cublasLtMatrixLayoutDestroy(a));
    if (op != nullptr) static_cast<void>(cublasLtMatmulDescDestroy(op));
  }
};

// The largest power of two (up to 256, cuBLASLt's default assumption) dividing the address:
// views (row slices) need not start on an allocation's 256-byte boundary, and an algorithm chosen
// for aligned pointers may use vector loads that unaligned ones cannot feed.
std::uint32_t alignment_of(const void* pointer) {
  const auto address = reinterpret_cast<std::uintptr_t>(pointer);
  const std::uintptr_t lowest_bit = address & (~address + 1);
  return lowest_bit == 0 || lowest_bit > 256 ? 256u : static_cast<std::uint32_t>(lowest_bit);
}

}  // namespace

DeviceLinear DeviceLinear::upload(Context& ctx, const Linear& host) {
  if (host.weight.rank() != 2) {
    throw Error(ErrorKind::invalid_argument,
                "CUDA linear: weight must be rank 2, got " + shape_string(host.weight.shape()));
  }
  return DeviceLinear{DeviceTensor::upload(host.weight, ctx.stream()), host.layout};
}

std::int64_t DeviceLinear::in_features() const {
  return layout == MatrixLayout::in_out ? weight.dim(0) : weight.dim(1);
}

std::int64_t DeviceLinear::out_features() const {
  return layout == MatrixLayout::in_out ? weight.dim(1) : weight.dim(0);
}

void linear(Context& ctx, const DeviceTensor& x, const DeviceLinear& w, DeviceTensor& y) {
  const GemmPlan plan = plan_linear({x.dtype(), x.shape()}, {w.weight.dtype(), w.weight.shape()},
                                    w.layout, {y.dtype(), y.shape()});
  if (y.data() == x.data() && y.numel() > 0) {
    throw Error(ErrorKind::invalid_argument, "CUDA linear: y must not alias x");
  }
  if (plan.m == 0 || plan.n == 0) return;
  if (plan.k == 0) {
    // An empty sum: cuBLAS would leave y untouched.
    LWM_CUDA_CHECK(cudaMemsetAsync(y.data(), 0, y.nbytes(), ctx.stream()));
    return;
  }
  const cudaDataType_t ab_type = cuda_type(x.dtype());
  const cudaDataType_t c_type = cuda_type(y.dtype());
  const auto u64 = [](std::int64_t v) { return static_cast<std::uint64_t>(v); };

  Descriptors d;
  LWM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t trans_a = plan.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t trans_b = CUBLAS_OP_N;
  LWM_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof trans_a));
  LWM_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof trans_b));
  // A as stored: [m, k] column-major, or [k, m] when it is read transposed.
  const std::int64_t a_rows = plan.transpose_a ? plan.k : plan.m;
  const std::int64_t a_cols = plan.transpose_a ? plan.m : plan.k;
  LWM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.a, ab_type, u64(a_rows), u64(a_cols), plan.lda));
  LWM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.b, ab_type, u64(plan.k), u64(plan.n), plan.ldb));
  LWM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.c, c_type, u64(plan.m), u64(plan.n), plan.ldc));

  const std::uint32_t align_a = alignment_of(w.weight.data());
  const std::uint32_t align_b = alignment_of(x.data());
  const std::uint32_t align_c = alignment_of(y.data());
  const Context::GemmKey key{static_cast<int>(plan.transpose_a),
                             plan.m,
                             plan.n,
                             plan.k,
                             static_cast<int>(ab_type),
                             static_cast<int>(c_type),
                             static_cast<int>(align_a | (align_b << 9) | (align_c << 18))};
  auto& algorithms = ctx.gemm_algorithms();
  auto found = algorithms.find(key);
  if (found == algorithms.end()) {
    LWM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&d.preference));
    const std::size_t workspace = ctx.workspace_bytes();
    LWM_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        d.preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace));
    const std::pair<cublasLtMatmulPreferenceAttributes_t, std::uint32_t> alignments[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_c},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_c}};
    for (const auto& [attribute, bytes] : alignments) {
      LWM_CUBLAS_CHECK(
          cublasLtMatmulPreferenceSetAttribute(d.preference, attribute, &bytes, sizeof bytes));
    }
    cublasLtMatmulHeuristicResult_t result{};
    int returned = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
        ctx.lt(), d.op, d.a, d.b, d.c, d.c, d.preference, 1, &result, &returned);
    if (status != CUBLAS_STATUS_NOT_SUPPORTED) {
      LWM_CUBLAS_CHECK(status);
    }
    // No cuBLASLt algorithm (unusual leading dimensions, say): cuBLAS's GEMM takes any.
    found = algorithms
                .emplace(key, status == CUBLAS_STATUS_SUCCESS && returned > 0
                                  ? Context::GemmChoice(result.algo)
                                  : std::nullopt)
                .first;
  }
  const float alpha = 1.0f;
  const float beta = 0.0f;
  if (found->second.has_value()) {
    LWM_CUBLAS_CHECK(cublasLtMatmul(ctx.lt(), d.op, &alpha, w.weight.data(), d.a, x.data(), d.b,
                                    &beta, y.data(), d.c, y.data(), d.c, &*found->second,
                                    ctx.workspace(), ctx.workspace_bytes(), ctx.stream()));
    return;
  }
  constexpr std::int64_t kIntMax = 2147483647;
  if (plan.m > kIntMax || plan.n > kIntMax || plan.k > kIntMax || plan.lda > kIntMax) {
    throw Error(ErrorKind::unsupported,
                "CUDA linear: x " + shape_string(x.shape()) + " · weight " +
                    shape_string(w.weight.shape()) + " has no cuBLASLt algorithm on cuda:" +
                    std::to_string(ctx.device()) + " and is too large for cublasGemmEx");
  }
  const auto i32 = [](std::int64_t v) { return static_cast<int>(v); };
  LWM_CUBLAS_CHECK(cublasGemmEx(ctx.blas(), trans_a, trans_b, i32(plan.m), i32(plan.n), i32(plan.k),
                                &alpha, w.weight.data(), ab_type, i32(plan.lda), x.data(), ab_type,
                                i32(plan.ldb), &beta, y.data(), c_type, i32(plan.ldc),
                                CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

}  // namespace lwm::cuda
