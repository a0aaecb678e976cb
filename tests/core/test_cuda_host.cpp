// The CUDA backend's host-side logic, which runs without a GPU: the argument checks every op
// makes before its first CUDA call, and the row-major → column-major GEMM plan of cuda::linear,
// evaluated here by a plain column-major loop against cpu::linear.
#include <cublas_v2.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cuda/cublas_loader.h"
#include "cuda/device_tensor.h"
#include "cuda/op_checks.h"
#include "cuda/sampling.h"
#include "lwm/error.h"
#include "lwm/linear.h"
#include "lwm/ops.h"
#include "lwm/tensor.h"
#include "test_support.h"

namespace lwm::cuda {
namespace {

void expect_invalid(const std::function<void()>& fn, const std::string& fragment) {
  const Error error = test::capture_error(fn);
  EXPECT_EQ(error.kind(), ErrorKind::invalid_argument) << error.what();
  EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos)
      << "'" << error.what() << "' should mention '" << fragment << "'";
}

// C = op(A) · B in column-major order exactly as cuBLAS reads the plan (A, B, C raw buffers).
std::vector<float> column_major_gemm(const GemmPlan& p, const float* a, const float* b) {
  std::vector<float> c(static_cast<std::size_t>(p.ldc * p.n), 0.0f);
  for (std::int64_t j = 0; j < p.n; ++j) {
    for (std::int64_t i = 0; i < p.m; ++i) {
      double sum = 0.0;
      for (std::int64_t l = 0; l < p.k; ++l) {
        const float a_il = p.transpose_a ? a[i * p.lda + l] : a[l * p.lda + i];
        sum += static_cast<double>(a_il) * b[j * p.ldb + l];
      }
      c[static_cast<std::size_t>(j * p.ldc + i)] = static_cast<float>(sum);
    }
  }
  return c;
}

// cuBLAS is loaded, not linked (the programs start without it); where the CUDA toolkit is
// installed, as on the build machine, it loads and the backend's calls reach the real library.
TEST(CudaHost, CublasIsLoadedAtRunTimeAndReached) {
  const std::string& missing = cuda::load_cublas();
  ASSERT_EQ(missing, "") << missing;
  EXPECT_STRNE(cublasGetStatusString(CUBLAS_STATUS_SUCCESS), "cuBLAS is not loaded");
  EXPECT_STRNE(cublasGetStatusString(CUBLAS_STATUS_NOT_SUPPORTED),
               cublasGetStatusString(CUBLAS_STATUS_SUCCESS));
}

TEST(CudaHost, GemmPlanComputesTheRowMajorProductForBothLayouts) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("LWM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  struct Case {
    std::int64_t m, in, out;
  };
  for (const Case c : {Case{1, 7, 33}, Case{3, 33, 7}, Case{17, 65, 129}}) {
    for (const MatrixLayout layout : {MatrixLayout::in_out, MatrixLayout::out_in}) {
      SCOPED_TRACE("m=" + std::to_string(c.m) + " in=" + std::to_string(c.in) +
                   " out=" + std::to_string(c.out) +
                   (layout == MatrixLayout::in_out ? " in_out" : " out_in"));
      const auto x = test::random_normal(static_cast<std::size_t>(c.m * c.in), rng);
      const Shape w_shape =
          layout == MatrixLayout::in_out ? Shape{c.in, c.out} : Shape{c.out, c.in};
      const Tensor w = Tensor::from_floats(
          w_shape, test::random_normal(static_cast<std::size_t>(c.in * c.out), rng));
      const GemmPlan plan = plan_linear({DType::f32, {c.m, c.in}}, {DType::f32, w_shape}, layout,
                                        {DType::f32, {c.m, c.out}});
      EXPECT_EQ(plan.transpose_a, layout == MatrixLayout::out_in);
      const std::vector<float> gpu_order = column_major_gemm(plan, w.f32(), x.data());
      std::vector<float> cpu(static_cast<std::size_t>(c.m * c.out));
      cpu::linear(x.data(), c.m, Linear{w, layout}, cpu.data());
      std::vector<double> expected(cpu.begin(), cpu.end());
      // Both sums are over `in` products: the double loop is exact to 2^-53, cpu::linear's
      // float32 accumulation is within in·2^-24 of the absolute sum (≤ 4·sqrt(in) for N(0,1)).
      const test::Closeness close = test::compare(gpu_order.data(), expected.data(),
                                                  gpu_order.size(), 1e-4 * std::sqrt(c.in), 1e-5);
      EXPECT_TRUE(close.ok) << "element " << close.worst_index << " ratio " << close.worst_ratio;
    }
  }
}

