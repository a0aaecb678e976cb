#include "lwm/model.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "lwm/attention.h"
#include "lwm/error.h"
#include "lwm/ops.h"
#include "weight_names.h"

namespace lwm {
namespace {

using weight_names::LayerMatrix;
using weight_names::LayerNorm;

// Fetches tensors by name and checks their shapes, with messages naming the directory and file.
class TensorFetcher {
 public:
  TensorFetcher(const WeightStore& store, const std::filesystem::path& dir) : store_(store), dir_(dir) {}

  bool has(const std::string& name) const { return store_.contains(name); }

  Tensor get(const std::string& name, const Shape& expected) const {
    if (!store_.contains(name)) {
      throw Error(ErrorKind::file_format,
                  "model '" + dir_.string() + "' is missing the tensor '" + name + "'");
    }
    Tensor t = store_.tensor(name);
    if (t.shape() != expected) {
      throw Error(ErrorKind::file_format, "tensor '" + name + "' in '" + store_.file_of(name).string() +
                                              "' has shape " + shape_string(t.shape()) + ", expected " +
                                              shape_string(expected));
    }
    return t;
  }

 private:
  const WeightStore& store_;
  const std::filesystem::path& dir_;
};

WeightConvention infer_convention(const WeightStore& store, const std::filesystem::path& dir) {
  if (store.contains(weight_names::token_embedding(WeightConvention::hf))) return WeightConvention::hf;
  if (store.contains(weight_names::token_embedding(WeightConvention::jax))) return WeightConvention::jax;
  throw Error(ErrorKind::file_format, "model '" + dir.string() +
                                          "': config.json does not name the weight convention and neither '" +
                                          weight_names::token_embedding(WeightConvention::hf) + "' nor '" +
                                          weight_names::token_embedding(WeightConvention::jax) +
                                          "' is among the tensors");
}

Shape stored_matrix_shape(WeightConvention convention, std::int64_t in, std::int64_t out) {
  return convention == WeightConvention::jax ? Shape{in, out} : Shape{out, in};
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::filesystem::path& dir, ModelRuntimeOptions options) {
  std::unique_ptr<Model> model(new Model());
  model->dir_ = dir;
  model->options_ = options;
  model->config_ = ModelConfig::load(dir);
  model->weights_ = std::make_unique<WeightStore>(dir);
  ModelConfig& config = model->config_;
  if (!config.convention_known) {
    config.convention = infer_convention(*model->weights_, dir);
    config.convention_known = true;
  }
  const WeightConvention convention = config.convention;
  const TensorFetcher fetch(*model->weights_, dir);
  const std::int64_t hidden = config.hidden_size;
  const std::int64_t vocab = config.vocab_size;

  model->token_embedding_ = fetch.get(weight_names::token_embedding(convention), {vocab, hidden});
  model->final_norm_ = fetch.get(weight_names::final_norm(convention), {hidden});
  if (config.tie_word_embeddings) {
    model->lm_head_ = Linear{model->token_embedding_, MatrixLayout::out_in};
  } else {
    model->lm_head_ = Linear{fetch.get(weight_names::lm_head(convention),
                                       stored_matrix_shape(convention, hidden, vocab)),
                             weight_names::matrix_layout(convention)};
  }

  if (config.has_vision()) {
    const std::int64_t vision_vocab = config.vision_vocab_size;
    model->vision_embedding_ =
        fetch.get(weight_names::vision_embedding(convention), {vision_vocab, hidden});
    model->vision_head_ =
        config.tie_vision_embeddings
            ? Linear{model->vision_embedding_, MatrixLayout::out_in}
            : Linear{fetch.get(weight_names::vision_head(convention),
                               stored_matrix_shape(convention, hidden, vision_vocab)),
                     weight_names::matrix_layout(convention)};
  }

  // JAX checkpoints may keep all layers stacked in one [L, …] tensor (spec §1.5, scan_layers).
  const bool stacked = convention == WeightConvention::jax &&
                       fetch.has(weight_names::stacked_layer_matrix(LayerMatrix::wq));
  const std::int64_t layers = config.num_layers;
  auto matrix = [&](std::int64_t layer, LayerMatrix which) {
    const std::int64_t in = weight_names::matrix_in(config, which);
    const std::int64_t out = weight_names::matrix_out(config, which);
    Tensor t = stacked ? fetch.get(weight_names::stacked_layer_matrix(which), {layers, in, out})
                             .slice_rows(layer, layer + 1)
                             .reshaped({in, out})
                       : fetch.get(weight_names::layer_matrix(convention, layer, which),
                                   stored_matrix_shape(convention, in, out));
    return Linear{t, weight_names::matrix_layout(convention)};
  };
  auto norm = [&](std::int64_t layer, LayerNorm which) {
    return stacked ? fetch.get(weight_names::stacked_layer_norm(which), {layers, hidden})
                         .slice_rows(layer, layer + 1)
                         .reshaped({hidden})
                   : fetch.get(weight_names::layer_norm(convention, layer, which), {hidden});
  };
  model->layers_.resize(static_cast<std::size_t>(layers));
  for (std::int64_t i = 0; i < layers; ++i) {
    LayerWeights& layer = model->layers_[static_cast<std::size_t>(i)];
    layer.attention_norm = norm(i, LayerNorm::attention);
    layer.ffn_norm = norm(i, LayerNorm::ffn);
    layer.wq = matrix(i, LayerMatrix::wq);
    layer.wk = matrix(i, LayerMatrix::wk);
    layer.wv = matrix(i, LayerMatrix::wv);
    layer.wo = matrix(i, LayerMatrix::wo);
    layer.w1 = matrix(i, LayerMatrix::w1);
    layer.w2 = matrix(i, LayerMatrix::w2);
    layer.w3 = matrix(i, LayerMatrix::w3);
  }
  // HF files permute q/k rows to rotate-half pairs (spec §1.6); rotating those pairs instead of
  // un-permuting the weights gives the same attention scores without copying anything.
  model->rope_ = std::make_unique<RotaryEmbedding>(
      config.head_dim(), config.rope_theta,
      convention == WeightConvention::jax ? RopePairing::interleaved : RopePairing::half);
  return model;
}

namespace {

// Plain causal attention of the call's queries over everything in the local cache.
class LocalAttention final : public AttentionStep {
 public:
  LocalAttention(const ModelConfig& config, const ModelRuntimeOptions& runtime)
      : shape_{config.num_heads, config.num_kv_heads, config.head_dim()} {
    options_.query_chunk = runtime.attention_query_chunk;
    options_.key_chunk = runtime.attention_key_chunk;
    options_.causal = true;
  }
  void attend(std::int64_t layer, const float* q, std::int64_t n, const KVCache& cache,
              float* out) override {
    options_.query_offset = cache.size();
    blockwise_attention(q, cache.keys(layer), cache.values(layer), n, cache.size() + n, shape_,
                        options_, out, nullptr);
  }

