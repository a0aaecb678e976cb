#include "lwm/model_config.h"

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "lwm/error.h"
#include "config_file.h"

namespace lwm {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr const char* kConventionField = "lwm_weight_convention";
constexpr const char* kHfArchitecture = "LlamaForCausalLM";

[[noreturn]] void fail(ErrorKind kind, const std::string& source, const std::string& problem) {
  throw Error(kind, "model config '" + source + "': " + problem);
}

// A field may be spelled the Hugging Face way or the LWM way (spec §1.1 vs §1.6); when both are
// present they must agree, since silently preferring one would run a different model.
const json* find_field(const json& config, const std::string& source, const char* hf_name,
                       const char* lwm_name = nullptr) {
  const json* hf =
      config.contains(hf_name) && !config[hf_name].is_null() ? &config[hf_name] : nullptr;
  const json* lwm = lwm_name != nullptr && config.contains(lwm_name) && !config[lwm_name].is_null()
                        ? &config[lwm_name]
                        : nullptr;
  if (hf != nullptr && lwm != nullptr && *hf != *lwm) {
    fail(ErrorKind::config, source,
         std::string("fields '") + hf_name + "' (" + hf->dump() + ") and '" + lwm_name + "' (" +
             lwm->dump() + ") disagree");
  }
  return hf != nullptr ? hf : lwm;
}

template <typename Int>
void read_integer(const json& config, const std::string& source, Int& out, const char* hf_name,
                  const char* lwm_name = nullptr) {
  const json* value = find_field(config, source, hf_name, lwm_name);
  if (value == nullptr) return;
  if (!value->is_number_integer()) {
    fail(ErrorKind::config, source,
         std::string("field '") + hf_name + "' must be an integer, got " + value->dump());
  }
  const bool fits = value->is_number_unsigned() ? std::in_range<Int>(value->get<std::uint64_t>())
                                                : std::in_range<Int>(value->get<std::int64_t>());
  if (!fits) {
    fail(ErrorKind::config, source,
         std::string("field '") + hf_name + "' is out of range: " + value->dump());
  }
  const auto wide = value->get<std::int64_t>();
  out = static_cast<Int>(wide);
}

void read_number(const json& config, const std::string& source, double& out, const char* hf_name,
                 const char* lwm_name = nullptr) {
  const json* value = find_field(config, source, hf_name, lwm_name);
  if (value == nullptr) return;
  if (!value->is_number()) {
    fail(ErrorKind::config, source,
         std::string("field '") + hf_name + "' must be a number, got " + value->dump());
  }
  out = value->get<double>();
}

void read_bool(const json& config, const std::string& source, bool& out, const char* name) {
  const json* value = find_field(config, source, name);
  if (value == nullptr) return;
  if (!value->is_boolean()) {
    fail(ErrorKind::config, source,
         std::string("field '") + name + "' must be true or false, got " + value->dump());
  }
  out = value->get<bool>();
}

const char* torch_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "float32";
    case DType::bf16:
      return "bfloat16";
    case DType::f16:
      return "float16";
  }
  return "";
}

DType parse_torch_dtype(const json& value, const std::string& source) {
  for (const DType dtype : {DType::f32, DType::bf16, DType::f16}) {
    if (value == torch_dtype_name(dtype)) return dtype;
  }
  fail(ErrorKind::unsupported, source,
       "field 'torch_dtype' is " + value.dump() +
           "; supported: \"bfloat16\", \"float16\", \"float32\"");
}

// Fields that would change the computation in ways this engine does not implement; ignoring
// them would run a different model than the file describes.
void reject_unsupported_fields(const json& config, const std::string& source) {
  if (config.contains("model_type") && config["model_type"] != "llama") {
    fail(ErrorKind::unsupported, source,
         "field 'model_type' is " + config["model_type"].dump() +
             "; only \"llama\" models are supported");
  }
  if (config.contains("rope_scaling") && !config["rope_scaling"].is_null()) {
    fail(ErrorKind::unsupported, source,
         "field 'rope_scaling' is set; LWM uses plain RoPE with a larger theta (spec §1.3)");
  }
}

// Explicit field first; else HF's `architectures` marks a Hugging Face directory; else the
// loader decides from the tensor names.
void read_convention(const json& config, const std::string& source, ModelConfig& out) {
  if (config.contains(kConventionField)) {
    const json& value = config[kConventionField];
    if (!value.is_string()) {
      fail(ErrorKind::config, source,
           std::string("field '") + kConventionField + "' must be \"jax\" or \"hf\"");
    }
    try {
      out.convention = parse_convention(value.get<std::string>());
    } catch (const Error&) {
      fail(ErrorKind::config, source,
           std::string("field '") + kConventionField + "' is " + value.dump() +
               "; expected \"jax\" or \"hf\"");
    }
    out.convention_known = true;
    return;
  }
  if (config.contains("architectures") && config["architectures"].is_array()) {
    for (const auto& architecture : config["architectures"]) {
      if (architecture == kHfArchitecture) {
        out.convention = WeightConvention::hf;
        out.convention_known = true;
        return;
      }
    }
  }
  out.convention_known = false;
}

