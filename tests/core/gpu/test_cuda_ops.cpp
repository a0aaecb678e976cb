// Every CUDA backend op (core/src/cuda/) against the CPU backend's function and a double
// precision reference, on fresh random data (LWM_TEST_SEED replays) and odd shapes, plus the
// errors bad inputs must raise. Each test skips cleanly without a usable GPU.
//
// Tolerances: u = 2^-24 is float32's unit roundoff. bf16 keeps 8 significant bits, so rounding a
// value to bf16 moves it by at most 2^-9 relative (half an ulp); we allow 2^-8 for a result that
// is rounded to bf16 once after float32 arithmetic. References take the inputs as the GPU sees
// them (already rounded to their storage dtype), so only the op's own error is measured.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cuda/context.h"
#include "cuda/device_tensor.h"
#include "cuda/layer.h"
#include "cuda/linear.h"
#include "cuda/ops.h"
#include "cuda/sampling.h"
#include "lwm/dtype.h"
#include "lwm/error.h"
#include "lwm/generation.h"
#include "lwm/linear.h"
#include "lwm/model_config.h"
#include "lwm/ops.h"
#include "lwm/rope.h"
#include "lwm/tensor.h"
#include "test_support.h"

namespace lwm::cuda {
namespace {

constexpr double kU = 1.0 / (1 << 24);    // float32 unit roundoff
constexpr double kBf16 = 1.0 / (1 << 8);  // one bf16 rounding, with a factor 2 of margin

Context& context() {
  static const std::unique_ptr<Context> ctx = std::make_unique<Context>(0);
  return *ctx;
}

std::string seed_trace() {
  return "LWM_TEST_SEED=" + std::to_string(test::test_seed());
}

// Values as stored in `dtype` (what the GPU reads), widened back to float.
std::vector<float> stored(const std::vector<float>& values, DType dtype) {
  return Tensor::from_floats({static_cast<std::int64_t>(values.size())}, values)
      .to(dtype)
      .to_floats();
}

DeviceTensor on_device(const std::vector<float>& values, DType dtype, Shape shape) {
  return DeviceTensor::upload(Tensor::from_floats(std::move(shape), values).to(dtype),
                              context().stream());
}

std::vector<float> on_host(const DeviceTensor& t) {
  return t.download().to_floats();
}

using test::expect_within;

const char* name(DType d) {
  return dtype_name(d);
}

// --- linear -----------------------------------------------------------------------------------

TEST(CudaOps, LinearMatchesCpuAndDoubleForBothLayouts) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  SCOPED_TRACE(seed_trace());
  std::mt19937_64 rng(test::test_seed());
  struct Case {
    std::int64_t m, in, out;
  };
  struct Types {
    DType ab, y;
  };
  for (const Case c :
       {Case{1, 7, 33}, Case{3, 33, 7}, Case{17, 4096 + 3, 65}, Case{64, 256, 4096 + 8}}) {
    for (const MatrixLayout layout : {MatrixLayout::in_out, MatrixLayout::out_in}) {
      for (const Types t : {Types{DType::bf16, DType::f32}, Types{DType::bf16, DType::bf16},
                            Types{DType::f32, DType::f32}}) {
        SCOPED_TRACE("m=" + std::to_string(c.m) + " in=" + std::to_string(c.in) +
                     " out=" + std::to_string(c.out) +
                     (layout == MatrixLayout::in_out ? " in_out " : " out_in ") + name(t.ab) +
                     "->" + name(t.y));
        const auto x = stored(test::random_normal(static_cast<std::size_t>(c.m * c.in), rng), t.ab);
        const Shape w_shape =
            layout == MatrixLayout::in_out ? Shape{c.in, c.out} : Shape{c.out, c.in};
        const Tensor w =
            Tensor::from_floats(
                w_shape, test::random_normal(static_cast<std::size_t>(c.in * c.out), rng, 0.05f))
                .to(t.ab);
        const Linear host{w, layout};

        Context& ctx = context();
        const DeviceTensor dx = on_device(x, t.ab, {c.m, c.in});
        const DeviceLinear dw = DeviceLinear::upload(ctx, host);
        DeviceTensor dy(t.y, {c.m, c.out}, ctx.stream());
        linear(ctx, dx, dw, dy);
        const std::vector<float> gpu = on_host(dy);

        std::vector<float> cpu(static_cast<std::size_t>(c.m * c.out));
        cpu::linear(x.data(), c.m, host, cpu.data());
        // fp64 reference and the bound: products of bf16 (or f32) values are exact in double;
        // float32 accumulation of `in` terms in any order (cuBLAS may split K) is within
        // in·u·Σ|x·w| of the exact sum, and a bf16 output adds one rounding.
        const std::vector<float> wf = w.to_floats();
        std::vector<double> expected(cpu.size()), bound(cpu.size());
        for (std::int64_t r = 0; r < c.m; ++r) {
          for (std::int64_t o = 0; o < c.out; ++o) {
            double sum = 0.0, magnitude = 0.0;
            for (std::int64_t i = 0; i < c.in; ++i) {
              const double wv = layout == MatrixLayout::in_out
                                    ? wf[static_cast<std::size_t>(i * c.out + o)]
                                    : wf[static_cast<std::size_t>(o * c.in + i)];
              const double p = static_cast<double>(x[static_cast<std::size_t>(r * c.in + i)]) * wv;
              sum += p;
              magnitude += std::fabs(p);
            }
            const auto k = static_cast<std::size_t>(r * c.out + o);
            expected[k] = sum;
            bound[k] = static_cast<double>(c.in) * kU * magnitude + 1e-30 +
                       (t.y == DType::bf16 ? kBf16 * std::fabs(sum) : 0.0);
          }
        }
        expect_within(gpu, expected, bound, "GPU vs fp64");
        expect_within(cpu, expected, bound, "CPU vs fp64");
      }
    }
  }
}

TEST(CudaOps, LinearRejectsBadShapesBeforeLaunching) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  Context& ctx = context();
  const DeviceLinear w{DeviceTensor(DType::bf16, {33, 7}, ctx.stream()), MatrixLayout::in_out};
  const DeviceTensor x(DType::bf16, {3, 32}, ctx.stream());
  DeviceTensor y(DType::f32, {3, 7}, ctx.stream());
  const Error error = test::capture_error([&] { linear(ctx, x, w, y); });
  EXPECT_EQ(error.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(error.what()).find("[3, 32]"), std::string::npos) << error.what();
  ctx.synchronize();  // the context is still usable
}

