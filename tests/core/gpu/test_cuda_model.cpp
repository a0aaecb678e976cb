// The whole LWM model on a GPU (cuda/device_model.h) against the CPU model: the same weights
// (stored bf16, so both read identical values), the same tokens, logits within what bf16
// activations cost. Prefill, chunked prefill and decode; bf16 and int8 KV caches; JAX and HF
// weight layouts; text and vision heads; bad inputs.
//
// Tolerance: the GPU rounds every GEMM input and output to bf16 (relative 2^-9 each) and the int8
// cache rounds keys and values to 1/254 of each row's largest magnitude; over a few layers of a
// small random model that stays under 2% (bf16) and 5% (int8) of the largest logit, while a
// wrong op (a missing residual, a transposed weight, a wrong RoPE position) moves logits by tens
// of percent.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cuda/context.h"
#include "cuda/device_model.h"
#include "lwm/error.h"
#include "lwm/model.h"
#include "lwm/model_maker.h"
#include "test_support.h"

namespace lwm {
namespace {

ModelConfig small_config(WeightConvention convention, std::int64_t head_dim,
                         std::int64_t vision_vocab) {
  ModelConfig config = ModelConfig::preset("tiny");
  config.vocab_size = 301;
  config.num_heads = 2;
  config.num_kv_heads = 2;
  config.hidden_size = 2 * head_dim;
  config.intermediate_size = 3 * head_dim + 5;
  config.num_layers = 3;
  config.vision_vocab_size = vision_vocab;
  config.convention = convention;
  config.convention_known = true;
  return config;
}

std::unique_ptr<Model> make_model(const test::TempDir& dir, const ModelConfig& config,
                                  std::uint64_t seed) {
  ModelMakerOptions options;
  options.config = config;
  options.dtype = DType::bf16;
  options.seed = seed;
  options.init_std = 0.08f;  // larger than training's, so layers change the logits visibly
  options.norm_weight_noise = 0.1f;
  make_random_model(dir.path() / "model", options);
  return Model::load(dir.path() / "model");
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (const float x : v) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}

void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, double fraction,
                  const std::string& what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  const double scale = max_abs(cpu);
  double worst = 0;
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    ASSERT_TRUE(std::isfinite(gpu[i])) << what << " element " << i;
    worst = std::max(worst, std::fabs(static_cast<double>(gpu[i]) - cpu[i]));
  }
  EXPECT_LE(worst, fraction * scale)
      << what << ": worst error " << worst << " of max |logit| " << scale;
}

struct Case {
  WeightConvention convention;
  std::int64_t head_dim;
  KvPrecision kv;
  double tolerance;
};

class DeviceModelTest : public ::testing::TestWithParam<Case> {};