void require_positive(std::int64_t value, const std::string& source, const char* field) {
  if (value <= 0) {
    fail(ErrorKind::config, source,
         std::string("field '") + field + "' must be positive, got " + std::to_string(value));
  }
}

void require_token_in_vocab(std::int32_t id, std::int64_t vocab, const std::string& source,
                            const char* field) {
  if (id < 0 || id >= vocab) {
    fail(ErrorKind::config, source,
         std::string("field '") + field + "' is " + std::to_string(id) +
             ", outside the vocabulary [0, " + std::to_string(vocab) + ")");
  }
}

ModelConfig make_preset(std::int64_t hidden, std::int64_t intermediate, std::int64_t layers,
                        std::int64_t heads) {
  ModelConfig config;
  config.hidden_size = hidden;
  config.intermediate_size = intermediate;
  config.num_layers = layers;
  config.num_heads = heads;
  config.num_kv_heads = heads;  // LWM has no grouped-query attention (spec §1.1)
  return config;
}

ModelConfig tiny_preset() {
  ModelConfig config = make_preset(64, 160, 2, 4);
  config.vocab_size = 512;
  config.max_sequence_length = 2048;
  return config;
}

// 105,788,160 parameters: small enough for CPU benchmarks, LWM's shape otherwise.
ModelConfig hundred_million_preset() {
  ModelConfig config = make_preset(768, 2048, 8, 12);
  config.max_sequence_length = 8192;
  config.rope_theta = 1e6;
  return config;
}

// LWM-Chat (spec §2.1): 8192 VQGAN codes + 256 reserved ids, 7B text model with theta 5e7.
ModelConfig seven_billion_vision_preset() {
  ModelConfig config = make_preset(4096, 11008, 32, 32);
  config.vision_vocab_size = 8448;
  config.rope_theta = 5e7;
  return config;
}

// tiny with a vision vocabulary for a 32-code VQGAN plus its two delimiters and a reserve.
ModelConfig tiny_vision_preset() {
  ModelConfig config = tiny_preset();
  config.vision_vocab_size = 40;
  return config;
}

ModelConfig sixty_five_billion_preset() {
  ModelConfig config = make_preset(8192, 22016, 80, 64);
  config.rms_norm_eps = 1e-5;
  return config;
}

const std::map<std::string, std::function<ModelConfig()>>& presets() {
  // Spec §1.1 (LLaMAConfig presets); BOS/EOS as every entry point sets them (1 / 2).
  static const std::map<std::string, std::function<ModelConfig()>> table = {
      {"7b", [] { return make_preset(4096, 11008, 32, 32); }},
      {"debug", [] { return make_preset(256, 256, 2, 2); }},
      {"200m", [] { return make_preset(1024, 2048, 14, 8); }},
      {"1b", [] { return make_preset(2048, 5504, 22, 16); }},
      {"3b", [] { return make_preset(3200, 8640, 26, 32); }},
      {"13b", [] { return make_preset(5120, 13824, 40, 40); }},
      {"30b", [] { return make_preset(6656, 17920, 60, 52); }},
      {"65b", sixty_five_billion_preset},
      {"7b-vision", seven_billion_vision_preset},
      {"tiny", tiny_preset},
      {"tiny-vision", tiny_vision_preset},
      {"100m", hundred_million_preset},
  };
  return table;
}

}  // namespace

const char* convention_name(WeightConvention convention) noexcept {
  return convention == WeightConvention::jax ? "jax" : "hf";
}

WeightConvention parse_convention(const std::string& name) {
  if (name == "jax") return WeightConvention::jax;
  if (name == "hf") return WeightConvention::hf;
  throw Error(ErrorKind::invalid_argument,
              "unknown weight convention '" + name + "' (expected jax or hf)");
}

std::int64_t ModelConfig::parameter_count() const noexcept {
  const std::int64_t kv_width = num_kv_heads * head_dim();
  const std::int64_t attention = 2 * hidden_size * hidden_size + 2 * hidden_size * kv_width;
  const std::int64_t mlp = 3 * hidden_size * intermediate_size;
  const std::int64_t norms = 2 * hidden_size;
  const std::int64_t embedding = vocab_size * hidden_size;
  const std::int64_t head = tie_word_embeddings ? 0 : vocab_size * hidden_size;
  const std::int64_t vision = (tie_vision_embeddings ? 1 : 2) * vision_vocab_size * hidden_size;
  return embedding + num_layers * (attention + mlp + norms) + hidden_size + head + vision;
}

std::int64_t ModelConfig::kv_bytes_per_token(DType dtype) const noexcept {
  return 2 * num_layers * num_kv_heads * head_dim() * static_cast<std::int64_t>(dtype_size(dtype));
}