TEST(CudaOps, OpsWorkOnRowViewsAtUnalignedOffsets) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  SCOPED_TRACE(seed_trace());
  std::mt19937_64 rng(test::test_seed());
  // Rows 1..4 of [5, 33] bf16 start 66 bytes into the allocation (2-byte aligned): the product on
  // the view must equal the product on a separate copy of those rows.
  const std::int64_t rows = 5, in = 33, out = 17;
  const auto x = stored(test::random_normal(static_cast<std::size_t>(rows * in), rng), DType::bf16);
  const Tensor w =
      Tensor::from_floats({out, in}, test::random_normal(static_cast<std::size_t>(out * in), rng))
          .to(DType::bf16);
  Context& ctx = context();
  DeviceTensor dx = on_device(x, DType::bf16, {rows, in});
  const DeviceLinear dw = DeviceLinear::upload(ctx, Linear{w, MatrixLayout::out_in});
  DeviceTensor dy(DType::bf16, {rows, out}, ctx.stream());
  DeviceTensor x_rows = dx.slice_rows(1, 4);
  DeviceTensor y_rows = dy.slice_rows(1, 4);
  linear(ctx, x_rows, dw, y_rows);
  const std::vector<float> sliced = on_host(y_rows);

  const std::vector<float> x_copy(x.begin() + in, x.begin() + 4 * in);
  const DeviceTensor dx_copy = on_device(x_copy, DType::bf16, {3, in});
  DeviceTensor dy_copy(DType::bf16, {3, out}, ctx.stream());
  linear(ctx, dx_copy, dw, dy_copy);
  // The same products with the same accumulation precision; the algorithms may differ (vector
  // loads need alignment), so allow float32 accumulation error and one bf16 rounding flip.
  const std::vector<float> copied = on_host(dy_copy);
  std::vector<double> expected(copied.begin(), copied.end()), bound(copied.size());
  for (std::size_t i = 0; i < copied.size(); ++i) bound[i] = kBf16 * std::fabs(copied[i]) + 1e-3;
  expect_within(sliced, expected, bound, "linear on a row view");

  // An element-wise op on a view changes exactly those rows.
  DeviceTensor ones =
      on_device(std::vector<float>(static_cast<std::size_t>(3 * in), 1.0f), DType::bf16, {3, in});
  add(ctx, x_rows, ones);
  const std::vector<float> after = on_host(dx);
  for (std::int64_t i = 0; i < rows * in; ++i) {
    const bool inside = i >= in && i < 4 * in;
    const auto k = static_cast<std::size_t>(i);
    const float want = inside ? stored({x[k] + 1.0f}, DType::bf16)[0] : x[k];
    ASSERT_EQ(after[k], want) << "element " << i;
  }
}

// --- residual + RMSNorm -----------------------------------------------------------------------

TEST(CudaOps, ResidualRmsNormMatchesCpuAndDouble) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  SCOPED_TRACE(seed_trace());
  std::mt19937_64 rng(test::test_seed());
  struct Types {
    DType residual, x, weight, out;
    bool with_x;
  };
  const float eps = 1e-5f;
  for (const std::int64_t rows : {1, 3, 17}) {
    for (const std::int64_t n : {7, 33, 4096 + 3}) {
      for (const Types t : {Types{DType::f32, DType::bf16, DType::bf16, DType::bf16, true},
                            Types{DType::f32, DType::f32, DType::f32, DType::f32, true},
                            Types{DType::bf16, DType::bf16, DType::f16, DType::f32, true},
                            Types{DType::f32, DType::f32, DType::bf16, DType::bf16, false}}) {
        SCOPED_TRACE("rows=" + std::to_string(rows) + " n=" + std::to_string(n) + " residual " +
                     name(t.residual) + " x " + name(t.x) + " weight " + name(t.weight) + " out " +
                     name(t.out) + (t.with_x ? "" : " (no x)"));
        const auto count = static_cast<std::size_t>(rows * n);
        const auto h = stored(test::random_normal(count, rng, 3.0f), t.residual);
        const auto x = stored(test::random_normal(count, rng), t.x);
        const Tensor weight =
            Tensor::from_floats({n}, test::random_normal(static_cast<std::size_t>(n), rng))
                .to(t.weight);
        const std::vector<float> gain = weight.to_floats();

        Context& ctx = context();
        DeviceTensor dh = on_device(h, t.residual, {rows, n});
        const DeviceTensor dx = on_device(x, t.x, {rows, n});
        const DeviceTensor dweight = DeviceTensor::upload(weight, ctx.stream());
        DeviceTensor dout(t.out, {rows, n}, ctx.stream());
        residual_rms_norm(ctx, dh, t.with_x ? &dx : nullptr, dweight, eps, dout);
        const std::vector<float> new_h = on_host(dh);
        const std::vector<float> out = on_host(dout);

        // The residual: h + x in float32 (one rounding, u), stored as the residual's dtype.
        std::vector<double> sum(count), sum_bound(count);
        for (std::size_t i = 0; i < count; ++i) {
          sum[i] = static_cast<double>(h[i]) + (t.with_x ? x[i] : 0.0f);
          sum_bound[i] = (t.residual == DType::bf16 ? kBf16 : 2 * kU) * std::fabs(sum[i]) + 1e-30;
        }
        expect_within(new_h, sum, sum_bound, "residual h + x");

        // The norm of the stored residual, in double. Float32 errors: the sum of squares (per
        // thread ≤ 9 terms, then a 512-wide tree: ≤ 18u relative), the root (≤ 9u + 1u), the
        // two products (2u): 32u covers it; a bf16 output adds one rounding.
        std::vector<double> expected(count), bound(count);
        for (std::int64_t r = 0; r < rows; ++r) {
          double squares = 0.0;
          for (std::int64_t i = 0; i < n; ++i)
            squares += static_cast<double>(new_h[r * n + i]) * new_h[r * n + i];
          const double inv = 1.0 / std::sqrt(squares / static_cast<double>(n) + eps);
          for (std::int64_t i = 0; i < n; ++i) {
            const auto k = static_cast<std::size_t>(r * n + i);
            expected[k] = new_h[k] * inv * gain[static_cast<std::size_t>(i)];
            bound[k] =
                (32 * kU + (t.out == DType::bf16 ? kBf16 : 0.0)) * std::fabs(expected[k]) + 1e-30;
          }
        }
        expect_within(out, expected, bound, "GPU norm vs fp64");

        // The CPU backend on the same stored residual.
        std::vector<float> cpu(count);
        cpu::rms_norm(new_h.data(), rows, n, weight, eps, cpu.data());
        expect_within(cpu, expected, bound, "CPU norm vs fp64");
      }
    }
  }
}

