#include "lwm/train/trainable_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <random>

#include "atomic_file.h"
#include "lwm/attention.h"
#include "lwm/backward.h"
#include "lwm/error.h"
#include "lwm/ops.h"
#include "lwm/rope.h"
#include "lwm/safetensors.h"
#include "weight_names.h"

namespace lwm::train {
namespace {

using weight_names::LayerMatrix;
using weight_names::LayerNorm;

constexpr LayerMatrix kMatrices[] = {LayerMatrix::wq, LayerMatrix::wk, LayerMatrix::wv,
                                     LayerMatrix::wo, LayerMatrix::w1, LayerMatrix::w2,
                                     LayerMatrix::w3};

std::size_t to_size(std::int64_t v) {
  return static_cast<std::size_t>(v);
}

Tensor f32_view(const float* data, Shape shape) {
  return Tensor::view(DType::f32, std::move(shape), data, nullptr);
}

}  // namespace

// Pointers to one layer's (or the model's) parameters inside a flat vector: the same struct
// serves the parameters and their gradients.
struct TrainableModel::Views {
  struct Layer {
    float *attention_norm, *ffn_norm, *wq, *wk, *wv, *wo, *w1, *w2, *w3;
  };
  float* wte = nullptr;
  float* vte = nullptr;
  std::vector<Layer> layers;
  float* ln_f = nullptr;
  float* lm_head = nullptr;
  float* vision_head = nullptr;

  Views(const TrainableModel& m, float* base) {
    const WeightConvention jax = WeightConvention::jax;
    auto at = [&](const std::string& name) { return base + m.parameter(name).offset; };
    wte = at(weight_names::token_embedding(jax));
    ln_f = at(weight_names::final_norm(jax));
    lm_head = at(weight_names::lm_head(jax));
    if (m.config_.has_vision()) {
      vte = at(weight_names::vision_embedding(jax));
      vision_head = at(weight_names::vision_head(jax));
    }
    for (std::int64_t l = 0; l < m.config_.num_layers; ++l) {
      auto mat = [&](LayerMatrix w) { return at(weight_names::layer_matrix(jax, l, w)); };
      auto norm = [&](LayerNorm n) { return at(weight_names::layer_norm(jax, l, n)); };
      layers.push_back({norm(LayerNorm::attention), norm(LayerNorm::ffn), mat(LayerMatrix::wq),
                        mat(LayerMatrix::wk), mat(LayerMatrix::wv), mat(LayerMatrix::wo),
                        mat(LayerMatrix::w1), mat(LayerMatrix::w2), mat(LayerMatrix::w3)});
    }
  }
};

TrainableModel::TrainableModel(ModelConfig config, TrainableModelOptions options)
    : config_(std::move(config)), options_(options) {
  config_.validate("trainable model config");
  if (config_.tie_word_embeddings || config_.tie_vision_embeddings) {
    throw Error(ErrorKind::unsupported,
                "the trainer keeps separate embeddings and heads (LWM's "
                "tie_word_embeddings = false); tied embeddings cannot be trained");
  }
  config_.convention = WeightConvention::jax;
  config_.convention_known = true;
  build_table();
}

void TrainableModel::build_table() {
  const WeightConvention jax = WeightConvention::jax;
  const ModelConfig& c = config_;
  table_.clear();
  std::size_t offset = 0;
  auto add = [&](std::string name, Shape shape) {
    const auto size = static_cast<std::size_t>(shape_numel(shape));
    table_.push_back({std::move(name), std::move(shape), offset, size});
    offset += size;
  };
  add(weight_names::token_embedding(jax), {c.vocab_size, c.hidden_size});
  if (c.has_vision())
    add(weight_names::vision_embedding(jax), {c.vision_vocab_size, c.hidden_size});
  for (std::int64_t l = 0; l < c.num_layers; ++l) {
    add(weight_names::layer_norm(jax, l, LayerNorm::attention), {c.hidden_size});
    add(weight_names::layer_norm(jax, l, LayerNorm::ffn), {c.hidden_size});
    for (LayerMatrix m : kMatrices) {
      add(weight_names::layer_matrix(jax, l, m),
          {weight_names::matrix_in(c, m), weight_names::matrix_out(c, m)});
    }
  }
  add(weight_names::final_norm(jax), {c.hidden_size});
  add(weight_names::lm_head(jax), {c.hidden_size, c.vocab_size});
  if (c.has_vision()) add(weight_names::vision_head(jax), {c.hidden_size, c.vision_vocab_size});
  params_.assign(offset, 0.0f);
  grads_.assign(offset, 0.0f);
}

const ParameterInfo& TrainableModel::parameter(const std::string& name) const {
  for (const ParameterInfo& p : table_) {
    if (p.name == name) return p;
  }
  throw Error(ErrorKind::invalid_argument, "the model has no parameter '" + name + "'");
}

void TrainableModel::zero_gradients() {
  std::fill(grads_.begin(), grads_.end(), 0.0f);
}

void TrainableModel::initialize(std::uint64_t seed, float stddev) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  for (const ParameterInfo& p : table_) {
    float* data = params_.data() + p.offset;
    if (p.shape.size() == 1) {  // RMSNorm gains start at one (spec §1.1)
      std::fill(data, data + p.size, 1.0f);
    } else {
      for (std::size_t i = 0; i < p.size; ++i) data[i] = normal(rng);
    }
  }
}