void ModelConfig::validate(const std::string& source) const {
  require_positive(vocab_size, source, "vocab_size");
  require_positive(hidden_size, source, "hidden_size");
  require_positive(intermediate_size, source, "intermediate_size");
  require_positive(num_layers, source, "num_hidden_layers");
  require_positive(num_heads, source, "num_attention_heads");
  require_positive(num_kv_heads, source, "num_key_value_heads");
  require_positive(max_sequence_length, source, "max_position_embeddings");
  if (hidden_size % num_heads != 0) {
    fail(ErrorKind::config, source,
         "field 'hidden_size' (" + std::to_string(hidden_size) +
             ") is not divisible by 'num_attention_heads' (" + std::to_string(num_heads) + ")");
  }
  if (head_dim() % 2 != 0) {
    fail(ErrorKind::config, source,
         "head dimension hidden_size / num_attention_heads = " + std::to_string(head_dim()) +
             " is odd; RoPE rotates pairs (spec §1.3)");
  }
  if (num_heads % num_kv_heads != 0) {
    fail(ErrorKind::config, source,
         "field 'num_attention_heads' (" + std::to_string(num_heads) +
             ") is not a multiple of 'num_key_value_heads' (" + std::to_string(num_kv_heads) + ")");
  }
  if (!std::isfinite(rope_theta) || rope_theta <= 0) {
    fail(ErrorKind::config, source,
         "field 'rope_theta' must be a positive finite number, got " + std::to_string(rope_theta));
  }
  if (!std::isfinite(rms_norm_eps) || rms_norm_eps <= 0) {
    fail(ErrorKind::config, source,
         "field 'rms_norm_eps' must be a positive finite number, got " +
             std::to_string(rms_norm_eps));
  }
  if (vision_vocab_size < 0) {
    fail(ErrorKind::config, source,
         "field 'vision_vocab_size' must be 0 (text only) or positive, got " +
             std::to_string(vision_vocab_size));
  }
  require_token_in_vocab(bos_token_id, vocab_size, source, "bos_token_id");
  require_token_in_vocab(eos_token_id, vocab_size, source, "eos_token_id");
  require_token_in_vocab(pad_token_id, vocab_size, source, "pad_token_id");
}

ModelConfig ModelConfig::from_json(const json& config, const std::string& source) {
  if (!config.is_object()) fail(ErrorKind::config, source, "is not a JSON object");
  reject_unsupported_fields(config, source);
  ModelConfig out;
  read_integer(config, source, out.vocab_size, "vocab_size");
  read_integer(config, source, out.hidden_size, "hidden_size");
  read_integer(config, source, out.intermediate_size, "intermediate_size");
  read_integer(config, source, out.num_layers, "num_hidden_layers");
  read_integer(config, source, out.num_heads, "num_attention_heads");
  // Without the field there is no grouped-query attention: as many K/V heads as query heads.
  out.num_kv_heads = out.num_heads;
  read_integer(config, source, out.num_kv_heads, "num_key_value_heads");
  read_integer(config, source, out.max_sequence_length, "max_position_embeddings",
               "max_sequence_length");
  read_number(config, source, out.rms_norm_eps, "rms_norm_eps");
  read_number(config, source, out.rope_theta, "rope_theta", "theta");
  read_integer(config, source, out.bos_token_id, "bos_token_id");
  read_integer(config, source, out.eos_token_id, "eos_token_id");
  read_integer(config, source, out.pad_token_id, "pad_token_id");
  read_bool(config, source, out.tie_word_embeddings, "tie_word_embeddings");
  read_integer(config, source, out.vision_vocab_size, "vision_vocab_size");
  read_bool(config, source, out.tie_vision_embeddings, "tie_vision_embeddings");
  if (config.contains("torch_dtype") && !config["torch_dtype"].is_null()) {
    out.torch_dtype = parse_torch_dtype(config["torch_dtype"], source);
  }
  read_convention(config, source, out);
  return out;
}

json ModelConfig::to_json() const {
  json config = {
      {"model_type", "llama"},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_layers},
      {"num_attention_heads", num_heads},
      {"num_key_value_heads", num_kv_heads},
      {"max_position_embeddings", max_sequence_length},
      {"rms_norm_eps", rms_norm_eps},
      {"rope_theta", rope_theta},
      {"bos_token_id", bos_token_id},
      {"eos_token_id", eos_token_id},
      {"pad_token_id", pad_token_id},
      {"tie_word_embeddings", tie_word_embeddings},
      {"torch_dtype", torch_dtype_name(torch_dtype)},
  };
  if (has_vision()) {
    config["vision_vocab_size"] = vision_vocab_size;
    config["tie_vision_embeddings"] = tie_vision_embeddings;
  }
  if (convention_known) {
    config[kConventionField] = convention_name(convention);
    if (convention == WeightConvention::hf) config["architectures"] = {kHfArchitecture};
  }
  return config;
}

ModelConfig ModelConfig::load(const fs::path& path) {
  const auto [file, config] = read_config_file(path);
  ModelConfig out = from_json(config, file.string());
  out.validate(file.string());
  return out;
}

ModelConfig ModelConfig::preset(const std::string& name) {
  const auto& table = presets();
  const auto found = table.find(name);
  if (found == table.end()) {
    std::string known;
    for (const auto& entry : table) known += (known.empty() ? "" : ", ") + entry.first;
    throw Error(ErrorKind::invalid_argument,
                "unknown model preset '" + name + "' (known: " + known + ")");
  }
  return found->second();
}

}  // namespace lwm