TEST(CudaOps, ResidualRmsNormRejectsAliasingAndWrongWeights) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  Context& ctx = context();
  DeviceTensor h(DType::f32, {3, 33}, ctx.stream());
  const DeviceTensor good(DType::f32, {33}, ctx.stream());
  const DeviceTensor bad(DType::f32, {32}, ctx.stream());
  DeviceTensor out(DType::bf16, {3, 33}, ctx.stream());
  EXPECT_EQ(
      test::capture_error([&] { residual_rms_norm(ctx, h, nullptr, bad, 1e-5f, out); }).kind(),
      ErrorKind::invalid_argument);
  EXPECT_EQ(test::capture_error([&] { residual_rms_norm(ctx, h, nullptr, good, 1e-5f, h); }).kind(),
            ErrorKind::invalid_argument);
}

// --- RoPE -------------------------------------------------------------------------------------

TEST(CudaOps, RopeMatchesCpuRopeWithPositionOffsetsAndArrays) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  SCOPED_TRACE(seed_trace());
  std::mt19937_64 rng(test::test_seed());
  for (const std::int64_t head_dim : {6, 64, 128}) {
    for (const RopePairing pairing : {RopePairing::interleaved, RopePairing::half}) {
      // LLaMA's theta, and LWM's long-context one (spec §1.3) for the largest heads.
      const RotaryEmbedding rotary(head_dim, head_dim == 128 ? 5e7 : 1e4, pairing);
      for (const std::int64_t tokens : {1, 3, 17}) {
        for (const std::int64_t offset : {std::int64_t{0}, std::int64_t{1'000'003}}) {
          for (const bool explicit_positions : {false, true}) {
            for (const DType dtype : {DType::f32, DType::bf16}) {
              const std::int64_t heads = tokens == 3 ? 1 : 3;
              SCOPED_TRACE("d=" + std::to_string(head_dim) +
                           (pairing == RopePairing::half ? " half" : " interleaved") + " tokens=" +
                           std::to_string(tokens) + " offset=" + std::to_string(offset) +
                           (explicit_positions ? " positions" : "") + " " + name(dtype));
              const auto count = static_cast<std::size_t>(tokens * heads * head_dim);
              const auto x = stored(test::random_normal(count, rng), dtype);
              // Positions: offset + j, or offset + a shuffled sparse set (a zigzag shard's).
              std::vector<std::int64_t> relative(static_cast<std::size_t>(tokens));
              std::iota(relative.begin(), relative.end(), 0);
              if (explicit_positions) {
                for (auto& p : relative) p = p * 7 + 5;
                std::shuffle(relative.begin(), relative.end(), rng);
              }
              std::vector<std::int64_t> positions(relative);
              for (auto& p : positions) p += offset;

              Context& ctx = context();
              DeviceTensor dx = on_device(x, dtype, {tokens, heads, head_dim});
              DeviceBuffer<std::int64_t> dpos(tokens, ctx.stream());
              dpos.upload(relative.data(), tokens);
              rope(ctx, dx, rotary, offset, explicit_positions ? dpos.data() : nullptr);
              const std::vector<float> gpu = on_host(dx);

              std::vector<float> cos_table(static_cast<std::size_t>(tokens * head_dim / 2));
              std::vector<float> sin_table(cos_table.size());
              rotary.angles(positions, cos_table.data(), sin_table.data());
              std::vector<float> cpu(x);
              rotary.apply(cpu.data(), tokens, heads, cos_table.data(), sin_table.data());

              // fp64: the spec's float32 angle, its exact cos/sin, the rotation in double. The
              // float32 cos/sin are correctly rounded (u each) and the rotation adds ≤ 2u of
              // (|x0| + |x1|); a bf16 result adds one rounding.
              const auto& inv = rotary.inverse_frequencies();
              const std::int64_t half = head_dim / 2;
              std::vector<double> expected(count), bound(count);
              for (std::int64_t t = 0; t < tokens; ++t) {
                for (std::int64_t h = 0; h < heads; ++h) {
                  const std::size_t base = static_cast<std::size_t>((t * heads + h) * head_dim);
                  for (std::int64_t i = 0; i < half; ++i) {
                    const auto angle =
                        static_cast<float>(static_cast<double>(positions[t]) * inv[i]);
                    const double c = std::cos(static_cast<double>(angle));
                    const double s = std::sin(static_cast<double>(angle));
                    const std::size_t a = base + (pairing == RopePairing::interleaved ? 2 * i : i);
                    const std::size_t b =
                        base + (pairing == RopePairing::interleaved ? 2 * i + 1 : i + half);
                    expected[a] = x[a] * c - x[b] * s;
                    expected[b] = x[a] * s + x[b] * c;
                    const double scale = std::fabs(x[a]) + std::fabs(x[b]);
                    for (const std::size_t k : {a, b}) {
                      bound[k] = 4 * kU * scale + 1e-30 +
                                 (dtype == DType::bf16 ? kBf16 * std::fabs(expected[k]) : 0.0);
                    }
                  }
                }
              }
              expect_within(gpu, expected, bound, "GPU vs fp64");
              expect_within(cpu, expected, bound, "CPU vs fp64");
            }
          }
        }
      }
    }
  }
}

TEST(CudaOps, RopeRejectsAHeadDimensionThatIsNotTheRotarys) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  Context& ctx = context();
  const RotaryEmbedding rotary(64, 10000.0, RopePairing::interleaved);
  DeviceTensor x(DType::bf16, {3, 2, 128}, ctx.stream());
  EXPECT_EQ(test::capture_error([&] { rope(ctx, x, rotary, 0); }).kind(),
            ErrorKind::invalid_argument);
}

// --- SwiGLU and add ---------------------------------------------------------------------------

