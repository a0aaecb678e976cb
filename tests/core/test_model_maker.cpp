// The random model maker: complete directories in both weight conventions (spec §1.5, §1.6),
// sharding with an index, determinism from the seed, and cancellation that leaves nothing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "lwm/error.h"
#include "lwm/model_maker.h"
#include "lwm/safetensors.h"
#include "test_support.h"
#include "weight_names.h"

namespace lwm {
namespace {

namespace fs = std::filesystem;
using weight_names::LayerMatrix;
using weight_names::LayerNorm;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

ModelMakerOptions tiny_options(WeightConvention convention, DType dtype = DType::bf16) {
  ModelMakerOptions options;
  options.config = ModelConfig::preset("tiny");
  options.config.convention = convention;
  options.dtype = dtype;
  options.seed = 1234;
  return options;
}

// Every tensor a model of `config` must hold, with its shape, written out independently of the
// maker from the tables in spec §1.5 (JAX: [in, out]) and §1.6 (HF: [out, in]).
std::map<std::string, Shape> expected_tensors(const ModelConfig& config) {
  const auto c = config.convention;
  const bool jax = c == WeightConvention::jax;
  const std::int64_t h = config.hidden_size;
  const std::int64_t ffn = config.intermediate_size;
  const std::int64_t kv = config.num_kv_heads * config.head_dim();
  const auto oriented = [jax](std::int64_t in, std::int64_t out) {
    return jax ? Shape{in, out} : Shape{out, in};
  };
  std::map<std::string, Shape> tensors;
  tensors[jax ? "transformer.wte.embedding" : "model.embed_tokens.weight"] = {config.vocab_size, h};
  tensors[jax ? "transformer.ln_f.kernel" : "model.norm.weight"] = {h};
  if (!config.tie_word_embeddings) {
    tensors[jax ? "lm_head.kernel" : "lm_head.weight"] = oriented(h, config.vocab_size);
  }
  for (std::int64_t i = 0; i < config.num_layers; ++i) {
    const std::string p = (jax ? "transformer.h." : "model.layers.") + std::to_string(i) + ".";
    tensors[p + (jax ? "attention.wq.kernel" : "self_attn.q_proj.weight")] = oriented(h, h);
    tensors[p + (jax ? "attention.wk.kernel" : "self_attn.k_proj.weight")] = oriented(h, kv);
    tensors[p + (jax ? "attention.wv.kernel" : "self_attn.v_proj.weight")] = oriented(h, kv);
    tensors[p + (jax ? "attention.wo.kernel" : "self_attn.o_proj.weight")] = oriented(h, h);
    tensors[p + (jax ? "feed_forward.w1.kernel" : "mlp.gate_proj.weight")] = oriented(h, ffn);
    tensors[p + (jax ? "feed_forward.w3.kernel" : "mlp.up_proj.weight")] = oriented(h, ffn);
    tensors[p + (jax ? "feed_forward.w2.kernel" : "mlp.down_proj.weight")] = oriented(ffn, h);
    tensors[p + (jax ? "attention_norm.kernel" : "input_layernorm.weight")] = {h};
    tensors[p + (jax ? "ffn_norm.kernel" : "post_attention_layernorm.weight")] = {h};
  }
  return tensors;
}

void expect_complete_model(const fs::path& dir, const ModelMakerOptions& options) {
  const WeightStore store(dir);
  const auto expected = expected_tensors(options.config);
  std::vector<std::string> expected_names;
  for (const auto& entry : expected) expected_names.push_back(entry.first);
  EXPECT_EQ(store.names(), expected_names);
  std::int64_t parameters = 0;
  for (const auto& [name, shape] : expected) {
    if (!store.contains(name)) continue;
    const Tensor tensor = store.tensor(name);
    EXPECT_EQ(tensor.shape(), shape) << name;
    EXPECT_EQ(tensor.dtype(), options.dtype) << name;
    parameters += tensor.numel();
  }
  EXPECT_EQ(parameters, options.config.parameter_count());

  const ModelConfig written = ModelConfig::load(dir);
  EXPECT_TRUE(written.convention_known);
  EXPECT_EQ(written.convention, options.config.convention);
  EXPECT_EQ(written.torch_dtype, options.dtype);
  EXPECT_EQ(written.hidden_size, options.config.hidden_size);
  EXPECT_EQ(written.vocab_size, options.config.vocab_size);
  EXPECT_EQ(written.rope_theta, options.config.rope_theta);
}

TEST(ModelMaker, TinyJaxModel) {
  test::TempDir root;
  const auto options = tiny_options(WeightConvention::jax);
  make_random_model(root / "model", options);
  expect_complete_model(root / "model", options);
  EXPECT_TRUE(fs::exists(root / "model/model.safetensors"));
  EXPECT_FALSE(fs::exists(root / "model/model.safetensors.index.json"));
  // Only the model directory: the staging directory was renamed, not copied.
  EXPECT_EQ(std::distance(fs::directory_iterator(root.path()), fs::directory_iterator()), 1);
}

TEST(ModelMaker, TinyHuggingFaceModel) {
  test::TempDir root;
  const auto options = tiny_options(WeightConvention::hf, DType::f16);
  make_random_model(root / "model", options);
  expect_complete_model(root / "model", options);
  const auto config = nlohmann::json::parse(read_bytes(root / "model/config.json"));
  EXPECT_EQ(config["architectures"], nlohmann::json({"LlamaForCausalLM"}));
  EXPECT_EQ(config["torch_dtype"], "float16");
}

TEST(ModelMaker, GroupedQueryAttentionAndTiedEmbeddings) {
  test::TempDir root;
  auto options = tiny_options(WeightConvention::hf, DType::f32);
  options.config.num_kv_heads = 2;
  options.config.tie_word_embeddings = true;
  make_random_model(root / "model", options);
  expect_complete_model(root / "model", options);
}

TEST(ModelMaker, ValuesFollowTheInitialisation) {
  test::TempDir root;
  auto options = tiny_options(WeightConvention::jax, DType::f32);
  options.init_std = 0.5f;
  make_random_model(root / "model", options);
  const WeightStore store(root / "model");
  // spec §1.1: norms start at exactly one.
  for (const float v : store.tensor("transformer.ln_f.kernel").to_floats()) ASSERT_EQ(v, 1.0f);
  const auto values =
      store.tensor(weight_names::token_embedding(WeightConvention::jax)).to_floats();
  double sum = 0, squares = 0;
  for (const float v : values) {
    sum += v;
    squares += static_cast<double>(v) * v;
  }
  const double n = static_cast<double>(values.size());  // 32768 samples
  const double mean = sum / n;
  const double stddev = std::sqrt(squares / n - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(stddev, 0.5, 0.02);
}

TEST(ModelMaker, NormNoiseMovesNormsOffOne) {
  test::TempDir root;
  auto options = tiny_options(WeightConvention::jax, DType::f32);
  options.norm_weight_noise = 0.1f;
  make_random_model(root / "model", options);
  const auto norm = WeightStore(root / "model").tensor("transformer.ln_f.kernel").to_floats();
  int away_from_one = 0;
  for (const float v : norm) away_from_one += v != 1.0f;
  EXPECT_GT(away_from_one, 60);
}

TEST(ModelMaker, ShardsWithAnIndex) {
  test::TempDir root;
  auto options = tiny_options(WeightConvention::jax);
  options.max_shard_bytes = 40000;  // the 64 KiB embedding gets a shard of its own
  make_random_model(root / "sharded", options);
  expect_complete_model(root / "sharded", options);

  const auto index =
      nlohmann::json::parse(read_bytes(root / "sharded/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], options.config.parameter_count() * 2);
  std::set<std::string> shard_names;
  for (const auto& [name, file] : index["weight_map"].items())
    shard_names.insert(file.get<std::string>());
  ASSERT_GT(shard_names.size(), 2u);
  const std::string count = std::to_string(shard_names.size());
  const std::string padded_count = std::string(5 - count.size(), '0') + count;
  EXPECT_EQ(*shard_names.begin(), "model-00001-of-" + padded_count + ".safetensors");
  for (const auto& name : shard_names) {
    EXPECT_TRUE(fs::exists(root / "sharded" / name)) << name;
    EXPECT_LE(fs::file_size(root / "sharded" / name), 66000u) << name;
  }
  EXPECT_FALSE(fs::exists(root / "sharded/model.safetensors"));

  // Each tensor has its own random stream, so sharding does not change any value.
  make_random_model(root / "single", tiny_options(WeightConvention::jax));
  const WeightStore sharded(root / "sharded");
  const WeightStore single(root / "single");
  for (const auto& name : single.names()) {
    EXPECT_EQ(sharded.tensor(name).to_floats(), single.tensor(name).to_floats()) << name;
  }
}

TEST(ModelMaker, SameSeedSameBytesOtherSeedOtherBytes) {
  test::TempDir root;
  const auto options = tiny_options(WeightConvention::hf);
  make_random_model(root / "a", options);
  make_random_model(root / "b", options);
  auto other = options;
  other.seed = options.seed + 1;
  make_random_model(root / "c", other);
  const std::string a = read_bytes(root / "a/model.safetensors");
  EXPECT_EQ(a, read_bytes(root / "b/model.safetensors"));
  EXPECT_NE(a, read_bytes(root / "c/model.safetensors"));
  EXPECT_EQ(read_bytes(root / "a/config.json"), read_bytes(root / "b/config.json"));
}

TEST(ModelMaker, ReportsProgressPerTensor) {
  test::TempDir root;
  std::vector<Progress> reports;
  make_random_model(root / "model", tiny_options(WeightConvention::jax), [&](const Progress& p) {
    reports.push_back(p);
    return true;
  });
  const auto tensors =
      static_cast<std::int64_t>(expected_tensors(ModelConfig::preset("tiny")).size());
  ASSERT_EQ(static_cast<std::int64_t>(reports.size()), tensors + 1);  // 0, 1, ..., all
  for (std::size_t i = 0; i < reports.size(); ++i) {
    EXPECT_EQ(reports[i].done, static_cast<std::int64_t>(i));
    EXPECT_EQ(reports[i].total, tensors);
  }
}

TEST(ModelMaker, CancellingLeavesNothing) {
  test::TempDir root;
  auto options = tiny_options(WeightConvention::jax);
  options.max_shard_bytes = 40000;  // cancel after some shards are complete
  try {
    make_random_model(root / "model", options, [](const Progress& p) { return p.done < 12; });
    FAIL() << "expected cancellation";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::cancelled);
    EXPECT_THAT(error.what(), ::testing::HasSubstr("model"));
  }
  EXPECT_FALSE(fs::exists(root / "model"));
  EXPECT_TRUE(fs::is_empty(root.path()));  // no staging directory left either
}

TEST(ModelMaker, RefusesANonEmptyDirectoryButFillsAnEmptyOne) {
  test::TempDir root;
  fs::create_directories(root / "full");
  std::ofstream(root / "full/keep.txt") << "precious";
  EXPECT_THROW(make_random_model(root / "full", tiny_options(WeightConvention::jax)), Error);
  EXPECT_EQ(read_bytes(root / "full/keep.txt"), "precious");

  fs::create_directories(root / "empty");
  make_random_model(root / "empty", tiny_options(WeightConvention::jax));
  EXPECT_TRUE(fs::exists(root / "empty/model.safetensors"));
}

TEST(ModelMaker, CopiesTheTokenizer) {
  test::TempDir root;
  std::ofstream(root / "source.model", std::ios::binary) << "sentencepiece bytes";
  auto options = tiny_options(WeightConvention::jax);
  options.tokenizer_model = root / "source.model";
  make_random_model(root / "model", options);
  EXPECT_EQ(read_bytes(root / "model/tokenizer.model"), "sentencepiece bytes");

  options.tokenizer_model = root / "missing.model";
  EXPECT_THROW(make_random_model(root / "other", options), Error);
  EXPECT_FALSE(fs::exists(root / "other"));
}

TEST(ModelMaker, RejectsAnImpossibleConfig) {
  test::TempDir root;
  auto options = tiny_options(WeightConvention::jax);
  options.config.num_heads = 3;
  EXPECT_THROW(make_random_model(root / "model", options), Error);
  EXPECT_FALSE(fs::exists(root / "model"));
}

}  // namespace
}  // namespace lwm