void TrainableModel::add_vision(std::int64_t vision_vocab_size, std::uint64_t seed, float stddev) {
  if (config_.has_vision()) return;
  const std::vector<float> old_params = params_;
  const std::vector<ParameterInfo> old_table = table_;
  config_.vision_vocab_size = vision_vocab_size;
  config_.validate("trainable model config");
  build_table();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  for (const ParameterInfo& p : table_) {
    const auto old = std::find_if(old_table.begin(), old_table.end(),
                                  [&](const auto& o) { return o.name == p.name; });
    float* data = params_.data() + p.offset;
    if (old != old_table.end()) {
      std::copy_n(old_params.data() + old->offset, p.size, data);
    } else {
      for (std::size_t i = 0; i < p.size; ++i) data[i] = normal(rng);
    }
  }
}

void TrainableModel::set_rope_theta(double theta) {
  ModelConfig c = config_;
  c.rope_theta = theta;
  c.validate("trainable model config");
  config_ = c;
}

void TrainableModel::set_max_sequence_length(std::int64_t length) {
  ModelConfig c = config_;
  c.max_sequence_length = length;
  c.validate("trainable model config");
  config_ = c;
}

TrainableModel TrainableModel::load(const std::filesystem::path& dir,
                                    TrainableModelOptions options) {
  ModelConfig config = ModelConfig::load(dir);
  const WeightStore store(dir);
  if ((config.convention_known && config.convention != WeightConvention::jax) ||
      store.contains(weight_names::token_embedding(WeightConvention::hf))) {
    throw Error(ErrorKind::unsupported,
                "model '" + dir.string() +
                    "' uses the Hugging Face weight convention; the trainer reads "
                    "JAX-convention directories (convert it with `lwm convert`)");
  }
  TrainableModel model(config, options);
  const bool stacked = store.contains(weight_names::stacked_layer_matrix(LayerMatrix::wq));
  const std::string layer_prefix = "transformer.h.";
  for (const ParameterInfo& p : model.table_) {
    Tensor t;
    std::string source = p.name;
    if (stacked && p.name.rfind(layer_prefix, 0) == 0) {
      // transformer.h.<i>.<rest> lives in row i of the stacked transformer.h.scan_decoder.<rest>.
      const std::size_t dot = p.name.find('.', layer_prefix.size());
      const std::int64_t layer =
          std::stoll(p.name.substr(layer_prefix.size(), dot - layer_prefix.size()));
      source = "transformer.h.scan_decoder" + p.name.substr(dot);
      Tensor all = store.tensor(source);
      Shape expected = p.shape;
      expected.insert(expected.begin(), config.num_layers);
      if (all.shape() != expected) {
        throw Error(ErrorKind::file_format, "tensor '" + source + "' in '" +
                                                store.file_of(source).string() + "' has shape " +
                                                shape_string(all.shape()) + ", expected " +
                                                shape_string(expected));
      }
      t = all.slice_rows(layer, layer + 1).reshaped(p.shape);
    } else {
      if (!store.contains(p.name)) {
        throw Error(ErrorKind::file_format,
                    "model '" + dir.string() + "' is missing the tensor '" + p.name + "'");
      }
      t = store.tensor(p.name);
      if (t.shape() != p.shape) {
        throw Error(ErrorKind::file_format, "tensor '" + p.name + "' in '" +
                                                store.file_of(p.name).string() + "' has shape " +
                                                shape_string(t.shape()) + ", expected " +
                                                shape_string(p.shape));
      }
    }
    const std::vector<float> values = t.to_floats();
    std::copy(values.begin(), values.end(),
              model.params_.begin() + static_cast<std::ptrdiff_t>(p.offset));
  }
  return model;
}

