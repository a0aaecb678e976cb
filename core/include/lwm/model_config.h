// The LWM text model's hyper-parameters (spec §1.1), read from and written to config.json.
// Both Hugging Face names (num_hidden_layers, rope_theta, max_position_embeddings) and LWM's own
// (theta, max_sequence_length) are accepted; we write the Hugging Face names plus our own fields.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "lwm/dtype.h"

namespace lwm {

// Which convention the weight tensors follow (spec §1.5, §1.6).
enum class WeightConvention : std::uint8_t {
  jax,  // LWM/JAX: kernels [in, out], interleaved RoPE pairs, names transformer.h.<i>.attention.wq.kernel
  hf,   // Hugging Face LlamaForCausalLM: weights [out, in], q/k rows permuted to rotate-half pairs
};

const char* convention_name(WeightConvention convention) noexcept;  // "jax" / "hf"
WeightConvention parse_convention(const std::string& name);           // throws Error

struct ModelConfig {
  std::int64_t vocab_size = 32000;
  std::int64_t hidden_size = 4096;
  std::int64_t intermediate_size = 11008;
  std::int64_t num_layers = 32;
  std::int64_t num_heads = 32;
  std::int64_t num_kv_heads = 32;
  std::int64_t max_sequence_length = 4096;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::int32_t bos_token_id = 1;
  std::int32_t eos_token_id = 2;
  std::int32_t pad_token_id = 0;
  bool tie_word_embeddings = false;
  // Vision-language models (spec §2.1): VQGAN codes and frame delimiters form a second
  // vocabulary with its own embedding and head. 0 → a text-only model.
  std::int64_t vision_vocab_size = 0;
  bool tie_vision_embeddings = false;
  // Absent from config.json → inferred from the tensor names when the weights are opened.
  bool convention_known = false;
  WeightConvention convention = WeightConvention::jax;
  DType torch_dtype = DType::bf16;  // storage dtype of the weights as written

  std::int64_t head_dim() const noexcept { return hidden_size / num_heads; }
  bool has_vision() const noexcept { return vision_vocab_size > 0; }
  // Parameters of the model (embeddings, layers, final norm, heads; vision ones included).
  std::int64_t parameter_count() const noexcept;
  // Bytes of K and V for one token over all layers when cached as `dtype`.
  std::int64_t kv_bytes_per_token(DType dtype) const noexcept;

  // Throws Error(config) naming `source` and the field when the config cannot describe a model
  // (non-positive sizes, hidden not divisible by heads, odd head_dim, theta <= 0, ...).
  void validate(const std::string& source) const;

  static ModelConfig from_json(const nlohmann::json& json, const std::string& source);
  nlohmann::json to_json() const;
  // Reads <dir>/config.json (or a config file path) and validates it.
  static ModelConfig load(const std::filesystem::path& path);
  // LWM's presets (spec §1.1): "7b", "debug", "200m", "1b", "3b", "13b", "30b", "65b", plus
  // "7b-vision" (LWM-Chat: vision vocabulary 8448, theta 5e7, spec §2.1), "tiny" and
  // "tiny-vision" (a few layers, for tests) and "100m" (our benchmark size).
  static ModelConfig preset(const std::string& name);
};

}  // namespace lwm