TEST(CudaOps, SwigluMatchesCpuAndDoubleIncludingInPlace) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  SCOPED_TRACE(seed_trace());
  std::mt19937_64 rng(test::test_seed());
  for (const std::int64_t n : {1, 7, 4096 + 5, 3 * 11008}) {
    for (const DType dtype : {DType::f32, DType::bf16}) {
      for (const bool in_place : {false, true}) {
        SCOPED_TRACE("n=" + std::to_string(n) + " " + name(dtype) + (in_place ? " in place" : ""));
        const auto count = static_cast<std::size_t>(n);
        const auto gate = stored(test::random_normal(count, rng, 4.0f), dtype);
        const auto up = stored(test::random_normal(count, rng), dtype);
        Context& ctx = context();
        DeviceTensor dgate = on_device(gate, dtype, {n});
        const DeviceTensor dup = on_device(up, dtype, {n});
        DeviceTensor separate(dtype, {n}, ctx.stream());
        DeviceTensor& out = in_place ? dgate : separate;
        swiglu(ctx, dgate, dup, out);
        const std::vector<float> gpu = on_host(out);
        std::vector<float> cpu(count);
        cpu::swiglu(gate.data(), up.data(), cpu.data(), n);
        // expf (≤ 2 ulp), the add, the division and the product: 8u relative; bf16 adds one
        // rounding. No cancellation: silu(g)·u is a product of a sum of positives.
        std::vector<double> expected(count), bound(count);
        for (std::size_t i = 0; i < count; ++i) {
          const double g = gate[i];
          expected[i] = g / (1.0 + std::exp(-g)) * up[i];
          bound[i] =
              (8 * kU + (dtype == DType::bf16 ? kBf16 : 0.0)) * std::fabs(expected[i]) + 1e-37;
        }
        expect_within(gpu, expected, bound, "GPU vs fp64");
        // The CPU writes float32: its own bound is the float32 part only.
        std::vector<double> cpu_bound(count);
        for (std::size_t i = 0; i < count; ++i)
          cpu_bound[i] = 8 * kU * std::fabs(expected[i]) + 1e-37;
        expect_within(cpu, expected, cpu_bound, "CPU vs fp64");
      }
    }
  }
}

TEST(CudaOps, AddMatchesCpuAndDouble) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  SCOPED_TRACE(seed_trace());
  std::mt19937_64 rng(test::test_seed());
  for (const std::int64_t n : {1, 33, 4096 * 3 + 1}) {
    for (const DType y_type : {DType::f32, DType::bf16}) {
      for (const DType x_type : {DType::f32, DType::bf16}) {
        SCOPED_TRACE("n=" + std::to_string(n) + " y " + name(y_type) + " x " + name(x_type));
        const auto count = static_cast<std::size_t>(n);
        const auto y = stored(test::random_normal(count, rng), y_type);
        const auto x = stored(test::random_normal(count, rng), x_type);
        Context& ctx = context();
        DeviceTensor dy = on_device(y, y_type, {n});
        add(ctx, dy, on_device(x, x_type, {n}));
        const std::vector<float> gpu = on_host(dy);
        std::vector<float> cpu(y);
        cpu::add_inplace(cpu.data(), x.data(), n);
        std::vector<double> expected(count), bound(count);
        for (std::size_t i = 0; i < count; ++i) {
          expected[i] = static_cast<double>(y[i]) + x[i];
          bound[i] = (y_type == DType::bf16 ? kBf16 : kU) * std::fabs(expected[i]) + 1e-37;
        }
        expect_within(gpu, expected, bound, "GPU vs fp64");
        expect_within(cpu, expected, bound, "CPU vs fp64");
      }
    }
  }
  Context& ctx = context();
  DeviceTensor y(DType::f32, {3, 7}, ctx.stream());
  const DeviceTensor x(DType::f32, {7, 3}, ctx.stream());
  EXPECT_EQ(test::capture_error([&] { add(ctx, y, x); }).kind(), ErrorKind::invalid_argument);
}

// --- embedding --------------------------------------------------------------------------------

TEST(CudaOps, EmbeddingMatchesCpuExactlyFromHostAndDeviceIds) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  SCOPED_TRACE(seed_trace());
  std::mt19937_64 rng(test::test_seed());
  for (const DType table_type : {DType::f32, DType::bf16, DType::f16}) {
    for (const DType out_type : {DType::f32, DType::bf16}) {
      for (const std::int64_t count : {1, 3, 17}) {
        const std::int64_t vocab = 101;
        const std::int64_t dim = count == 17 ? 4096 + 3 : 33;
        SCOPED_TRACE(std::string("table ") + name(table_type) + " out " + name(out_type) +
                     " ids=" + std::to_string(count) + " dim=" + std::to_string(dim));
        const Tensor table =
            Tensor::from_floats({vocab, dim},
                                test::random_normal(static_cast<std::size_t>(vocab * dim), rng))
                .to(table_type);
        std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(vocab - 1));
        std::vector<std::int32_t> ids(static_cast<std::size_t>(count));
        for (auto& id : ids) id = pick(rng);
        ids.front() = static_cast<std::int32_t>(vocab - 1);  // the last row is reachable
        Context& ctx = context();
        const DeviceTensor dtable = DeviceTensor::upload(table, ctx.stream());

        // The CPU backend widens to float; the GPU then rounds to the output dtype exactly as
        // lwm::Tensor::to does (round to nearest even): the rows must match bit for bit.
        std::vector<float> cpu(static_cast<std::size_t>(count * dim));
        cpu::embedding(table, ids, cpu.data());
        const std::vector<float> expected = stored(cpu, out_type);

        DeviceTensor from_host(out_type, {count, dim}, ctx.stream());
        embedding(ctx, dtable, ids, from_host);
        EXPECT_EQ(on_host(from_host), expected) << "host ids";

        DeviceBuffer<std::int32_t> device_ids(count, ctx.stream());
        device_ids.upload(ids.data(), count);
        DeviceTensor from_device(out_type, {count, dim}, ctx.stream());
        embedding(ctx, dtable, device_ids.data(), count, from_device);
        EXPECT_EQ(on_host(from_device), expected) << "device ids";
      }
    }
  }
}

TEST(CudaOps, EmbeddingReportsOutOfRangeIdsAsErrors) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  Context& ctx = context();
  const DeviceTensor table(DType::bf16, {10, 33}, ctx.stream());
  DeviceTensor out(DType::f32, {3, 33}, ctx.stream());
  const std::vector<std::int32_t> host_ids{1, 10, 2};
  Error error = test::capture_error([&] { embedding(ctx, table, host_ids, out); });
  EXPECT_EQ(error.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(error.what()).find("token id 10 at position 1"), std::string::npos)
      << error.what();

  const std::vector<std::int32_t> device_values{3, -4, 12};
  DeviceBuffer<std::int32_t> device_ids(3, ctx.stream());
  device_ids.upload(device_values.data(), 3);
  error = test::capture_error([&] { embedding(ctx, table, device_ids.data(), 3, out); });
  EXPECT_EQ(error.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(error.what()).find("token id -4 at position 1"), std::string::npos)
      << error.what();
  // Deferred: lookups record the first bad id without synchronizing; the check reports it
  // once, and a cleared check passes.
  TokenIdCheck check(ctx);
  const std::vector<std::int32_t> later_values{0, 1, 2, 3, 4, 77};
  DeviceBuffer<std::int32_t> later(6, ctx.stream());
  later.upload(later_values.data(), 6);
  DeviceTensor six(DType::f32, {6, 33}, ctx.stream());
  embedding(ctx, table, later.data(), 3, out, check);  // ids 0, 1, 2: fine
  EXPECT_NO_THROW(check.throw_if_bad(ctx, 10));
  embedding(ctx, table, later.data(), 6, six, check);  // id 77 at position 5
  error = test::capture_error([&] { check.throw_if_bad(ctx, 10); });
  EXPECT_NE(std::string(error.what()).find("token id 77 at position 5"), std::string::npos)
      << error.what();
  check.clear(ctx);
  EXPECT_NO_THROW(check.throw_if_bad(ctx, 10));
  // The device is still healthy: a valid lookup works afterwards.
  const std::vector<std::int32_t> fine{0, 9, 5};
  EXPECT_NO_THROW(embedding(ctx, table, fine, out));
  EXPECT_NO_THROW(ctx.synchronize());
}

