// ModelConfig: presets (spec §1.1), parameter counts, config.json in both the Hugging Face and
// LWM spellings, and how the weight convention is decided.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "lwm/error.h"
#include "lwm/model_config.h"
#include "test_support.h"

namespace lwm {
namespace {

using nlohmann::json;

TEST(ModelConfig, SevenBillionPresetMatchesLwm) {
  const ModelConfig config = ModelConfig::preset("7b");
  EXPECT_EQ(config.vocab_size, 32000);
  EXPECT_EQ(config.hidden_size, 4096);
  EXPECT_EQ(config.intermediate_size, 11008);
  EXPECT_EQ(config.num_layers, 32);
  EXPECT_EQ(config.num_heads, 32);
  EXPECT_EQ(config.num_kv_heads, 32);
  EXPECT_EQ(config.max_sequence_length, 4096);
  EXPECT_EQ(config.rms_norm_eps, 1e-6);
  EXPECT_EQ(config.rope_theta, 10000.0);
  EXPECT_EQ(config.head_dim(), 128);
  EXPECT_EQ(config.bos_token_id, 1);
  EXPECT_EQ(config.eos_token_id, 2);
  EXPECT_FALSE(config.tie_word_embeddings);
  // spec §1.5: the text model's total.
  EXPECT_EQ(config.parameter_count(), 6'738'415'616);
  EXPECT_EQ(config.kv_bytes_per_token(DType::bf16), 2 * 32 * 4096 * 2);
  EXPECT_EQ(config.kv_bytes_per_token(DType::f32), 2 * 32 * 4096 * 4);
}

TEST(ModelConfig, EveryPresetIsValid) {
  for (const char* name :
       {"7b", "debug", "200m", "1b", "3b", "13b", "30b", "65b", "tiny", "100m"}) {
    SCOPED_TRACE(name);
    const ModelConfig config = ModelConfig::preset(name);
    EXPECT_NO_THROW(config.validate(name));
    EXPECT_GT(config.parameter_count(), 0);
  }
  EXPECT_EQ(ModelConfig::preset("65b").rms_norm_eps, 1e-5);
  EXPECT_EQ(ModelConfig::preset("13b").num_heads, 40);
}

TEST(ModelConfig, OurPresets) {
  const ModelConfig tiny = ModelConfig::preset("tiny");
  EXPECT_EQ(tiny.vocab_size, 512);
  EXPECT_EQ(tiny.hidden_size, 64);
  EXPECT_EQ(tiny.intermediate_size, 160);
  EXPECT_EQ(tiny.num_layers, 2);
  EXPECT_EQ(tiny.num_heads, 4);
  EXPECT_EQ(tiny.max_sequence_length, 2048);
  // 512·64·2 + 2·(4·64·64 + 3·64·160 + 2·64) + 64
  EXPECT_EQ(tiny.parameter_count(), 65536 + 2 * (16384 + 30720 + 128) + 64);

  const ModelConfig hundred = ModelConfig::preset("100m");
  EXPECT_EQ(hundred.rope_theta, 1e6);
  EXPECT_EQ(hundred.max_sequence_length, 8192);
  EXPECT_EQ(hundred.parameter_count(), 105'788'160);
}

TEST(ModelConfig, UnknownPresetListsTheKnownOnes) {
  try {
    (void)ModelConfig::preset("8b");
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_THAT(error.what(), ::testing::HasSubstr("'8b'"));
    EXPECT_THAT(error.what(), ::testing::HasSubstr("7b"));
  }
}

TEST(ModelConfig, GroupedQueryAttentionShrinksKeyAndValue) {
  ModelConfig config = ModelConfig::preset("tiny");
  const std::int64_t full = config.parameter_count();
  config.num_kv_heads = 1;  // K and V go from 64×64 to 64×16 per layer
  EXPECT_NO_THROW(config.validate("gqa"));
  EXPECT_EQ(full - config.parameter_count(), 2 * 2 * 64 * (64 - 16));
  EXPECT_EQ(config.kv_bytes_per_token(DType::f32), 2 * 2 * 16 * 4);
}

TEST(ModelConfig, TiedEmbeddingsDropTheHead) {
  ModelConfig config = ModelConfig::preset("7b");
  config.tie_word_embeddings = true;
  EXPECT_EQ(config.parameter_count(), 6'738'415'616 - 32000 * 4096);
}

// LWM-Chat's released params are 13.6 GB of bf16 = 6.808 B parameters (spec §4.3): the text
// model plus a vision embedding and head of 8448 × 4096 each (spec §2.1).
TEST(ModelConfig, VisionPresetMatchesLwmChat) {
  const ModelConfig config = ModelConfig::preset("7b-vision");
  EXPECT_TRUE(config.has_vision());
  EXPECT_EQ(config.vision_vocab_size, 8448);
  EXPECT_EQ(config.rope_theta, 5e7);
  EXPECT_EQ(config.parameter_count(), 6'738'415'616 + 2 * 8448 * 4096);
  EXPECT_FALSE(ModelConfig::preset("7b").has_vision());
  ModelConfig negative = config;
  negative.vision_vocab_size = -1;
  EXPECT_THROW(negative.validate("negative"), Error);
}

TEST(ModelConfig, JsonRoundTripKeepsEveryField) {
  ModelConfig config;
  config.vocab_size = 1000;
  config.hidden_size = 96;
  config.intermediate_size = 200;
  config.num_layers = 3;
  config.num_heads = 6;
  config.num_kv_heads = 2;
  config.max_sequence_length = 1048576;
  config.rms_norm_eps = 1e-5;
  config.rope_theta = 5e7;
  config.bos_token_id = 10;
  config.eos_token_id = 11;
  config.pad_token_id = 12;
  config.tie_word_embeddings = true;
  config.vision_vocab_size = 8448;
  config.tie_vision_embeddings = true;
  config.convention_known = true;
  config.convention = WeightConvention::hf;
  config.torch_dtype = DType::f16;

  const ModelConfig back =
      ModelConfig::from_json(json::parse(config.to_json().dump()), "round trip");
  EXPECT_EQ(back.vocab_size, config.vocab_size);
  EXPECT_EQ(back.hidden_size, config.hidden_size);
  EXPECT_EQ(back.intermediate_size, config.intermediate_size);
  EXPECT_EQ(back.num_layers, config.num_layers);
  EXPECT_EQ(back.num_heads, config.num_heads);
  EXPECT_EQ(back.num_kv_heads, config.num_kv_heads);
  EXPECT_EQ(back.max_sequence_length, config.max_sequence_length);
  EXPECT_EQ(back.rms_norm_eps, config.rms_norm_eps);
  EXPECT_EQ(back.rope_theta, config.rope_theta);
  EXPECT_EQ(back.bos_token_id, config.bos_token_id);
  EXPECT_EQ(back.eos_token_id, config.eos_token_id);
  EXPECT_EQ(back.pad_token_id, config.pad_token_id);
  EXPECT_EQ(back.tie_word_embeddings, config.tie_word_embeddings);
  EXPECT_EQ(back.vision_vocab_size, config.vision_vocab_size);
  EXPECT_EQ(back.tie_vision_embeddings, config.tie_vision_embeddings);
  EXPECT_TRUE(back.convention_known);
  EXPECT_EQ(back.convention, WeightConvention::hf);
  EXPECT_EQ(back.torch_dtype, DType::f16);
}

TEST(ModelConfig, WritesHuggingFaceNames) {
  ModelConfig config = ModelConfig::preset("7b");
  config.convention_known = true;
  config.convention = WeightConvention::hf;
  const json written = config.to_json();
  EXPECT_EQ(written["model_type"], "llama");
  EXPECT_EQ(written["architectures"], json({"LlamaForCausalLM"}));
  EXPECT_EQ(written["lwm_weight_convention"], "hf");
  EXPECT_EQ(written["num_hidden_layers"], 32);
  EXPECT_EQ(written["num_attention_heads"], 32);
  EXPECT_EQ(written["num_key_value_heads"], 32);
  EXPECT_EQ(written["max_position_embeddings"], 4096);
  EXPECT_EQ(written["rope_theta"], 10000.0);
  EXPECT_EQ(written["torch_dtype"], "bfloat16");
  EXPECT_FALSE(written.contains("theta"));

  config.convention = WeightConvention::jax;
  EXPECT_EQ(config.to_json()["lwm_weight_convention"], "jax");
  EXPECT_FALSE(config.to_json().contains("architectures"));
  config.convention_known = false;
  EXPECT_FALSE(config.to_json().contains("lwm_weight_convention"));
}

// The released LWM-Text-Chat-1M config.json (spec §1.6), as Hugging Face ships it.
json lwm_text_chat_1m_config() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 11008, "max_position_embeddings": 1048576, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "pad_token_id": 0, "pretraining_tp": 1, "rms_norm_eps": 1e-06, "rope_scaling": null,
    "rope_theta": 50000000.0, "tie_word_embeddings": false, "torch_dtype": "float16",
    "transformers_version": "4.38.0", "use_cache": true, "vocab_size": 32000})");
}

TEST(ModelConfig, ReadsTheReleasedHuggingFaceConfig) {
  const ModelConfig config = ModelConfig::from_json(lwm_text_chat_1m_config(), "LWM-Text-Chat-1M");
  EXPECT_NO_THROW(config.validate("LWM-Text-Chat-1M"));
  EXPECT_EQ(config.rope_theta, 5e7);
  EXPECT_EQ(config.max_sequence_length, 1048576);
  EXPECT_EQ(config.torch_dtype, DType::f16);
  EXPECT_TRUE(config.convention_known);
  EXPECT_EQ(config.convention, WeightConvention::hf);
  EXPECT_EQ(config.parameter_count(), 6'738'415'616);
}

TEST(ModelConfig, ReadsLwmSpellings) {
  const json lwm = {{"vocab_size", 32000},
                    {"hidden_size", 4096},
                    {"intermediate_size", 11008},
                    {"num_hidden_layers", 32},
                    {"num_attention_heads", 32},
                    {"max_sequence_length", 131072},
                    {"theta", 1e7},
                    {"rms_norm_eps", 1e-6}};
  const ModelConfig config = ModelConfig::from_json(lwm, "lwm");
  EXPECT_EQ(config.max_sequence_length, 131072);
  EXPECT_EQ(config.rope_theta, 1e7);
  EXPECT_EQ(config.num_kv_heads, 32);     // no GQA unless said
  EXPECT_FALSE(config.convention_known);  // decided from the tensor names later
}

TEST(ModelConfig, AgreeingAliasesAreAccepted) {
  const json both = {{"rope_theta", 1e6},
                     {"theta", 1e6},
                     {"max_sequence_length", 8192},
                     {"max_position_embeddings", 8192}};
  const ModelConfig config = ModelConfig::from_json(both, "both");
  EXPECT_EQ(config.rope_theta, 1e6);
  EXPECT_EQ(config.max_sequence_length, 8192);
}

TEST(ModelConfig, ExplicitConventionWinsOverArchitectures) {
  json config = lwm_text_chat_1m_config();
  config["lwm_weight_convention"] = "jax";
  const ModelConfig parsed = ModelConfig::from_json(config, "explicit");
  EXPECT_TRUE(parsed.convention_known);
  EXPECT_EQ(parsed.convention, WeightConvention::jax);
}

TEST(ModelConfig, ConventionNames) {
  EXPECT_STREQ(convention_name(WeightConvention::jax), "jax");
  EXPECT_STREQ(convention_name(WeightConvention::hf), "hf");
  EXPECT_EQ(parse_convention("jax"), WeightConvention::jax);
  EXPECT_EQ(parse_convention("hf"), WeightConvention::hf);
  EXPECT_THROW(parse_convention("pytorch"), Error);
}

TEST(ModelConfig, LoadsFromADirectoryOrAFile) {
  test::TempDir dir;
  ModelConfig config = ModelConfig::preset("tiny");
  config.rope_theta = 2.5e7;
  std::ofstream(dir / "config.json") << config.to_json().dump(2);
  EXPECT_EQ(ModelConfig::load(dir.path()).rope_theta, 2.5e7);
  EXPECT_EQ(ModelConfig::load(dir / "config.json").hidden_size, 64);
}

TEST(ModelConfig, NullPadTokenKeepsTheDefault) {
  json config = lwm_text_chat_1m_config();
  config["pad_token_id"] = nullptr;
  EXPECT_EQ(ModelConfig::from_json(config, "null pad").pad_token_id, 0);
}

}  // namespace
}  // namespace lwm