void TrainableModel::save(const std::filesystem::path& dir, DType dtype) const {
  std::filesystem::create_directories(dir);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const ParameterInfo& p : table_) {
    tensors.emplace_back(p.name, f32_view(params_.data() + p.offset, p.shape).to(dtype));
  }
  write_safetensors(dir / "model.safetensors", tensors,
                    {{"format", "pt"}, {"writer", "lwm-train"}});
  ModelConfig c = config_;
  c.torch_dtype = dtype;
  write_file_atomically(dir / "config.json", c.to_json().dump(2) + "\n");
}

void TrainableModel::check(const Batch& b) const {
  const auto n = to_size(b.tokens());
  auto fail = [](const std::string& what) {
    throw Error(ErrorKind::invalid_argument, "training batch: " + what);
  };
  if (b.rows <= 0 || b.length <= 0) fail("needs at least one row and one token");
  if (b.inputs.size() != n || b.targets.size() != n || b.loss_weights.size() != n) {
    fail("inputs, targets and loss weights must each hold rows × length = " + std::to_string(n) +
         " entries");
  }
  if ((!b.input_vision.empty() && b.input_vision.size() != n) ||
      (!b.target_vision.empty() && b.target_vision.size() != n) ||
      (!b.segments.empty() && b.segments.size() != n) ||
      (!b.positions.empty() && b.positions.size() != n)) {
    fail("vision masks, segments and positions must be empty or hold " + std::to_string(n) +
         " entries");
  }
  for (std::size_t i = 0; i < n; ++i) {
    const bool vin = !b.input_vision.empty() && b.input_vision[i] != 0;
    const bool vout = !b.target_vision.empty() && b.target_vision[i] != 0;
    if ((vin || vout) && !config_.has_vision()) fail("vision tokens given to a text-only model");
    const std::int64_t in_vocab = vin ? config_.vision_vocab_size : config_.vocab_size;
    const std::int64_t out_vocab = vout ? config_.vision_vocab_size : config_.vocab_size;
    if (b.inputs[i] < 0 || b.inputs[i] >= in_vocab) {
      fail("input id " + std::to_string(b.inputs[i]) + " at " + std::to_string(i) +
           " is outside its vocabulary of " + std::to_string(in_vocab));
    }
    if (b.loss_weights[i] != 0.0f && (b.targets[i] < 0 || b.targets[i] >= out_vocab)) {
      fail("target id " + std::to_string(b.targets[i]) + " at " + std::to_string(i) +
           " is outside its vocabulary of " + std::to_string(out_vocab));
    }
    if (!std::isfinite(b.loss_weights[i]))
      fail("loss weight at " + std::to_string(i) + " is not finite");
  }
}

double TrainableModel::forward_backward(const Batch& batch) {
  return run(batch, grads_.data());
}

double TrainableModel::loss(const Batch& batch) const {
  return run(batch, nullptr);
}

namespace {

// Everything inside one layer for one row, recomputed from the layer input when needed.
struct LayerWork {
  std::vector<float> a, q, k, v, attn, lse, x2, f, gate, up, s, tmp;
};

}  // namespace