// --- conversion -------------------------------------------------------------------------------

TEST(CudaOps, ConversionRoundsLikeTheHostConversions) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  SCOPED_TRACE(seed_trace());
  std::mt19937_64 rng(test::test_seed());
  // Random bit patterns of finite floats (all exponents, subnormals, exact bf16 ties) and
  // normal values of the f16 range.
  std::vector<float> values;
  std::uniform_int_distribution<std::uint32_t> bits;
  while (values.size() < 4099) {
    std::uint32_t b = bits(rng);
    if (values.size() % 5 == 0) b = (b & 0xffff0000u) | 0x8000u;  // a tie for bf16
    float v;
    std::memcpy(&v, &b, 4);
    if (std::isfinite(v)) values.push_back(v);
  }
  const auto normals = test::random_normal(1031, rng, 100.0f);
  values.insert(values.end(), normals.begin(), normals.end());
  const auto n = static_cast<std::int64_t>(values.size());
  const Tensor source = Tensor::from_floats({n}, values);
  Context& ctx = context();
  for (const DType from : {DType::f32, DType::bf16, DType::f16}) {
    for (const DType to : {DType::f32, DType::bf16, DType::f16}) {
      SCOPED_TRACE(std::string(name(from)) + " -> " + name(to));
      const Tensor input = source.to(from);
      const DeviceTensor din = DeviceTensor::upload(input, ctx.stream());
      DeviceTensor dout(to, {n}, ctx.stream());
      convert(ctx, din, dout);
      const Tensor gpu = dout.download();
      const Tensor expected = input.to(to);
      ASSERT_EQ(gpu.nbytes(), expected.nbytes());
      // Bit for bit: both round to nearest even (f32 -> f16 overflows to inf on both sides).
      EXPECT_EQ(std::memcmp(gpu.raw(), expected.raw(), gpu.nbytes()), 0);
    }
  }
}

// --- argmax and sampling ----------------------------------------------------------------------

TEST(CudaOps, ArgmaxMatchesTheCpuSamplerIncludingTiesAndNans) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  SCOPED_TRACE(seed_trace());
  std::mt19937_64 rng(test::test_seed());
  for (const std::int64_t rows : {1, 3, 17}) {
    for (const std::int64_t vocab : {1, 7, 32000 + 1}) {
      for (const DType dtype : {DType::f32, DType::bf16}) {
        SCOPED_TRACE("rows=" + std::to_string(rows) + " vocab=" + std::to_string(vocab) + " " +
                     name(dtype));
        auto logits = test::random_normal(static_cast<std::size_t>(rows * vocab), rng, 3.0f);
        std::uniform_int_distribution<std::int64_t> column(0, vocab - 1);
        for (std::int64_t r = 0; r < rows; ++r) {
          float* row = logits.data() + r * vocab;
          if (r % 3 == 1) {  // a tie for the maximum: the lower id wins
            const float top = *std::max_element(row, row + vocab) + 1.0f;
            row[column(rng)] = top;
            row[column(rng)] = top;
          }
          if (r % 3 == 2) row[column(rng)] = std::numeric_limits<float>::quiet_NaN();
        }
        logits = stored(logits, dtype);  // the CPU sees what the GPU sees (bf16 may add ties)
        Context& ctx = context();
        const DeviceTensor dlogits = on_device(logits, dtype, {rows, vocab});
        DeviceBuffer<std::int32_t> ids(rows, ctx.stream());
        argmax(ctx, dlogits, ids.data());
        std::vector<std::int32_t> gpu(static_cast<std::size_t>(rows));
        ids.download(gpu.data(), rows);
        for (std::int64_t r = 0; r < rows; ++r) {
          Sampler greedy(SamplingParams{});
          const auto cpu =
              greedy.sample({logits.data() + r * vocab, static_cast<std::size_t>(vocab)});
          EXPECT_EQ(gpu[static_cast<std::size_t>(r)], cpu) << "row " << r;
        }
      }
    }
  }
}

// Softmax of logits / T in double.
std::vector<double> probabilities(const std::vector<float>& logits, double temperature) {
  const double top = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double total = 0.0;
  for (std::size_t i = 0; i < p.size(); ++i)
    total += p[i] = std::exp((logits[i] - top) / temperature);
  for (auto& v : p) v /= total;
  return p;
}

// Pearson's chi-square of `counts` against probabilities `p` (cells with p = 0 must be empty).
double chi_square(const std::vector<std::int64_t>& counts, const std::vector<double>& p,
                  std::int64_t draws) {
  double chi = 0.0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " lies outside the nucleus";
      continue;
    }
    const double expected = p[i] * static_cast<double>(draws);
    chi += (static_cast<double>(counts[i]) - expected) *
           (static_cast<double>(counts[i]) - expected) / expected;
  }
  return chi;
}

