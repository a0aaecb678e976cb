#include "weight_names.h"

namespace lwm::weight_names {
namespace {

const char* jax_matrix(LayerMatrix m) {
  switch (m) {
    case LayerMatrix::wq: return "attention.wq.kernel";
    case LayerMatrix::wk: return "attention.wk.kernel";
    case LayerMatrix::wv: return "attention.wv.kernel";
    case LayerMatrix::wo: return "attention.wo.kernel";
    case LayerMatrix::w1: return "feed_forward.w1.kernel";
    case LayerMatrix::w2: return "feed_forward.w2.kernel";
    case LayerMatrix::w3: return "feed_forward.w3.kernel";
  }
  return "";
}

const char* hf_matrix(LayerMatrix m) {
  switch (m) {
    case LayerMatrix::wq: return "self_attn.q_proj.weight";
    case LayerMatrix::wk: return "self_attn.k_proj.weight";
    case LayerMatrix::wv: return "self_attn.v_proj.weight";
    case LayerMatrix::wo: return "self_attn.o_proj.weight";
    case LayerMatrix::w1: return "mlp.gate_proj.weight";
    case LayerMatrix::w2: return "mlp.down_proj.weight";
    case LayerMatrix::w3: return "mlp.up_proj.weight";
  }
  return "";
}

const char* jax_norm(LayerNorm n) {
  return n == LayerNorm::attention ? "attention_norm.kernel" : "ffn_norm.kernel";
}

const char* hf_norm(LayerNorm n) {
  return n == LayerNorm::attention ? "input_layernorm.weight" : "post_attention_layernorm.weight";
}

}  // namespace

std::string token_embedding(WeightConvention c) {
  return c == WeightConvention::jax ? "transformer.wte.embedding" : "model.embed_tokens.weight";
}

std::string final_norm(WeightConvention c) {
  return c == WeightConvention::jax ? "transformer.ln_f.kernel" : "model.norm.weight";
}

std::string lm_head(WeightConvention c) {
  return c == WeightConvention::jax ? "lm_head.kernel" : "lm_head.weight";
}

// LWM ships no Hugging Face vision model; these HF names are ours and follow the text ones.
std::string vision_embedding(WeightConvention c) {
  return c == WeightConvention::jax ? "transformer.vte.embedding" : "model.embed_vision_tokens.weight";
}

std::string vision_head(WeightConvention c) {
  return c == WeightConvention::jax ? "vision_head.kernel" : "vision_head.weight";
}

std::string layer_matrix(WeightConvention c, std::int64_t layer, LayerMatrix m) {
  const std::string index = std::to_string(layer);
  return c == WeightConvention::jax ? "transformer.h." + index + "." + jax_matrix(m)
                                    : "model.layers." + index + "." + hf_matrix(m);
}

std::string layer_norm(WeightConvention c, std::int64_t layer, LayerNorm n) {
  const std::string index = std::to_string(layer);
  return c == WeightConvention::jax ? "transformer.h." + index + "." + jax_norm(n)
                                    : "model.layers." + index + "." + hf_norm(n);
}

std::string stacked_layer_matrix(LayerMatrix m) {
  return std::string("transformer.h.scan_decoder.") + jax_matrix(m);
}

std::string stacked_layer_norm(LayerNorm n) {
  return std::string("transformer.h.scan_decoder.") + jax_norm(n);
}

std::int64_t matrix_in(const ModelConfig& config, LayerMatrix m) {
  switch (m) {
    case LayerMatrix::wq:
    case LayerMatrix::wo:
    case LayerMatrix::w1:
    case LayerMatrix::w3: return config.hidden_size;
    case LayerMatrix::wk:
    case LayerMatrix::wv: return config.hidden_size;
    case LayerMatrix::w2: return config.intermediate_size;
  }
  return 0;
}

std::int64_t matrix_out(const ModelConfig& config, LayerMatrix m) {
  switch (m) {
    case LayerMatrix::wq:
    case LayerMatrix::wo: return config.hidden_size;
    case LayerMatrix::wk:
    case LayerMatrix::wv: return config.num_kv_heads * config.head_dim();
    case LayerMatrix::w1:
    case LayerMatrix::w3: return config.intermediate_size;
    case LayerMatrix::w2: return config.hidden_size;
  }
  return 0;
}

}  // namespace lwm::weight_names