TEST(CudaHost, LinearRejectsMismatchedShapesAndDtypes) {
  const TensorDesc w{DType::bf16, {33, 7}};  // in_out: in 33, out 7
  expect_invalid(
      [&] {
        plan_linear({DType::bf16, {3, 32}}, w, MatrixLayout::in_out, {DType::f32, {3, 7}});
      },
      "[3, 32]");
  expect_invalid(
      [&] {
        plan_linear({DType::bf16, {3, 33}}, w, MatrixLayout::out_in, {DType::f32, {3, 33}});
      },
      "[33, 7]");
  expect_invalid(
      [&] {
        plan_linear({DType::bf16, {3, 33}}, w, MatrixLayout::in_out, {DType::f32, {3, 8}});
      },
      "must be [3, 7]");
  expect_invalid(
      [&] {
        plan_linear({DType::f32, {3, 33}}, w, MatrixLayout::in_out, {DType::f32, {3, 7}});
      },
      "share a dtype");
  expect_invalid(
      [&] {
        plan_linear({DType::bf16, {3, 33}}, w, MatrixLayout::in_out, {DType::f16, {3, 7}});
      },
      "bf16 or f32");
  expect_invalid(
      [&] {
        plan_linear({DType::bf16, {3, 33}}, {DType::bf16, {33}}, MatrixLayout::in_out,
                    {DType::f32, {3, 7}});
      },
      "rank 2");
}

TEST(CudaHost, ElementwiseChecksNameTheArgumentAtFault) {
  expect_invalid([] { check_add({DType::f32, {3, 7}}, {DType::f32, {3, 8}}); }, "[3, 8]");
  expect_invalid([] { check_add({DType::f16, {3, 7}}, {DType::f32, {3, 7}}); }, "f32 or bf16");
  expect_invalid(
      [] {
        check_swiglu({DType::bf16, {17}}, {DType::bf16, {17}}, {DType::bf16, {16}});
      },
      "out [16]");
  expect_invalid(
      [] {
        check_swiglu({DType::bf16, {17}}, {DType::f32, {17}}, {DType::bf16, {17}});
      },
      "share a dtype");
  const TensorDesc h{DType::f32, {3, 33}};
  const TensorDesc x{DType::bf16, {3, 33}};
  EXPECT_EQ(check_residual_rms_norm(h, &x, {DType::f16, {33}}, {DType::bf16, {3, 33}}), 33);
  EXPECT_EQ(check_residual_rms_norm(h, nullptr, {DType::f16, {33}}, {DType::bf16, {3, 33}}), 33);
  expect_invalid(
      [&] {
        check_residual_rms_norm(h, &x, {DType::f32, {32}}, {DType::f32, {3, 33}});
      },
      "weight [32]");
  const TensorDesc short_x{DType::bf16, {2, 33}};
  expect_invalid(
      [&] {
        check_residual_rms_norm(h, &short_x, {DType::f32, {33}}, {DType::f32, {3, 33}});
      },
      "x [2, 33]");
  expect_invalid(
      [&] {
        check_residual_rms_norm({DType::f32, {3, 0}}, nullptr, {DType::f32, {0}},
                                {DType::f32, {3, 0}});
      },
      "width 0");
  EXPECT_EQ(check_rope({DType::bf16, {17, 3, 128}}, 128), 17);
  expect_invalid([] { check_rope({DType::bf16, {17, 384}}, 128); }, "[tokens, heads, 128]");
  expect_invalid([] { check_rope({DType::bf16, {1, 1, 512}}, 512); }, "above the kernel");
  expect_invalid([] { check_convert({DType::f32, {3, 7}}, {DType::bf16, {7, 3}}); }, "same shape");
  EXPECT_EQ(check_logits({DType::f32, {3, 32001}}), 3);
  expect_invalid([] { check_logits({DType::f32, {3, 0}}); }, "vocab >= 1");
  expect_invalid([] { check_logits({DType::f32, {32001}}); }, "[rows, vocab]");
}