double TrainableModel::run(const Batch& batch, float* gradient_base) const {
  check(batch);
  const ModelConfig& c = config_;
  const bool backward = gradient_base != nullptr;
  const Views p(*this, const_cast<float*>(params_.data()));
  const std::optional<Views> g =
      backward ? std::optional<Views>(Views(*this, gradient_base)) : std::nullopt;
  const std::int64_t n = batch.length;
  const std::int64_t hidden = c.hidden_size, inner = c.intermediate_size, head_dim = c.head_dim();
  const std::int64_t kv_width = c.num_kv_heads * head_dim;
  const auto eps = static_cast<float>(c.rms_norm_eps);
  const RotaryEmbedding rope(head_dim, c.rope_theta, RopePairing::interleaved);
  const AttentionShape shape{c.num_heads, c.num_kv_heads, head_dim};

  LayerWork w;
  w.a.resize(to_size(n * hidden));
  w.q.resize(to_size(n * hidden));
  w.k.resize(to_size(n * kv_width));
  w.v.resize(to_size(n * kv_width));
  w.attn.resize(to_size(n * hidden));
  w.lse.resize(to_size(c.num_heads * n));
  w.x2.resize(to_size(n * hidden));
  w.f.resize(to_size(n * hidden));
  w.gate.resize(to_size(n * inner));
  w.up.resize(to_size(n * inner));
  w.s.resize(to_size(n * inner));
  w.tmp.resize(to_size(n * std::max(hidden, inner)));
  std::vector<float> cos_table(to_size(n * head_dim / 2)), sin_table(to_size(n * head_dim / 2));
  std::vector<std::int64_t> positions(to_size(n));

  AttentionOptions attention;
  attention.query_chunk = options_.attention_query_chunk;
  attention.key_chunk = options_.attention_key_chunk;
  attention.causal = true;

  auto linear = [&](const float* x, const float* weight, std::int64_t in, std::int64_t out,
                    float* y) {
    cpu::linear(x, n, Linear{f32_view(weight, {in, out}), MatrixLayout::in_out}, y);
  };
  auto norm = [&](const float* x, const float* gain, float* y) {
    cpu::rms_norm(x, n, hidden, f32_view(gain, {hidden}), eps, y);
  };
  // Fills w for layer l from its input x; writes the layer output to `out` when given.
  auto layer_forward = [&](std::int64_t l, const float* x, float* out) {
    const Views::Layer& L = p.layers[to_size(l)];
    norm(x, L.attention_norm, w.a.data());
    linear(w.a.data(), L.wq, hidden, hidden, w.q.data());
    linear(w.a.data(), L.wk, hidden, kv_width, w.k.data());
    linear(w.a.data(), L.wv, hidden, kv_width, w.v.data());
    rope.apply(w.q.data(), n, c.num_heads, cos_table.data(), sin_table.data());
    rope.apply(w.k.data(), n, c.num_kv_heads, cos_table.data(), sin_table.data());
    blockwise_attention(w.q.data(), w.k.data(), w.v.data(), n, n, shape, attention, w.attn.data(),
                        w.lse.data());
    linear(w.attn.data(), L.wo, hidden, hidden, w.x2.data());
    cpu::add_inplace(w.x2.data(), x, n * hidden);
    norm(w.x2.data(), L.ffn_norm, w.f.data());
    linear(w.f.data(), L.w1, hidden, inner, w.gate.data());
    linear(w.f.data(), L.w3, hidden, inner, w.up.data());
    cpu::swiglu(w.gate.data(), w.up.data(), w.s.data(), n * inner);
    if (out != nullptr) {
      linear(w.s.data(), L.w2, inner, hidden, out);
      cpu::add_inplace(out, w.x2.data(), n * hidden);
    }
  };

  const auto layers = to_size(c.num_layers);
  std::vector<std::vector<float>> layer_inputs(layers + 1, std::vector<float>(to_size(n * hidden)));
  std::vector<float> hf(to_size(n * hidden)), dh(to_size(n * hidden)), dx(to_size(n * hidden)),
      dhidden2(to_size(n * hidden)), dq(to_size(n * hidden)), dk(to_size(n * kv_width)),
      dv(to_size(n * kv_width)), dgate(to_size(n * inner)), dup(to_size(n * inner));
  double total_loss = 0.0;

  for (std::int64_t row = 0; row < batch.rows; ++row) {
    const std::size_t base = to_size(row * n);
    const std::span<const std::int32_t> ids(batch.inputs.data() + base, to_size(n));
    auto input_is_vision = [&](std::int64_t t) {
      return !batch.input_vision.empty() && batch.input_vision[base + to_size(t)] != 0;
    };
    auto target_is_vision = [&](std::int64_t t) {
      return !batch.target_vision.empty() && batch.target_vision[base + to_size(t)] != 0;
    };
    for (std::int64_t t = 0; t < n; ++t)
      positions[to_size(t)] = batch.positions.empty() ? t : batch.positions[base + to_size(t)];
    rope.angles(positions, cos_table.data(), sin_table.data());
    const std::int32_t* segments = batch.segments.empty() ? nullptr : batch.segments.data() + base;
    attention.query_segments = segments;
    attention.key_segments = segments;

    // Embedding (spec §2.2): each position takes wte[id] or vte[id].
    float* h0 = layer_inputs[0].data();
    for (std::int64_t t = 0; t < n; ++t) {
      const float* table = input_is_vision(t) ? p.vte : p.wte;
      std::copy_n(table + to_size(ids[to_size(t)]) * to_size(hidden), hidden, h0 + t * hidden);
    }
    for (std::size_t l = 0; l < layers; ++l) {
      layer_forward(static_cast<std::int64_t>(l), layer_inputs[l].data(),
                    layer_inputs[l + 1].data());
    }
    const float* h_last = layer_inputs[layers].data();
    norm(h_last, p.ln_f, hf.data());

    // Heads and loss over the rows with a non-zero weight, one head at a time, in chunks.
    std::fill(dh.begin(), dh.end(), 0.0f);
    for (const bool vision_head : {false, true}) {
      std::vector<std::int64_t> rows_of_head;
      for (std::int64_t t = 0; t < n; ++t) {
        if (batch.loss_weights[base + to_size(t)] != 0.0f && target_is_vision(t) == vision_head)
          rows_of_head.push_back(t);
      }
      if (rows_of_head.empty()) continue;
      const float* head = vision_head ? p.vision_head : p.lm_head;
      float* dhead = backward ? (vision_head ? g->vision_head : g->lm_head) : nullptr;
      const std::int64_t vocab = vision_head ? c.vision_vocab_size : c.vocab_size;
      const std::int64_t chunk = std::max<std::int64_t>(1, options_.logits_chunk);
      std::vector<float> x_rows, logits, dx_rows;
      for (std::size_t r0 = 0; r0 < rows_of_head.size(); r0 += to_size(chunk)) {
        const std::size_t m = std::min(to_size(chunk), rows_of_head.size() - r0);
        x_rows.resize(m * to_size(hidden));
        logits.resize(m * to_size(vocab));
        for (std::size_t i = 0; i < m; ++i) {
          std::copy_n(hf.data() + rows_of_head[r0 + i] * hidden, hidden,
                      x_rows.data() + i * to_size(hidden));
        }
        const auto rows_m = static_cast<std::int64_t>(m);
        cpu::linear(x_rows.data(), rows_m,
                    Linear{f32_view(head, {hidden, vocab}), MatrixLayout::in_out}, logits.data());
        for (std::size_t i = 0; i < m; ++i) {
          const std::size_t t = base + to_size(rows_of_head[r0 + i]);
          float* z = logits.data() + i * to_size(vocab);
          const float top = *std::max_element(z, z + vocab);
          double sum = 0.0;
          for (std::int64_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(z[j] - top));
          const double log_sum = static_cast<double>(top) + std::log(sum);
          const double weight = batch.loss_weights[t];
          total_loss += weight * (log_sum - z[batch.targets[t]]);
          if (backward) {  // d(w·CE)/dz = w·(softmax(z) − onehot(target))
            for (std::int64_t j = 0; j < vocab; ++j)
              z[j] = static_cast<float>(weight * std::exp(z[j] - log_sum));
            z[batch.targets[t]] -= static_cast<float>(weight);
          }
        }
        if (!backward) continue;
        dx_rows.resize(m * to_size(hidden));
        cpu::linear_backward_input(logits.data(), rows_m, head, hidden, vocab, dx_rows.data());
        cpu::linear_backward_weight(x_rows.data(), logits.data(), rows_m, hidden, vocab, dhead);
        for (std::size_t i = 0; i < m; ++i) {
          float* d = dh.data() + rows_of_head[r0 + i] * hidden;
          for (std::int64_t j = 0; j < hidden; ++j)
            d[j] += dx_rows[i * to_size(hidden) + to_size(j)];
        }
      }
    }
    if (!backward) continue;

    // Final norm, then the layers in reverse, each recomputed from its stored input.
    cpu::rms_norm_backward(h_last, dh.data(), n, hidden, p.ln_f, eps, dx.data(), g->ln_f);
    std::swap(dh, dx);
    for (std::size_t li = layers; li-- > 0;) {
      const auto l = static_cast<std::int64_t>(li);
      const Views::Layer& L = p.layers[li];
      const Views::Layer& G = g->layers[li];
      const float* x = layer_inputs[li].data();
      layer_forward(l, x, nullptr);
      // FFN: out = x2 + (silu(f·W1) ∘ f·W3)·W2.
      cpu::linear_backward_weight(w.s.data(), dh.data(), n, inner, hidden, G.w2);
      cpu::linear_backward_input(dh.data(), n, L.w2, inner, hidden, w.tmp.data());
      cpu::swiglu_backward(w.gate.data(), w.up.data(), w.tmp.data(), n * inner, dgate.data(),
                           dup.data());
      cpu::linear_backward_weight(w.f.data(), dgate.data(), n, hidden, inner, G.w1);
      cpu::linear_backward_weight(w.f.data(), dup.data(), n, hidden, inner, G.w3);
      cpu::linear_backward_input(dgate.data(), n, L.w1, hidden, inner, w.tmp.data());
      cpu::linear_backward_input(dup.data(), n, L.w3, hidden, inner, dx.data());
      cpu::add_inplace(w.tmp.data(), dx.data(), n * hidden);  // df
      cpu::rms_norm_backward(w.x2.data(), w.tmp.data(), n, hidden, L.ffn_norm, eps, dhidden2.data(),
                             G.ffn_norm);
      cpu::add_inplace(dhidden2.data(), dh.data(), n * hidden);  // dx2 (residual)
      // Attention: x2 = x + attn·Wo.
      cpu::linear_backward_weight(w.attn.data(), dhidden2.data(), n, hidden, hidden, G.wo);
      cpu::linear_backward_input(dhidden2.data(), n, L.wo, hidden, hidden, w.tmp.data());  // dattn
      std::fill(dq.begin(), dq.end(), 0.0f);
      std::fill(dk.begin(), dk.end(), 0.0f);
      std::fill(dv.begin(), dv.end(), 0.0f);
      cpu::blockwise_attention_backward(w.q.data(), w.k.data(), w.v.data(), w.attn.data(),
                                        w.lse.data(), w.tmp.data(), n, n, shape, attention,
                                        dq.data(), dk.data(), dv.data());
      cpu::rope_backward(rope, dq.data(), n, c.num_heads, cos_table.data(), sin_table.data());
      cpu::rope_backward(rope, dk.data(), n, c.num_kv_heads, cos_table.data(), sin_table.data());
      cpu::linear_backward_weight(w.a.data(), dq.data(), n, hidden, hidden, G.wq);
      cpu::linear_backward_weight(w.a.data(), dk.data(), n, hidden, kv_width, G.wk);
      cpu::linear_backward_weight(w.a.data(), dv.data(), n, hidden, kv_width, G.wv);
      cpu::linear_backward_input(dq.data(), n, L.wq, hidden, hidden, w.tmp.data());  // da
      cpu::linear_backward_input(dk.data(), n, L.wk, hidden, kv_width, dx.data());
      cpu::add_inplace(w.tmp.data(), dx.data(), n * hidden);
      cpu::linear_backward_input(dv.data(), n, L.wv, hidden, kv_width, dx.data());
      cpu::add_inplace(w.tmp.data(), dx.data(), n * hidden);
      cpu::rms_norm_backward(x, w.tmp.data(), n, hidden, L.attention_norm, eps, dh.data(),
                             G.attention_norm);
      cpu::add_inplace(dh.data(), dhidden2.data(), n * hidden);  // dx (residual)
    }
    for (std::int64_t t = 0; t < n; ++t) {
      const bool vis = input_is_vision(t);
      cpu::embedding_backward(ids.subspan(to_size(t), 1), dh.data() + t * hidden, hidden,
                              vis ? g->vte : g->wte);
    }
  }
  return total_loss;
}

}  // namespace lwm::train