TEST(CudaOps, SamplingFollowsTheTemperatureAndNucleusDistribution) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  SCOPED_TRACE(seed_trace());
  std::mt19937_64 rng(test::test_seed());
  // Seven well-separated logits (no weight near the nucleus boundary), the same row 20000 times:
  // each row draws independently, so the counts are multinomial.
  const std::int64_t vocab = 7;
  const std::int64_t rows = 20000;
  std::vector<float> row{0.0f, 1.0f, 2.0f, 0.5f, 1.5f, -1.0f, 2.5f};
  std::shuffle(row.begin(), row.end(), rng);
  std::vector<float> logits;
  for (std::int64_t r = 0; r < rows; ++r) logits.insert(logits.end(), row.begin(), row.end());
  Context& ctx = context();
  const DeviceTensor dlogits = on_device(logits, DType::f32, {rows, vocab});
  DeviceBuffer<std::int32_t> ids(rows, ctx.stream());
  struct Limits {
    std::int32_t top_k;
    float top_p;
  };
  // Sorted probabilities at T = 0.8: 0.473, 0.253, 0.136, 0.073, 0.039, 0.021, 0.006; no
  // prefix mass lies within 0.02 of a cut below.
  for (const Limits limits : {Limits{0, 1.0f}, Limits{0, 0.6f}, Limits{3, 1.0f}, Limits{4, 0.8f}}) {
    const std::int32_t top_k = limits.top_k;
    const float top_p = limits.top_p;
    SCOPED_TRACE("top_k=" + std::to_string(top_k) + " top_p=" + std::to_string(top_p));
    SamplingParams params;
    params.temperature = 0.8f;
    params.top_k = top_k;
    params.top_p = top_p;
    params.seed = test::test_seed();
    DeviceSampler sampler(params);
    sampler.sample(ctx, dlogits, ids.data());
    std::vector<std::int32_t> drawn(static_cast<std::size_t>(rows));
    ids.download(drawn.data(), rows);
    std::vector<std::int64_t> counts(static_cast<std::size_t>(vocab), 0);
    for (const auto id : drawn) {
      ASSERT_GE(id, 0);
      ASSERT_LT(id, vocab);
      ++counts[static_cast<std::size_t>(id)];
    }
    // As the CPU sampler forms it: the k most likely, then highest first until the mass
    // reaches top_p of what top-k kept.
    std::vector<double> p = probabilities(row, params.temperature);
    std::vector<std::size_t> order(p.size());
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](auto a, auto b) { return p[a] > p[b]; });
    const std::size_t candidates = top_k > 0 ? static_cast<std::size_t>(top_k) : order.size();
    double candidate_mass = 0.0;
    for (std::size_t i = 0; i < candidates; ++i) candidate_mass += p[order[i]];
    double mass = 0.0;
    std::size_t kept = 0;
    while (kept < candidates && mass < top_p * candidate_mass) mass += p[order[kept++]];
    for (std::size_t i = kept; i < order.size(); ++i) p[order[i]] = 0.0;
    for (auto& v : p) v /= mass;
    // With ≤ 6 degrees of freedom, chi-square exceeds 40 with probability below 1e-6.
    EXPECT_LT(chi_square(counts, p, rows), 40.0);

    // The same seed replays the same draws; the next call draws afresh.
    DeviceSampler replay(params);
    replay.sample(ctx, dlogits, ids.data());
    std::vector<std::int32_t> again(static_cast<std::size_t>(rows));
    ids.download(again.data(), rows);
    EXPECT_EQ(again, drawn);
    replay.sample(ctx, dlogits, ids.data());
    ids.download(again.data(), rows);
    EXPECT_NE(again, drawn);
  }
}

TEST(CudaOps, SamplingAtTemperatureZeroIsArgmaxOnLargeVocabularies) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  SCOPED_TRACE(seed_trace());
  std::mt19937_64 rng(test::test_seed());
  const std::int64_t rows = 3;
  const std::int64_t vocab = 32000 + 1;
  auto logits = test::random_normal(static_cast<std::size_t>(rows * vocab), rng);
  // One clear maximum per row: bf16 rounding would otherwise tie the top values, and a sampler
  // may pick any of a tie.
  std::uniform_int_distribution<std::int64_t> column(0, vocab - 1);
  for (std::int64_t r = 0; r < rows; ++r)
    logits[static_cast<std::size_t>(r * vocab + column(rng))] = 8.0f;
  logits = stored(logits, DType::bf16);
  Context& ctx = context();
  const DeviceTensor dlogits = on_device(logits, DType::bf16, {rows, vocab});
  DeviceBuffer<std::int32_t> ids(rows, ctx.stream());
  DeviceSampler greedy(SamplingParams{});
  greedy.sample(ctx, dlogits, ids.data());
  std::vector<std::int32_t> gpu(rows);
  ids.download(gpu.data(), rows);
  // A very low temperature with a tight nucleus must also pick the maximum.
  SamplingParams sharp;
  sharp.temperature = 1e-3f;
  sharp.top_p = 0.5f;
  DeviceSampler nucleus(sharp);
  nucleus.sample(ctx, dlogits, ids.data());
  std::vector<std::int32_t> sampled(rows);
  ids.download(sampled.data(), rows);
  for (std::int64_t r = 0; r < rows; ++r) {
    Sampler cpu(SamplingParams{});
    const auto expected = cpu.sample({logits.data() + r * vocab, static_cast<std::size_t>(vocab)});
    EXPECT_EQ(gpu[static_cast<std::size_t>(r)], expected);
    EXPECT_EQ(sampled[static_cast<std::size_t>(r)], expected);
  }
}

// --- the ops composed as the model composes them ---------------------------------------------