TEST_P(DeviceModelTest, PrefillChunksAndDecodeMatchTheCpuModel) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  const Case c = GetParam();
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("LWM_TEST_SEED=" + std::to_string(seed));
  test::TempDir dir;
  const auto model = make_model(dir, small_config(c.convention, c.head_dim, 0), seed);
  std::mt19937_64 rng(seed);
  std::vector<std::int32_t> prompt(77);  // odd: not a multiple of any tile
  for (auto& t : prompt) t = static_cast<std::int32_t>(rng() % 301);

  KVCache cpu_cache(model->config(), 128);
  std::vector<float> cpu_logits;
  model->forward(prompt, cpu_cache, ForwardOptions{.logits_for = LogitsFor::all}, &cpu_logits);

  cuda::Context ctx(0);
  cuda::DeviceModel gpu(*model, ctx, 128, c.kv);
  std::vector<float> gpu_logits;
  gpu.forward(prompt, ForwardOptions{.logits_for = LogitsFor::all}, &gpu_logits);
  expect_close(gpu_logits, cpu_logits, c.tolerance, "prefill, every row");

  // Chunked prefill (a chunk of 1, then 9, then the rest) ends with the same last row.
  gpu.truncate(0);
  std::vector<float> chunked;
  const std::span<const std::int32_t> all(prompt);
  gpu.forward(all.subspan(0, 1), {}, nullptr);
  gpu.forward(all.subspan(1, 9), {}, nullptr);
  gpu.forward(all.subspan(10), ForwardOptions{.logits_for = LogitsFor::last}, &chunked);
  const std::vector<float> cpu_last(cpu_logits.end() - 301, cpu_logits.end());
  expect_close(chunked, cpu_last, c.tolerance, "chunked prefill, last row");

  // Decode: one token at a time after the prompt (the split-K kernel), against the CPU.
  for (int step = 0; step < 5; ++step) {
    const std::int32_t token = static_cast<std::int32_t>(rng() % 301);
    std::vector<float> cpu_step, gpu_step;
    model->forward(std::span(&token, 1), cpu_cache, LogitsFor::last, &cpu_step);
    gpu.forward(std::span(&token, 1), ForwardOptions{.logits_for = LogitsFor::last}, &gpu_step);
    expect_close(gpu_step, cpu_step, c.tolerance, "decode step " + std::to_string(step));
  }
  EXPECT_EQ(gpu.size(), cpu_cache.size());

  // The same call twice gives the same bits.
  gpu.truncate(0);
  std::vector<float> again;
  gpu.forward(prompt, ForwardOptions{.logits_for = LogitsFor::all}, &again);
  EXPECT_EQ(again, gpu_logits);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, DeviceModelTest,
    ::testing::Values(Case{WeightConvention::jax, 64, KvPrecision::bf16, 0.02},
                      Case{WeightConvention::hf, 128, KvPrecision::bf16, 0.02},
                      Case{WeightConvention::jax, 128, KvPrecision::int8, 0.05}),
    [](const ::testing::TestParamInfo<Case>& param_info) {  // e.g. "jax_d64_bf16"
      const Case& c = param_info.param;
      return std::string(c.convention == WeightConvention::jax ? "jax" : "hf") + "_d" +
             std::to_string(c.head_dim) + "_" + to_string(c.kv);
    });

TEST(DeviceModel, VisionTokensAndTheVisionHeadMatchTheCpu) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("LWM_TEST_SEED=" + std::to_string(seed));
  test::TempDir dir;
  const auto model = make_model(dir, small_config(WeightConvention::jax, 64, 40), seed);
  std::mt19937_64 rng(seed);
  std::vector<std::int32_t> tokens(23);
  std::vector<std::uint8_t> mask(23);
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    mask[i] = i >= 5 && i < 17 ? 1 : 0;
    tokens[i] = static_cast<std::int32_t>(rng() % (mask[i] ? 40 : 301));
  }
  const ForwardOptions options{
      .logits_for = LogitsFor::all, .head = Head::vision, .vision_mask = mask};
  KVCache cache(model->config(), 32);
  std::vector<float> cpu, gpu_logits;
  model->forward(tokens, cache, options, &cpu);
  cuda::Context ctx(0);
  cuda::DeviceModel gpu(*model, ctx, 32, KvPrecision::bf16);
  gpu.forward(tokens, options, &gpu_logits);
  expect_close(gpu_logits, cpu, 0.02, "vision head");
}

TEST(DeviceModel, RefusesWhatItCannotRun) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  test::TempDir dir;
  const auto model = make_model(dir, small_config(WeightConvention::jax, 64, 0), 1);
  cuda::Context ctx(0);
  try {
    cuda::DeviceModel f32(*model, ctx, 16, KvPrecision::f32);
    ADD_FAILURE() << "an f32 GPU cache was accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::unsupported);
  }
  cuda::DeviceModel gpu(*model, ctx, 16, KvPrecision::bf16);
  const std::vector<std::int32_t> too_many(17, 3);
  EXPECT_THROW(gpu.forward(too_many, {}, nullptr), Error);
  const std::vector<std::int32_t> bad_id = {1, 2, 301};
  EXPECT_THROW(gpu.forward(bad_id, {}, nullptr), Error);
  EXPECT_THROW(
      gpu.forward(std::vector<std::int32_t>{1},
                  ForwardOptions{.logits_for = LogitsFor::last, .head = Head::vision}, nullptr),
      Error);

  test::TempDir other;
  const auto odd = make_model(other, small_config(WeightConvention::jax, 32, 0), 2);
  try {
    cuda::DeviceModel unsupported(*odd, ctx, 16, KvPrecision::bf16);
    ADD_FAILURE() << "head dim 32 was accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::unsupported);
    EXPECT_NE(std::string(error.what()).find("head dim 32"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace lwm
