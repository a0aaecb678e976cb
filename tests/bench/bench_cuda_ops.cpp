// Throughput of the CUDA backend's ops on one GPU (core/src/cuda/): bf16 GEMMs through cuBLASLt
// at LLaMA-7B / LWM-7B projection shapes (decode: 1 token, prefill: 2048 tokens) in TFLOP/s
// against the cuBLAS anchors of spec/ring-attention.md §2 and §3, and the memory-bound kernels
// in GB/s against the HBM bandwidth. Prints a markdown table; --json FILE writes the numbers.
// Without a usable GPU it says why and exits with status 2.
#include <cuda_runtime_api.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "bench_support.h"
#include "cuda/context.h"
#include "cuda/cuda_check.h"
#include "cuda/device_tensor.h"
#include "cuda/linear.h"
#include "cuda/ops.h"
#include "cuda/sampling.h"
#include "lwm/devices.h"
#include "lwm/error.h"
#include "lwm/generation.h"
#include "lwm/rope.h"

namespace {

using lwm::DType;
using lwm::Shape;
using lwm::cuda::Context;
using lwm::cuda::DeviceTensor;

// H100 SXM anchors (spec/ring-attention.md §2.1, §3): datasheet dense bf16 and HBM3 bandwidth,
// and what cuBLAS (through torch) and a device copy reached on the same GPU.
constexpr double kPeakTflops = 989.0;
constexpr double kCublasSquare4096Tflops = 720.0;
constexpr double kHbmGBs = 3350.0;
constexpr double kMeasuredCopyGBs = 2978.0;

// A device tensor of `dtype` filled with uniform values in [-scale, scale) (any finite data:
// throughput does not depend on it, but NaNs would change the sampler's path).
DeviceTensor random_tensor(Context& ctx, DType dtype, Shape shape, std::mt19937& rng,
                           float scale = 1.0f) {
  std::vector<float> values(static_cast<std::size_t>(lwm::shape_numel(shape)));
  std::uniform_real_distribution<float> dist(-scale, scale);
  for (auto& v : values) v = dist(rng);
  return DeviceTensor::upload(lwm::Tensor::from_floats(std::move(shape), values).to(dtype),
                              ctx.stream());
}

// Mean seconds per call of `fn` over `repeats` calls after `warmup`, timed by events on the
// context's stream.
double time_per_call(Context& ctx, const std::function<void()>& fn, int warmup, int repeats) {
  for (int i = 0; i < warmup; ++i) fn();
  cudaEvent_t start = nullptr;
  cudaEvent_t stop = nullptr;
  LWM_CUDA_CHECK(cudaEventCreate(&start));
  LWM_CUDA_CHECK(cudaEventCreate(&stop));
  LWM_CUDA_CHECK(cudaEventRecord(start, ctx.stream()));
  for (int i = 0; i < repeats; ++i) fn();
  LWM_CUDA_CHECK(cudaEventRecord(stop, ctx.stream()));
  LWM_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0.0f;
  LWM_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  LWM_CUDA_CHECK(cudaEventDestroy(start));
  LWM_CUDA_CHECK(cudaEventDestroy(stop));
  return static_cast<double>(ms) * 1e-3 / repeats;
}

struct Row {
  std::string op;
  std::string shape;
  double seconds = 0.0;
  double tflops = 0.0;  // 0 when the op is memory bound
  double gbs = 0.0;     // bytes that must cross HBM / time
  std::string versus;   // the anchor and the ratio to it
};

std::string percent(double value, double anchor) {
  char text[32];
  std::snprintf(text, sizeof text, "%.0f%%", 100.0 * value / anchor);
  return text;
}

int run(int argc, char** argv) {
  CLI::App app{
      "Throughput of the CUDA backend's ops (GEMM, norm, RoPE, SwiGLU, embedding, "
      "sampling) on one GPU."};
  int device = 0;
  int repeats = 50;
  std::string json_file;
  app.add_option("--device", device, "CUDA device ordinal")->capture_default_str();
  app.add_option("--repeats", repeats, "Timed calls per op (after 5 warm-up calls)")
      ->capture_default_str();
  app.add_option("--json", json_file, "Also write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  const lwm::DeviceInfo gpu = lwm::bench::require_gpu(device);
  const std::string cuda_status = lwm::list_devices().cuda_status;

  Context ctx(device);
  std::mt19937 rng(7);
  std::vector<Row> rows;
  const int warmup = 5;

  // --- GEMMs: LLaMA-7B's q/k/v/o (4096 → 4096), w1/w3 (4096 → 11008) and w2 (11008 → 4096),
  // bf16 in and out, both weight layouts.
  struct Gemm {
    std::int64_t in, out;
  };
  for (const std::int64_t tokens : {std::int64_t{1}, std::int64_t{2048}}) {
    for (const Gemm g : {Gemm{4096, 4096}, Gemm{4096, 11008}, Gemm{11008, 4096}}) {
      for (const lwm::MatrixLayout layout :
           {lwm::MatrixLayout::out_in, lwm::MatrixLayout::in_out}) {
        const bool in_out = layout == lwm::MatrixLayout::in_out;
        const Shape w_shape = in_out ? Shape{g.in, g.out} : Shape{g.out, g.in};
        const lwm::cuda::DeviceLinear w{random_tensor(ctx, DType::bf16, w_shape, rng, 0.02f),
                                        layout};
        const DeviceTensor x = random_tensor(ctx, DType::bf16, {tokens, g.in}, rng);
        DeviceTensor y(DType::bf16, {tokens, g.out}, ctx.stream());
        Row row;
        row.op = std::string("linear bf16 ") + (in_out ? "[in,out]" : "[out,in]");
        row.shape = std::to_string(tokens) + "x" + std::to_string(g.in) + " · " +
                    std::to_string(g.in) + "x" + std::to_string(g.out);
        row.seconds = time_per_call(
            ctx, [&] { lwm::cuda::linear(ctx, x, w, y); }, warmup, repeats);
        const double flops = 2.0 * static_cast<double>(tokens * g.in * g.out);
        const double bytes = 2.0 * static_cast<double>(g.in * g.out + tokens * (g.in + g.out));
        row.tflops = flops / row.seconds * 1e-12;
        row.gbs = bytes / row.seconds * 1e-9;
        row.versus =
            tokens == 1
                ? percent(row.gbs, kHbmGBs) + " of HBM " + std::to_string(int(kHbmGBs)) + " GB/s"
                : percent(row.tflops, kCublasSquare4096Tflops) + " of cuBLAS 720, " +
                      percent(row.tflops, kPeakTflops) + " of peak";
        rows.push_back(row);
      }
    }
  }

  // --- Memory-bound ops at a 2048-token prefill chunk of LWM-7B (hidden 4096, 32 heads of 128,
  // intermediate 11008, vocabulary 32000). Bytes are the minimum each op must move.
  const std::int64_t tokens = 2048;
  const std::int64_t hidden = 4096;
  const std::int64_t inner = 11008;
  const std::int64_t vocab = 32000;
  const auto add_row = [&](const std::string& op, const std::string& shape, double bytes,
                           const std::function<void()>& fn) {
    Row row;
    row.op = op;
    row.shape = shape;
    row.seconds = time_per_call(ctx, fn, warmup, repeats);
    row.gbs = bytes / row.seconds * 1e-9;
    row.versus = percent(row.gbs, kHbmGBs) + " of HBM, " + percent(row.gbs, kMeasuredCopyGBs) +
                 " of measured copy";
    rows.push_back(row);
  };
  const double elements = static_cast<double>(tokens * hidden);
  {
    DeviceTensor h = random_tensor(ctx, DType::f32, {tokens, hidden}, rng);
    const DeviceTensor x = random_tensor(ctx, DType::bf16, {tokens, hidden}, rng, 1e-3f);
    const DeviceTensor weight = random_tensor(ctx, DType::bf16, {hidden}, rng);
    DeviceTensor out(DType::bf16, {tokens, hidden}, ctx.stream());
    // h read + written (f32), x read (bf16), out written (bf16).
    add_row("residual_rms_norm f32 h, bf16 x/out", "2048x4096", elements * (4 + 4 + 2 + 2),
            [&] { lwm::cuda::residual_rms_norm(ctx, h, &x, weight, 1e-5f, out); });
    add_row("add f32 += bf16", "2048x4096", elements * (4 + 2 + 4),
            [&] { lwm::cuda::add(ctx, h, x); });
    DeviceTensor converted(DType::bf16, {tokens, hidden}, ctx.stream());
    add_row("convert f32 -> bf16", "2048x4096", elements * (4 + 2),
            [&] { lwm::cuda::convert(ctx, h, converted); });
  }
  {
    const DeviceTensor gate = random_tensor(ctx, DType::bf16, {tokens, inner}, rng);
    const DeviceTensor up = random_tensor(ctx, DType::bf16, {tokens, inner}, rng);
    DeviceTensor out(DType::bf16, {tokens, inner}, ctx.stream());
    add_row("swiglu bf16", "2048x11008", static_cast<double>(tokens * inner) * 6,
            [&] { lwm::cuda::swiglu(ctx, gate, up, out); });
  }
  {
    DeviceTensor q = random_tensor(ctx, DType::bf16, {tokens, 32, 128}, rng);
    const lwm::RotaryEmbedding rotary(128, 5e7, lwm::RopePairing::interleaved);
    add_row("rope bf16 (offset 1M)", "2048x32x128", elements * (2 + 2),
            [&] { lwm::cuda::rope(ctx, q, rotary, 1'000'000); });
  }
  {
    const DeviceTensor table = random_tensor(ctx, DType::bf16, {vocab, hidden}, rng);
    std::vector<std::int32_t> ids(static_cast<std::size_t>(tokens));
    std::uniform_int_distribution<std::int32_t> pick(0, static_cast<std::int32_t>(vocab - 1));
    for (auto& id : ids) id = pick(rng);
    lwm::cuda::DeviceBuffer<std::int32_t> device_ids(tokens, ctx.stream());
    device_ids.upload(ids.data(), tokens);
    DeviceTensor out(DType::bf16, {tokens, hidden}, ctx.stream());
    // Device ids with the deferred range check (no synchronization per call, as in decode),
    // and the immediate one, which waits for the GPU every call (its latency shows).
    lwm::cuda::TokenIdCheck check(ctx);
    add_row("embedding bf16 (device ids)", "2048 ids x 4096", elements * (2 + 2),
            [&] { lwm::cuda::embedding(ctx, table, device_ids.data(), tokens, out, check); });
    check.throw_if_bad(ctx, vocab);
    add_row("embedding bf16 (device ids, sync check)", "2048 ids x 4096", elements * (2 + 2),
            [&] { lwm::cuda::embedding(ctx, table, device_ids.data(), tokens, out); });
  }
  for (const std::int64_t batch : {std::int64_t{1}, std::int64_t{16}}) {
    const DeviceTensor logits = random_tensor(ctx, DType::f32, {batch, vocab}, rng, 8.0f);
    lwm::cuda::DeviceBuffer<std::int32_t> ids(batch, ctx.stream());
    const std::string shape = std::to_string(batch) + "x32000";
    const double bytes = static_cast<double>(batch * vocab) * 4;
    add_row("argmax f32", shape, bytes, [&] { lwm::cuda::argmax(ctx, logits, ids.data()); });
    lwm::SamplingParams params;
    params.temperature = 0.7f;
    params.top_p = 0.9f;
    lwm::cuda::DeviceSampler sampler(params);
    add_row("sample T=0.7 top-p 0.9 f32", shape, bytes,
            [&] { sampler.sample(ctx, logits, ids.data()); });
  }
  ctx.synchronize();

  std::printf("# CUDA backend ops — %s, %s (cc %d.%d), %s, CPU %s\n\n", lwm::bench::today().c_str(),
              gpu.name.c_str(), gpu.compute_major, gpu.compute_minor,
              cuda_status.c_str(), lwm::bench::cpu_name().c_str());
  std::printf("| op | shape | µs | TFLOP/s | GB/s | vs anchor |\n|---|---|---|---|---|---|\n");
  nlohmann::json results = nlohmann::json::array();
  for (const Row& r : rows) {
    std::printf("| %s | %s | %.1f | %s | %.0f | %s |\n", r.op.c_str(), r.shape.c_str(),
                r.seconds * 1e6,
                r.tflops > 0 ? std::to_string(static_cast<int>(r.tflops)).c_str() : "–", r.gbs,
                r.versus.c_str());
    results.push_back({{"op", r.op},
                       {"shape", r.shape},
                       {"seconds", r.seconds},
                       {"tflops", r.tflops},
                       {"gb_per_s", r.gbs}});
  }
  if (!json_file.empty()) {
    const nlohmann::json out = {{"date", lwm::bench::today()},
                                {"device", gpu.name},
                                {"cuda", cuda_status},
                                {"results", results}};
    std::ofstream(json_file) << out.dump(2) << '\n';
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return lwm::bench::main_reporting_errors("lwm_bench_cuda_ops", argc, argv, run);
}
