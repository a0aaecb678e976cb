// Tensor names and layouts of the two weight conventions (spec §1.5, §1.6). The model loader and
// the model maker share this table so that what one writes the other reads.
#pragma once

#include <cstdint>
#include <string>

#include "lwm/linear.h"
#include "lwm/model_config.h"

namespace lwm::weight_names {

enum class LayerMatrix { wq, wk, wv, wo, w1, w2, w3 };
enum class LayerNorm { attention, ffn };

std::string token_embedding(WeightConvention c);
std::string final_norm(WeightConvention c);
std::string lm_head(WeightConvention c);
// Vision-language models (spec §2.2): `vte` [vision_vocab, hidden] and `vision_head`, stored
// like the text embedding and lm_head of the same convention.
std::string vision_embedding(WeightConvention c);
std::string vision_head(WeightConvention c);
std::string layer_matrix(WeightConvention c, std::int64_t layer, LayerMatrix m);
std::string layer_norm(WeightConvention c, std::int64_t layer, LayerNorm n);
// JAX stacked ("scanned") layout: one [L, ...] tensor per matrix (spec §1.5).
std::string stacked_layer_matrix(LayerMatrix m);
std::string stacked_layer_norm(LayerNorm n);

// How each convention stores matrices: JAX kernels [in, out], HF weights [out, in].
inline MatrixLayout matrix_layout(WeightConvention c) {
  return c == WeightConvention::jax ? MatrixLayout::in_out : MatrixLayout::out_in;
}
// The lm_head follows the same rule: JAX [hidden, vocab], HF [vocab, hidden].

// [in, out] sizes of a layer matrix for a config.
std::int64_t matrix_in(const ModelConfig& config, LayerMatrix m);
std::int64_t matrix_out(const ModelConfig& config, LayerMatrix m);

}  // namespace lwm::weight_names