TEST(CudaHost, EmbeddingChecksIdsBeforeTouchingTheDevice) {
  expect_invalid(
      [] {
        check_embedding({DType::bf16, {100}}, 3, {DType::f32, {3, 100}});
      },
      "rank 2");
  expect_invalid(
      [] {
        check_embedding({DType::bf16, {100, 33}}, 3, {DType::f32, {4, 33}});
      },
      "must be [3, 33]");
  const std::vector<std::int32_t> good{0, 99, 5};
  check_token_ids(good, 100);
  const std::vector<std::int32_t> high{0, 99, 100};
  expect_invalid([&] { check_token_ids(high, 100); }, "token id 100 at position 2");
  const std::vector<std::int32_t> negative{-1};
  expect_invalid([&] { check_token_ids(negative, 100); }, "token id -1 at position 0");
}

TEST(CudaHost, DeviceSamplerValidatesItsParameters) {
  SamplingParams params;
  params.temperature = 0.7f;
  params.top_p = 0.9f;
  EXPECT_NO_THROW(DeviceSampler{params});
  params.top_k = 40;
  EXPECT_NO_THROW(DeviceSampler{params});
  params.top_k = -1;
  EXPECT_EQ(test::capture_error([&] { DeviceSampler{params}; }).kind(),
            ErrorKind::invalid_argument);
  params.top_k = 0;
  params.top_p = 0.0f;
  EXPECT_EQ(test::capture_error([&] { DeviceSampler{params}; }).kind(),
            ErrorKind::invalid_argument);
  params.top_p = 1.0f;
  params.temperature = -1.0f;
  EXPECT_EQ(test::capture_error([&] { DeviceSampler{params}; }).kind(),
            ErrorKind::invalid_argument);
}

TEST(CudaHost, DeviceTensorViewsSliceRowsWithoutTouchingTheDevice) {
  // The views only do pointer arithmetic; the address is a host array's and never dereferenced.
  alignas(256) static std::byte fake[5 * 33 * 2];
  DeviceTensor whole = DeviceTensor::view(DType::bf16, {5, 33}, fake, nullptr);
  EXPECT_FALSE(whole.owns_memory());
  EXPECT_EQ(whole.nbytes(), sizeof fake);
  DeviceTensor rows = whole.slice_rows(1, 4);
  EXPECT_EQ(rows.shape(), (Shape{3, 33}));
  EXPECT_EQ(rows.data(), fake + 66);  // one row of 33 bf16 values in
  EXPECT_EQ(whole.slice_rows(5, 5).numel(), 0);
  EXPECT_EQ(whole.reshaped({165}).shape(), (Shape{165}));
  expect_invalid([&] { whole.slice_rows(2, 6); }, "[5, 33]");
  expect_invalid([&] { whole.slice_rows(3, 2); }, "rows [3, 2)");
  expect_invalid([&] { whole.reshaped({33, 4}); }, "as [33, 4]");
  expect_invalid([] { DeviceTensor::view(DType::f32, {2, -1}, nullptr, nullptr); }, "negative");
  // Moving hands the memory over and leaves the source empty.
  DeviceTensor moved = std::move(rows);
  EXPECT_EQ(moved.data(), fake + 66);
  EXPECT_EQ(rows.data(),
            nullptr);  // NOLINT(bugprone-use-after-move): checking the moved-from state
}

}  // namespace
}  // namespace lwm::cuda