 private:
  AttentionShape shape_;
  AttentionOptions options_;
};

}  // namespace

void Model::forward(std::span<const std::int32_t> tokens, KVCache& cache,
                    const ForwardOptions& options, std::vector<float>* logits) const {
  if (tokens.empty()) throw Error(ErrorKind::invalid_argument, "forward: no tokens");
  std::vector<std::int64_t> positions(tokens.size());
  std::iota(positions.begin(), positions.end(), cache.size());
  LocalAttention attention(config_, options_);
  forward(tokens, positions, cache, attention, options, logits);
}

void Model::forward(std::span<const std::int32_t> tokens, std::span<const std::int64_t> positions,
                    KVCache& cache, AttentionStep& attention, const ForwardOptions& options,
                    std::vector<float>* logits) const {
  const auto n = static_cast<std::int64_t>(tokens.size());
  const LogitsFor which = options.logits_for;
  if (positions.size() != tokens.size()) {
    throw Error(ErrorKind::invalid_argument, "forward: " + std::to_string(positions.size()) +
                                                 " positions for " + std::to_string(n) + " tokens");
  }
  check_modalities(options, n);
  const std::int64_t start = cache.size();
  if (start + n > cache.capacity()) {
    throw Error(ErrorKind::invalid_argument, "forward: " + std::to_string(n) + " tokens do not fit in the KV cache (" +
                                                 std::to_string(start) + " of " + std::to_string(cache.capacity()) +
                                                 " used)");
  }
  if (n == 0 && which == LogitsFor::last) {
    throw Error(ErrorKind::invalid_argument, "forward: logits of the last token requested without tokens");
  }
  if (which != LogitsFor::none && logits == nullptr) {
    throw Error(ErrorKind::invalid_argument, "forward: logits requested without an output");
  }
  const ModelConfig& c = config_;
  const std::int64_t hidden = c.hidden_size;
  const std::int64_t head_dim = c.head_dim();
  const std::int64_t kv_width = c.num_kv_heads * head_dim;
  const std::int64_t inner = c.intermediate_size;
  const auto size = [](std::int64_t a, std::int64_t b) { return static_cast<std::size_t>(a * b); };

  std::vector<float> h(size(n, hidden)), normed(size(n, hidden)), q(size(n, hidden)),
      attended(size(n, hidden)), projected(size(n, hidden)), gate(size(n, inner)), up(size(n, inner));
  embed(tokens, options.vision_mask, h.data());

  std::vector<float> cos_table(size(n, head_dim / 2)), sin_table(size(n, head_dim / 2));
  rope_->angles(positions, cos_table.data(), sin_table.data());

  const auto eps = static_cast<float>(c.rms_norm_eps);

  for (std::int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& layer = layers_[static_cast<std::size_t>(l)];
    float* keys = cache.keys(l);
    float* values = cache.values(l);
    float* new_keys = keys + start * kv_width;

    cpu::rms_norm(h.data(), n, hidden, layer.attention_norm, eps, normed.data());
    cpu::linear(normed.data(), n, layer.wq, q.data());
    cpu::linear(normed.data(), n, layer.wk, new_keys);
    cpu::linear(normed.data(), n, layer.wv, values + start * kv_width);
    rope_->apply(q.data(), n, c.num_heads, cos_table.data(), sin_table.data());
    rope_->apply(new_keys, n, c.num_kv_heads, cos_table.data(), sin_table.data());
    attention.attend(l, q.data(), n, cache, attended.data());
    cpu::linear(attended.data(), n, layer.wo, projected.data());
    cpu::add_inplace(h.data(), projected.data(), n * hidden);

    cpu::rms_norm(h.data(), n, hidden, layer.ffn_norm, eps, normed.data());
    cpu::linear(normed.data(), n, layer.w1, gate.data());
    cpu::linear(normed.data(), n, layer.w3, up.data());
    cpu::swiglu(gate.data(), up.data(), gate.data(), n * inner);
    cpu::linear(gate.data(), n, layer.w2, projected.data());
    cpu::add_inplace(h.data(), projected.data(), n * hidden);
  }
  cache.advance(n);

  if (which == LogitsFor::none) return;
  const std::int64_t first = which == LogitsFor::last ? n - 1 : 0;
  const std::int64_t rows = n - first;
  cpu::rms_norm(h.data() + first * hidden, rows, hidden, final_norm_, eps, normed.data());
  const bool vision = options.head == Head::vision;
  logits->resize(size(rows, vision ? c.vision_vocab_size : c.vocab_size));
  cpu::linear(normed.data(), rows, vision ? vision_head_ : lm_head_, logits->data());
}

void Model::check_modalities(const ForwardOptions& options, std::int64_t n) const {
  const bool any_vision =
      std::any_of(options.vision_mask.begin(), options.vision_mask.end(), [](auto m) { return m != 0; });
  if (!options.vision_mask.empty() && static_cast<std::int64_t>(options.vision_mask.size()) != n) {
    throw Error(ErrorKind::invalid_argument,
                "forward: the vision mask has " + std::to_string(options.vision_mask.size()) +
                    " entries for " + std::to_string(n) + " tokens");
  }
  if (!config_.has_vision() && (any_vision || options.head == Head::vision)) {
    throw Error(ErrorKind::invalid_argument,
                "model '" + dir_.string() +
                    "' is a text-only model (no vision_vocab_size in its config); it cannot read "
                    "or produce vision tokens");
  }
}

// Each position takes its row from the text or the vision embedding (spec §2.2), looked up a
// run of same-modality tokens at a time.
void Model::embed(std::span<const std::int32_t> tokens, std::span<const std::uint8_t> vision_mask,
                  float* out) const {
  const std::size_t hidden = static_cast<std::size_t>(config_.hidden_size);
  const auto is_vision = [&](std::size_t i) { return !vision_mask.empty() && vision_mask[i] != 0; };
  for (std::size_t begin = 0; begin < tokens.size();) {
    const bool vision = is_vision(begin);
    std::size_t end = begin + 1;
    while (end < tokens.size() && is_vision(end) == vision) ++end;
    try {
      cpu::embedding(vision ? vision_embedding_ : token_embedding_,
                     tokens.subspan(begin, end - begin), out + begin * hidden);
    } catch (const Error& error) {
      throw Error(error.kind(), std::string(vision ? "vision" : "text") + " tokens from position " +
                                    std::to_string(begin) + ": " + error.what());
    }
    begin = end;
  }
}

}  // namespace lwm