// The feed-forward half of a layer (model.cpp): h += attention output; normed = rmsnorm(h)·w;
// h += w2 · (silu(w1 · normed) ⊙ (w3 · normed)), with the GPU's dtypes (f32 residual, bf16
// weights and activations) against the CPU backend rounding its activations to bf16 at the same
// points. Where a float32 value lies next to a bf16 rounding boundary the two sides may round it
// one bf16 ulp (≤ 2^-8 relative) apart; the bound propagates one such step at every bf16 stage
// (normed, gate, up, the product) through the magnitudes of the following products.
TEST(CudaOps, FeedForwardBlockMatchesTheCpuBackend) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  SCOPED_TRACE(seed_trace());
  std::mt19937_64 rng(test::test_seed());
  const std::int64_t tokens = 5, hidden = 67, inner = 173;
  const float eps = 1e-6f;
  const auto count = static_cast<std::size_t>(tokens * hidden);
  const auto h0 = test::random_normal(count, rng, 2.0f);
  const auto attention_out = stored(test::random_normal(count, rng), DType::bf16);
  const auto bf16_tensor = [&](Shape shape, float scale) {
    return Tensor::from_floats(
               shape, test::random_normal(static_cast<std::size_t>(shape_numel(shape)), rng, scale))
        .to(DType::bf16);
  };
  const Tensor norm_weight = bf16_tensor({hidden}, 1.0f);
  const Linear w1{bf16_tensor({hidden, inner}, 0.1f), MatrixLayout::in_out};
  const Linear w3{bf16_tensor({inner, hidden}, 0.1f), MatrixLayout::out_in};
  const Linear w2{bf16_tensor({inner, hidden}, 0.1f), MatrixLayout::in_out};

  Context& ctx = context();
  DeviceTensor h = on_device(h0, DType::f32, {tokens, hidden});
  const DeviceTensor attention = on_device(attention_out, DType::bf16, {tokens, hidden});
  const DeviceTensor dnorm = DeviceTensor::upload(norm_weight, ctx.stream());
  const DeviceLinear d1 = DeviceLinear::upload(ctx, w1), d3 = DeviceLinear::upload(ctx, w3),
                     d2 = DeviceLinear::upload(ctx, w2);
  DeviceTensor normed(DType::bf16, {tokens, hidden}, ctx.stream());
  DeviceTensor gate(DType::bf16, {tokens, inner}, ctx.stream());
  DeviceTensor up(DType::bf16, {tokens, inner}, ctx.stream());
  DeviceTensor projected(DType::f32, {tokens, hidden}, ctx.stream());
  residual_rms_norm(ctx, h, &attention, dnorm, eps, normed);
  linear(ctx, normed, d1, gate);
  linear(ctx, normed, d3, up);
  swiglu(ctx, gate, up, gate);
  linear(ctx, gate, d2, projected);
  add(ctx, h, projected);
  const std::vector<float> gpu = on_host(h);

  // The CPU backend, rounding to bf16 where the GPU stores bf16.
  std::vector<float> ch(h0), cnormed(count), cgate(static_cast<std::size_t>(tokens * inner)),
      cup(cgate.size()), cprojected(count);
  cpu::add_inplace(ch.data(), attention_out.data(), tokens * hidden);
  cpu::rms_norm(ch.data(), tokens, hidden, norm_weight, eps, cnormed.data());
  cnormed = stored(cnormed, DType::bf16);
  cpu::linear(cnormed.data(), tokens, w1, cgate.data());
  cpu::linear(cnormed.data(), tokens, w3, cup.data());
  cgate = stored(cgate, DType::bf16);
  cup = stored(cup, DType::bf16);
  std::vector<float> act(cgate.size());
  cpu::swiglu(cgate.data(), cup.data(), act.data(), tokens * inner);
  act = stored(act, DType::bf16);
  cpu::linear(act.data(), tokens, w2, cprojected.data());
  std::vector<double> expected(count);
  for (std::size_t i = 0; i < count; ++i) expected[i] = static_cast<double>(ch[i]) + cprojected[i];

  // Magnitudes for the bound: |normed|·|W| sums (G, U), then the product's possible change.
  const double ulp = 1.0 / 256;
  const auto wf1 = w1.weight.to_floats(), wf3 = w3.weight.to_floats(), wf2 = w2.weight.to_floats();
  std::vector<double> bound(count);
  for (std::int64_t t = 0; t < tokens; ++t) {
    std::vector<double> act_change(static_cast<std::size_t>(inner));
    for (std::int64_t j = 0; j < inner; ++j) {
      double g_mag = 0.0, u_mag = 0.0;
      for (std::int64_t i = 0; i < hidden; ++i) {
        const double n = std::fabs(cnormed[static_cast<std::size_t>(t * hidden + i)]);
        g_mag += n * std::fabs(wf1[static_cast<std::size_t>(i * inner + j)]);
        u_mag += n * std::fabs(wf3[static_cast<std::size_t>(j * hidden + i)]);
      }
      const auto k = static_cast<std::size_t>(t * inner + j);
      const double g = cgate[k];
      const double silu = g / (1.0 + std::exp(-g));
      // A normed flip moves gate by ≤ ulp·G (plus gate's own flip ≤ ulp·|g|); silu' ≤ 1.1.
      const double gate_change = ulp * (g_mag + std::fabs(g));
      const double up_change = ulp * (u_mag + std::fabs(cup[k]));
      act_change[static_cast<std::size_t>(j)] =
          1.1 * gate_change * (std::fabs(cup[k]) + up_change) + std::fabs(silu) * up_change +
          ulp * std::fabs(act[k]);
    }
    for (std::int64_t o = 0; o < hidden; ++o) {
      double change = 0.0, magnitude = 0.0;
      for (std::int64_t j = 0; j < inner; ++j) {
        const double w = std::fabs(wf2[static_cast<std::size_t>(j * hidden + o)]);
        change += act_change[static_cast<std::size_t>(j)] * w;
        magnitude += std::fabs(act[static_cast<std::size_t>(t * inner + j)]) * w;
      }
      const auto k = static_cast<std::size_t>(t * hidden + o);
      // Plus float32 accumulation (inner·u of the magnitude) and the residual's own roundings.
      bound[k] = change + static_cast<double>(inner) * kU * magnitude +
                 4 * kU * std::fabs(expected[k]) + 1e-30;
    }
  }
  expect_within(gpu, expected, bound, "feed-forward block, GPU vs CPU");
}

// The layer steps of layer.h: q, k, v before attention against the CPU backend (with bf16
// rounding emulated where the GPU stores bf16, and one bf16 flip allowed at each such point), the
// output projection added to the residual stream, and the pending feed-forward projection added
// by the next layer's norm.
TEST(CudaOps, LayerStepsMatchTheCpuBackend) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  SCOPED_TRACE(seed_trace());
  std::mt19937_64 rng(test::test_seed());
  ModelConfig config;
  config.hidden_size = 96;
  config.num_heads = 3;  // head_dim 32
  config.num_kv_heads = 1;
  config.intermediate_size = 173;
  config.rms_norm_eps = 1e-6;
  const std::int64_t tokens = 5, hidden = 96, head_dim = 32, kv_width = 32;
  const std::int64_t offset = 1000;
  const auto bf16_tensor = [&](Shape shape, float scale) {
    return Tensor::from_floats(
               shape, test::random_normal(static_cast<std::size_t>(shape_numel(shape)), rng, scale))
        .to(DType::bf16);
  };
  struct HostLayer {
    Tensor attention_norm, ffn_norm;
    Linear wq, wk, wv, wo, w1, w2, w3;
  };
  const HostLayer host{bf16_tensor({hidden}, 1.0f),
                       bf16_tensor({hidden}, 1.0f),
                       {bf16_tensor({hidden, hidden}, 0.1f), MatrixLayout::in_out},
                       {bf16_tensor({kv_width, hidden}, 0.1f), MatrixLayout::out_in},
                       {bf16_tensor({hidden, kv_width}, 0.1f), MatrixLayout::in_out},
                       {bf16_tensor({hidden, hidden}, 0.1f), MatrixLayout::out_in},
                       {bf16_tensor({hidden, 173}, 0.1f), MatrixLayout::in_out},
                       {bf16_tensor({173, hidden}, 0.1f), MatrixLayout::in_out},
                       {bf16_tensor({173, hidden}, 0.1f), MatrixLayout::out_in}};
  Context& ctx = context();
  const DeviceLayer layer{DeviceTensor::upload(host.attention_norm, ctx.stream()),
                          DeviceTensor::upload(host.ffn_norm, ctx.stream()),
                          DeviceLinear::upload(ctx, host.wq),
                          DeviceLinear::upload(ctx, host.wk),
                          DeviceLinear::upload(ctx, host.wv),
                          DeviceLinear::upload(ctx, host.wo),
                          DeviceLinear::upload(ctx, host.w1),
                          DeviceLinear::upload(ctx, host.w2),
                          DeviceLinear::upload(ctx, host.w3)};
  const RotaryEmbedding rotary(head_dim, 1e4, RopePairing::half);
  const auto h0 = test::random_normal(static_cast<std::size_t>(tokens * hidden), rng, 2.0f);
  DeviceTensor h = on_device(h0, DType::f32, {tokens, hidden});
  LayerActivations a(ctx, config, tokens);
  attention_inputs(ctx, config, layer, rotary, offset, h, a);

  // CPU: the norm (bf16 stored), the projections (bf16 stored), RoPE, bf16 again.
  const double ulp = 1.0 / 256;
  std::vector<float> normed(static_cast<std::size_t>(tokens * hidden));
  cpu::rms_norm(h0.data(), tokens, hidden, host.attention_norm, 1e-6f, normed.data());
  normed = stored(normed, DType::bf16);
  std::vector<std::int64_t> positions(static_cast<std::size_t>(tokens));
  std::iota(positions.begin(), positions.end(), offset);
  std::vector<float> cos_table(static_cast<std::size_t>(tokens * head_dim / 2));
  std::vector<float> sin_table(cos_table.size());
  rotary.angles(positions, cos_table.data(), sin_table.data());
  const auto check_projection = [&](const Linear& w, const DeviceTensor& gpu_tensor, bool rotated,
                                    const char* what) {
    const std::int64_t width = w.out_features();
    std::vector<float> projected(static_cast<std::size_t>(tokens * width));
    cpu::linear(normed.data(), tokens, w, projected.data());
    projected = stored(projected, DType::bf16);
    // Per element: a flip of normed through W (ulp·Σ|n·w|), the projection's own flip and its
    // float32 accumulation.
    const std::vector<float> wf = w.weight.to_floats();
    std::vector<double> change(projected.size());
    for (std::int64_t t = 0; t < tokens; ++t) {
      for (std::int64_t o = 0; o < width; ++o) {
        double magnitude = 0.0;
        for (std::int64_t i = 0; i < hidden; ++i) {
          const double wv = w.layout == MatrixLayout::in_out
                                ? wf[static_cast<std::size_t>(i * width + o)]
                                : wf[static_cast<std::size_t>(o * hidden + i)];
          magnitude += std::fabs(normed[static_cast<std::size_t>(t * hidden + i)] * wv);
        }
        const auto k = static_cast<std::size_t>(t * width + o);
        change[k] =
            (ulp + static_cast<double>(hidden) * kU) * magnitude + ulp * std::fabs(projected[k]);
      }
    }
    std::vector<double> expected(projected.begin(), projected.end());
    std::vector<double> bound(change);
    if (rotated) {
      std::vector<float> turned(projected);
      rotary.apply(turned.data(), tokens, width / head_dim, cos_table.data(), sin_table.data());
      turned = stored(turned, DType::bf16);
      expected.assign(turned.begin(), turned.end());
      // A rotation mixes each pair (i, i + d/2) with |cos|, |sin| ≤ 1: the pair's changes add;
      // then float32 rotation error and one more bf16 flip.
      const std::int64_t half = head_dim / 2;
      for (std::size_t base = 0; base < bound.size(); base += static_cast<std::size_t>(head_dim)) {
        for (std::int64_t i = 0; i < half; ++i) {
          const std::size_t x0 = base + static_cast<std::size_t>(i);
          const std::size_t x1 = x0 + static_cast<std::size_t>(half);
          const double pair = change[x0] + change[x1] +
                              4 * kU * (std::fabs(projected[x0]) + std::fabs(projected[x1]));
          bound[x0] = pair + ulp * std::fabs(expected[x0]);
          bound[x1] = pair + ulp * std::fabs(expected[x1]);
        }
      }
    }
    for (auto& b : bound) b += 1e-30;
    expect_within(on_host(gpu_tensor), expected, bound, what);
  };
  check_projection(host.wq, a.q, true, "q");
  check_projection(host.wk, a.k, true, "k (one KV head)");
  check_projection(host.wv, a.v, false, "v");

  // After attention: h += attended·wo in float32; the feed-forward result stays pending.
  const auto attended =
      stored(test::random_normal(static_cast<std::size_t>(tokens * hidden), rng), DType::bf16);
  a.attended = on_device(attended, DType::bf16, {tokens, hidden});
  const std::vector<float> h_before = on_host(h);
  attention_output_and_feed_forward(ctx, config, layer, h, a);
  EXPECT_TRUE(a.pending);
  const std::vector<float> h_after = on_host(h);
  const std::vector<float> wo = host.wo.weight.to_floats();
  std::vector<double> expected(h_after.size()), bound(h_after.size());
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t o = 0; o < hidden; ++o) {
      double sum = 0.0, magnitude = 0.0;
      for (std::int64_t i = 0; i < hidden; ++i) {
        const double p = static_cast<double>(attended[static_cast<std::size_t>(t * hidden + i)]) *
                         wo[static_cast<std::size_t>(o * hidden + i)];  // out_in
        sum += p;
        magnitude += std::fabs(p);
      }
      const auto k = static_cast<std::size_t>(t * hidden + o);
      expected[k] = h_before[k] + sum;
      bound[k] =
          static_cast<double>(hidden) * kU * magnitude + 2 * kU * std::fabs(expected[k]) + 1e-30;
    }
  }
  expect_within(h_after, expected, bound, "h after the output projection");

  // The next layer's norm adds the pending projection: the same float32 sum as on the host.
  const std::vector<float> pending = on_host(a.projected);
  attention_inputs(ctx, config, layer, rotary, offset + tokens, h, a);
  EXPECT_FALSE(a.pending);
  const std::vector<float> h_next = on_host(h);
  for (std::size_t i = 0; i < h_next.size(); ++i) {
    ASSERT_EQ(h_next[i], h_after[i] + pending[i]) << "element " << i;
  }
}

}  // namespace
}  // namespace lwm::cuda
