// The whole text model (spec lwm-reference §1.2, §1.3, §1.6) against a plain double-precision
// LLaMA forward written here, on random tiny models from make_random_model; the same weights in
// the Hugging Face convention; the KV cache (decode, chunked prefill, truncate); and an independent
// numpy reference (tests/python/numpy_reference.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "lwm/error.h"
#include "lwm/generation.h"
#include "lwm/kv_cache.h"
#include "lwm/model.h"
#include "lwm/model_config.h"
#include "lwm/model_maker.h"
#include "lwm/prompt.h"
#include "lwm/safetensors.h"
#include "lwm/tensor.h"
#include "test_support.h"

namespace lwm {
namespace {

namespace fs = std::filesystem;
using Matrix = std::vector<double>;  // row-major

std::string seed_trace(std::uint64_t seed) {
  return "LWM_TEST_SEED=" + std::to_string(seed);
}

// --- the reference model ----------------------------------------------------------------------

// Weights widened to double exactly as stored; every matrix kept [in, out] (JAX layout, §1.2).
struct ReferenceWeights {
  ModelConfig config;
  Matrix embedding;  // [vocab, hidden]
  struct Layer {
    std::vector<double> attention_norm, ffn_norm;
    Matrix wq, wk, wv, wo, w1, w2, w3;
  };
  std::vector<Layer> layers;
  std::vector<double> final_norm;
  Matrix lm_head;  // [hidden, vocab]
  // Vision-language models only (spec §2.2).
  Matrix vision_embedding;  // [vision_vocab, hidden]
  Matrix vision_head;       // [hidden, vision_vocab]
};

// [rows, cols] → [cols, rows]
Matrix transpose(const Matrix& m, std::int64_t rows, std::int64_t cols) {
  Matrix t(m.size());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) t[c * rows + r] = m[r * cols + c];
  return t;
}

std::vector<double> widen(const Tensor& t) {
  const std::vector<float> f = t.to_floats();
  return std::vector<double>(f.begin(), f.end());
}

// A JAX per-layer tensor "transformer.h.<i>.<leaf>", or its slice of the stacked
// "transformer.h.scan_decoder.<leaf>" [L, ...] (spec §1.5: loaders accept both).
Tensor layer_tensor(const WeightStore& store, std::int64_t layer, const std::string& leaf) {
  const std::string per_layer = "transformer.h." + std::to_string(layer) + "." + leaf;
  if (store.contains(per_layer)) return store.tensor(per_layer);
  const Tensor stacked = store.tensor("transformer.h.scan_decoder." + leaf);
  Shape inner(stacked.shape().begin() + 1, stacked.shape().end());
  return stacked.slice_rows(layer, layer + 1).reshaped(inner);
}

// Reads a JAX-convention model directory through WeightStore, checking the §1.5 shapes.
ReferenceWeights load_reference(const fs::path& dir) {
  ReferenceWeights w;
  w.config = ModelConfig::load(dir);
  const ModelConfig& c = w.config;
  const WeightStore store(dir);
  const std::int64_t hidden = c.hidden_size, kv_width = c.num_kv_heads * c.head_dim();
  auto fetch = [](const Tensor& t, const Shape& shape) {
    EXPECT_EQ(t.shape(), shape);
    return widen(t);
  };
  w.embedding = fetch(store.tensor("transformer.wte.embedding"), {c.vocab_size, hidden});
  w.final_norm = fetch(store.tensor("transformer.ln_f.kernel"), {hidden});
  w.lm_head = c.tie_word_embeddings
                  ? transpose(w.embedding, c.vocab_size, hidden)
                  : fetch(store.tensor("lm_head.kernel"), {hidden, c.vocab_size});
  if (c.has_vision()) {
    const std::int64_t vv = c.vision_vocab_size;
    w.vision_embedding = fetch(store.tensor("transformer.vte.embedding"), {vv, hidden});
    w.vision_head = c.tie_vision_embeddings
                        ? transpose(w.vision_embedding, vv, hidden)
                        : fetch(store.tensor("vision_head.kernel"), {hidden, vv});
  }
  for (std::int64_t l = 0; l < c.num_layers; ++l) {
    ReferenceWeights::Layer layer;
    layer.attention_norm = fetch(layer_tensor(store, l, "attention_norm.kernel"), {hidden});
    layer.ffn_norm = fetch(layer_tensor(store, l, "ffn_norm.kernel"), {hidden});
    layer.wq = fetch(layer_tensor(store, l, "attention.wq.kernel"), {hidden, hidden});
    layer.wk = fetch(layer_tensor(store, l, "attention.wk.kernel"), {hidden, kv_width});
    layer.wv = fetch(layer_tensor(store, l, "attention.wv.kernel"), {hidden, kv_width});
    layer.wo = fetch(layer_tensor(store, l, "attention.wo.kernel"), {hidden, hidden});
    layer.w1 =
        fetch(layer_tensor(store, l, "feed_forward.w1.kernel"), {hidden, c.intermediate_size});
    layer.w3 =
        fetch(layer_tensor(store, l, "feed_forward.w3.kernel"), {hidden, c.intermediate_size});
    layer.w2 =
        fetch(layer_tensor(store, l, "feed_forward.w2.kernel"), {c.intermediate_size, hidden});
    w.layers.push_back(std::move(layer));
  }
  return w;
}

// y[n, out] = x[n, in] · W[in, out]
Matrix matmul(const Matrix& x, std::int64_t n, std::int64_t in, const Matrix& w, std::int64_t out) {
  Matrix y(static_cast<std::size_t>(n * out), 0.0);
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t i = 0; i < in; ++i) {
      const double a = x[r * in + i];
      for (std::int64_t o = 0; o < out; ++o) y[r * out + o] += a * w[i * out + o];
    }
  return y;
}

// §1.2: x · rsqrt(mean(x²) + eps) · weight, per row.
Matrix rms_norm(const Matrix& x, std::int64_t n, std::int64_t width,
                const std::vector<double>& weight, double eps) {
  Matrix y(x.size());
  for (std::int64_t r = 0; r < n; ++r) {
    double mean_square = 0.0;
    for (std::int64_t i = 0; i < width; ++i) mean_square += x[r * width + i] * x[r * width + i];
    const double inv = 1.0 / std::sqrt(mean_square / static_cast<double>(width) + eps);
    for (std::int64_t i = 0; i < width; ++i) y[r * width + i] = x[r * width + i] * inv * weight[i];
  }
  return y;
}

enum class ReferencePairing { interleaved, half_by_mistake };

// §1.3: float32 inverse frequencies, angle rounded once to float32, cos/sin in double. Rotates
// x = [n, heads, d] in place at positions 0 … n−1.
void rope(Matrix& x, std::int64_t n, std::int64_t heads, std::int64_t d, double theta,
          ReferencePairing pairing) {
  const float theta32 = static_cast<float>(theta);
  for (std::int64_t i = 0; i < d / 2; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(d);
    const float inv = 1.0f / static_cast<float>(std::pow(static_cast<double>(theta32),
                                                         static_cast<double>(exponent)));
    for (std::int64_t t = 0; t < n; ++t) {
      const double angle = static_cast<float>(static_cast<double>(t) * inv);
      const double c = std::cos(angle), s = std::sin(angle);
      for (std::int64_t h = 0; h < heads; ++h) {
        double* head = &x[(t * heads + h) * d];
        // Interleaved pairs (x[2i], x[2i+1]) are LWM's; the other is the mistake a loader makes
        // when it applies HF's rotate-half to JAX weights (used only to show the test notices).
        const std::int64_t a = pairing == ReferencePairing::interleaved ? 2 * i : i;
        const std::int64_t b = pairing == ReferencePairing::interleaved ? 2 * i + 1 : i + d / 2;
        const double xa = head[a], xb = head[b];
        head[a] = xa * c - xb * s;
        head[b] = xa * s + xb * c;
      }
    }
  }
}

// Logits [n, vocab] of the tokens at positions 0 … n−1 with causal attention. Where
// `vision_mask` is set a token is a vision id (spec §2.2); `vision_head` picks the vision logits.
Matrix reference_forward(const ReferenceWeights& w, const std::vector<std::int32_t>& tokens,
                         ReferencePairing pairing = ReferencePairing::interleaved,
                         const std::vector<std::uint8_t>& vision_mask = {},
                         bool vision_head = false) {
  const ModelConfig& c = w.config;
  const auto n = static_cast<std::int64_t>(tokens.size());
  const std::int64_t hidden = c.hidden_size, d = c.head_dim(), heads = c.num_heads,
                     kv_heads = c.num_kv_heads;
  const std::int64_t inner = c.intermediate_size, group = heads / kv_heads;
  Matrix h(static_cast<std::size_t>(n * hidden));
  for (std::int64_t t = 0; t < n; ++t) {
    const bool vision = !vision_mask.empty() && vision_mask[t] != 0;
    const Matrix& table = vision ? w.vision_embedding : w.embedding;
    for (std::int64_t i = 0; i < hidden; ++i) h[t * hidden + i] = table[tokens[t] * hidden + i];
  }
  for (const ReferenceWeights::Layer& layer : w.layers) {
    const Matrix a = rms_norm(h, n, hidden, layer.attention_norm, c.rms_norm_eps);
    Matrix q = matmul(a, n, hidden, layer.wq, heads * d);
    Matrix k = matmul(a, n, hidden, layer.wk, kv_heads * d);
    const Matrix v = matmul(a, n, hidden, layer.wv, kv_heads * d);
    rope(q, n, heads, d, c.rope_theta, pairing);
    rope(k, n, kv_heads, d, c.rope_theta, pairing);
    Matrix attended(static_cast<std::size_t>(n * heads * d), 0.0);
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    std::vector<double> p(static_cast<std::size_t>(n));
    for (std::int64_t t = 0; t < n; ++t) {
      for (std::int64_t head = 0; head < heads; ++head) {
        const std::int64_t g = head / group;
        double max = -INFINITY;
        for (std::int64_t j = 0; j <= t; ++j) {
          double dot = 0.0;
          for (std::int64_t e = 0; e < d; ++e)
            dot += q[(t * heads + head) * d + e] * k[(j * kv_heads + g) * d + e];
          p[j] = dot * scale;
          max = std::max(max, p[j]);
        }
        double sum = 0.0;
        for (std::int64_t j = 0; j <= t; ++j) sum += (p[j] = std::exp(p[j] - max));
        for (std::int64_t j = 0; j <= t; ++j)
          for (std::int64_t e = 0; e < d; ++e)
            attended[(t * heads + head) * d + e] += p[j] / sum * v[(j * kv_heads + g) * d + e];
      }
    }
    const Matrix o = matmul(attended, n, heads * d, layer.wo, hidden);
    for (std::size_t i = 0; i < h.size(); ++i) h[i] += o[i];
    const Matrix f = rms_norm(h, n, hidden, layer.ffn_norm, c.rms_norm_eps);
    const Matrix gate = matmul(f, n, hidden, layer.w1, inner);  // w1 = gate
    const Matrix up = matmul(f, n, hidden, layer.w3, inner);    // w3 = up
    Matrix act(gate.size());
    for (std::size_t i = 0; i < act.size(); ++i)
      act[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
    const Matrix down = matmul(act, n, inner, layer.w2, hidden);  // w2 = down
    for (std::size_t i = 0; i < h.size(); ++i) h[i] += down[i];
  }
  const Matrix final_h = rms_norm(h, n, hidden, w.final_norm, c.rms_norm_eps);
  return vision_head ? matmul(final_h, n, hidden, w.vision_head, c.vision_vocab_size)
                     : matmul(final_h, n, hidden, w.lm_head, c.vocab_size);
}

// --- models under test ------------------------------------------------------------------------

ModelConfig tiny_config(std::int64_t kv_heads, DType dtype, double theta) {
  ModelConfig c = ModelConfig::preset("tiny");
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.intermediate_size = 88;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = kv_heads;
  c.max_sequence_length = 256;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = theta;
  c.tie_word_embeddings = false;
  c.convention = WeightConvention::jax;
  c.convention_known = true;
  c.torch_dtype = dtype;
  return c;
}

// init_std 0.2 (not LWM's 0.02) so that with hidden 64 attention logits have a spread of a few
// units: the softmax is far from uniform and a wrong position, mask or pairing changes the logits
// by O(1) instead of hiding below the tolerance. Norm weights are 1 ± 0.2 so that each norm
// matters.
void make_model(const fs::path& dir, const ModelConfig& config, DType dtype, std::uint64_t seed) {
  ModelMakerOptions options;
  options.config = config;
  options.dtype = dtype;
  options.seed = seed;
  options.init_std = 0.2f;
  options.norm_weight_noise = 0.2f;
  make_random_model(dir, options);
}

std::vector<std::int32_t> random_tokens(std::size_t n, std::int64_t vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<std::int32_t> id(0, static_cast<std::int32_t>(vocab - 1));
  std::vector<std::int32_t> tokens(n);
  for (auto& t : tokens) t = id(rng);
  return tokens;
}

// Logit tolerance. The engine computes in float32 over the same stored weights the reference
// widens, so differences are float32 rounding (≈1e-7 relative per op) amplified through two layers
// of peaked softmax: observed max errors are ≲1.2e-5 on logits of magnitude ~5, at most 1/20 of
// 2e-4 absolute plus 1e-4 relative, while a wrong rotation pairing, mask, GQA grouping or weight
// moves logits by O(0.1–1) (checked by ToleranceIsTightEnoughToSeeAWrongPairing).
constexpr double kLogitAtol = 2e-4;
constexpr double kLogitRtol = 1e-4;

void expect_logits(const std::vector<float>& actual, const Matrix& expected, std::size_t first_row,
                   std::size_t rows, std::int64_t vocab, const std::string& what) {
  ASSERT_EQ(actual.size(), rows * static_cast<std::size_t>(vocab)) << what;
  const test::Closeness c = test::compare(actual.data(), expected.data() + first_row * vocab,
                                          actual.size(), kLogitAtol, kLogitRtol);
  EXPECT_TRUE(c.ok) << what << ": row "
                    << first_row + c.worst_index / static_cast<std::size_t>(vocab) << " token "
                    << c.worst_index % static_cast<std::size_t>(vocab) << " logit "
                    << actual[c.worst_index] << ", expected "
                    << expected[first_row * vocab + c.worst_index] << " (max abs error "
                    << c.max_abs_error << ")";
}

std::vector<float> full_forward(const Model& model, const std::vector<std::int32_t>& tokens) {
  KVCache cache(model.config(), static_cast<std::int64_t>(tokens.size()));
  std::vector<float> logits;
  model.forward(tokens, cache, LogitsFor::all, &logits);
  EXPECT_EQ(cache.size(), static_cast<std::int64_t>(tokens.size()));
  return logits;
}

struct ModelCase {
  std::int64_t kv_heads;
  DType dtype;
  double theta;
};

const ModelCase kModelCases[] = {{4, DType::f32, 1e4},
                                 {2, DType::f32, 1e6},
                                 {4, DType::bf16, 1e4},
                                 {2, DType::bf16, 5e7},
                                 {1, DType::f16, 1e4}};

std::string describe(const ModelCase& m) {
  return std::string(dtype_name(m.dtype)) + " kv_heads " + std::to_string(m.kv_heads) + " theta " +
         std::to_string(m.theta);
}

TEST(Model, ForwardMatchesFp64Reference) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (const ModelCase& m : kModelCases) {
    SCOPED_TRACE(describe(m));
    test::TempDir tmp;
    make_model(tmp / "model", tiny_config(m.kv_heads, m.dtype, m.theta), m.dtype, rng());
    const ReferenceWeights weights = load_reference(tmp / "model");
    const auto model = Model::load(tmp / "model");
    ASSERT_EQ(model->config().num_kv_heads, m.kv_heads);
    const std::vector<std::int32_t> tokens = random_tokens(29, 97, rng);
    const Matrix expected = reference_forward(weights, tokens);
    expect_logits(full_forward(*model, tokens), expected, 0, tokens.size(), 97, "full forward");
    // Small attention chunks run the blockwise path with many partial blocks inside the model.
    const auto chunked = Model::load(tmp / "model", ModelRuntimeOptions{3, 5});
    expect_logits(full_forward(*chunked, tokens), expected, 0, tokens.size(), 97,
                  "attention chunks 3x5");
  }
}

// Guards the tolerance itself: the mistake of rotating JAX weights in HF's rotate-half pairs must
// be far outside it, or the comparisons above would prove nothing about RoPE.
TEST(Model, ToleranceIsTightEnoughToSeeAWrongPairing) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  test::TempDir tmp;
  make_model(tmp / "model", tiny_config(4, DType::f32, 1e4), DType::f32, rng());
  const ReferenceWeights weights = load_reference(tmp / "model");
  const std::vector<std::int32_t> tokens = random_tokens(29, 97, rng);
  const Matrix right = reference_forward(weights, tokens);
  const Matrix wrong = reference_forward(weights, tokens, ReferencePairing::half_by_mistake);
  double max_difference = 0.0;
  for (std::size_t i = 0; i < right.size(); ++i)
    max_difference = std::max(max_difference, std::fabs(right[i] - wrong[i]));
  EXPECT_GT(max_difference, 50 * (kLogitAtol + kLogitRtol * 5.0));
}

// --- Hugging Face convention --------------------------------------------------------------------

// The [cols, rows] transpose of a [rows, cols] matrix, copying stored elements without converting
// them (bf16 stays bit-identical); `row_order` optionally gathers the output rows.
Tensor transposed(const Tensor& src, const std::vector<std::int64_t>& row_order = {}) {
  const std::int64_t rows = src.dim(0), cols = src.dim(1);
  const std::size_t size = dtype_size(src.dtype());
  Tensor dst = Tensor::zeros(src.dtype(), {cols, rows});
  const auto* in = static_cast<const unsigned char*>(src.raw());
  auto* out = static_cast<unsigned char*>(dst.mutable_raw());
  // dst row r_out takes source column row_order[r_out] (identity when empty).
  for (std::int64_t r_out = 0; r_out < cols; ++r_out) {
    const std::int64_t column = row_order.empty() ? r_out : row_order[r_out];
    for (std::int64_t i = 0; i < rows; ++i)
      std::memcpy(out + (r_out * rows + i) * size, in + (i * cols + column) * size, size);
  }
  return dst;
}

// §1.6 P: HF row h·d + j·d/2 + i ← JAX row h·d + 2i + j.
std::vector<std::int64_t> rotate_half_order(std::int64_t heads, std::int64_t d) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(heads * d));
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t i = 0; i < d / 2; ++i)
      for (std::int64_t j = 0; j < 2; ++j) order[h * d + j * (d / 2) + i] = h * d + 2 * i + j;
  return order;
}

// Writes `hf_dir` holding the weights of the JAX model in `jax_dir` as LlamaForCausalLM would:
// transposed to [out, in], q and k rows permuted to rotate-half pairs (tux jax2hf, spec §1.6).
void write_hf_copy(const fs::path& jax_dir, const fs::path& hf_dir) {
  ModelConfig config = ModelConfig::load(jax_dir);
  const WeightStore store(jax_dir);
  const std::int64_t d = config.head_dim();
  std::vector<std::pair<std::string, Tensor>> tensors;
  tensors.emplace_back("model.embed_tokens.weight", store.tensor("transformer.wte.embedding"));
  tensors.emplace_back("model.norm.weight", store.tensor("transformer.ln_f.kernel"));
  tensors.emplace_back("lm_head.weight", transposed(store.tensor("lm_head.kernel")));
  for (std::int64_t l = 0; l < config.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    tensors.emplace_back(p + "self_attn.q_proj.weight",
                         transposed(layer_tensor(store, l, "attention.wq.kernel"),
                                    rotate_half_order(config.num_heads, d)));
    tensors.emplace_back(p + "self_attn.k_proj.weight",
                         transposed(layer_tensor(store, l, "attention.wk.kernel"),
                                    rotate_half_order(config.num_kv_heads, d)));
    tensors.emplace_back(p + "self_attn.v_proj.weight",
                         transposed(layer_tensor(store, l, "attention.wv.kernel")));
    tensors.emplace_back(p + "self_attn.o_proj.weight",
                         transposed(layer_tensor(store, l, "attention.wo.kernel")));
    tensors.emplace_back(p + "mlp.gate_proj.weight",
                         transposed(layer_tensor(store, l, "feed_forward.w1.kernel")));
    tensors.emplace_back(p + "mlp.up_proj.weight",
                         transposed(layer_tensor(store, l, "feed_forward.w3.kernel")));
    tensors.emplace_back(p + "mlp.down_proj.weight",
                         transposed(layer_tensor(store, l, "feed_forward.w2.kernel")));
    tensors.emplace_back(p + "input_layernorm.weight",
                         layer_tensor(store, l, "attention_norm.kernel"));
    tensors.emplace_back(p + "post_attention_layernorm.weight",
                         layer_tensor(store, l, "ffn_norm.kernel"));
  }
  if (config.has_vision()) {
    tensors.emplace_back("model.embed_vision_tokens.weight",
                         store.tensor("transformer.vte.embedding"));
    tensors.emplace_back("vision_head.weight", transposed(store.tensor("vision_head.kernel")));
  }
  fs::create_directories(hf_dir);
  write_safetensors(hf_dir / "model.safetensors", tensors, {{"format", "pt"}});
  config.convention = WeightConvention::hf;
  config.convention_known = true;
  nlohmann::json json = config.to_json();
  json["lwm_weight_convention"] = "hf";
  std::ofstream(hf_dir / "config.json") << json.dump(2);
}

TEST(Model, HuggingFaceConventionGivesTheSameLogits) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (const ModelCase& m : {kModelCases[0], kModelCases[3]}) {
    SCOPED_TRACE(describe(m));
    test::TempDir tmp;
    make_model(tmp / "jax", tiny_config(m.kv_heads, m.dtype, m.theta), m.dtype, rng());
    write_hf_copy(tmp / "jax", tmp / "hf");
    const auto hf = Model::load(tmp / "hf");
    EXPECT_EQ(hf->config().convention, WeightConvention::hf);
    const std::vector<std::int32_t> tokens = random_tokens(29, 97, rng);
    const Matrix expected = reference_forward(load_reference(tmp / "jax"), tokens);
    expect_logits(full_forward(*hf, tokens), expected, 0, tokens.size(), 97, "HF directory");
    // And the engine's two conventions agree with each other as closely as with the reference.
    const std::vector<float> jax_logits = full_forward(*Model::load(tmp / "jax"), tokens);
    const std::vector<double> jax_wide(jax_logits.begin(), jax_logits.end());
    expect_logits(full_forward(*hf, tokens), jax_wide, 0, tokens.size(), 97, "HF vs JAX engine");
  }
}

// --- KV cache ---------------------------------------------------------------------------------

TEST(Model, TokenByTokenDecodeMatchesFullForward) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (const ModelCase& m : {kModelCases[1], kModelCases[2]}) {
    SCOPED_TRACE(describe(m));
    test::TempDir tmp;
    make_model(tmp / "model", tiny_config(m.kv_heads, m.dtype, m.theta), m.dtype, rng());
    const auto model = Model::load(tmp / "model", ModelRuntimeOptions{4, 4});
    const std::vector<std::int32_t> tokens = random_tokens(23, 97, rng);
    const Matrix expected = reference_forward(load_reference(tmp / "model"), tokens);
    // Capacity larger than needed: unfilled cache slots must not be attended to.
    KVCache cache(model->config(), 40);
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      std::vector<float> logits;
      const std::int32_t token[] = {tokens[t]};
      model->forward(token, cache, t % 2 == 0 ? LogitsFor::last : LogitsFor::all, &logits);
      ASSERT_EQ(cache.size(), static_cast<std::int64_t>(t + 1));
      expect_logits(logits, expected, t, 1, 97, "decode step " + std::to_string(t));
    }
  }
}

TEST(Model, ChunkedPrefillWithOddChunksMatchesFullForward) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (const ModelCase& m : {kModelCases[1], kModelCases[3]}) {
    SCOPED_TRACE(describe(m));
    test::TempDir tmp;
    make_model(tmp / "model", tiny_config(m.kv_heads, m.dtype, m.theta), m.dtype, rng());
    const std::vector<std::int32_t> tokens = random_tokens(31, 97, rng);
    const Matrix expected = reference_forward(load_reference(tmp / "model"), tokens);
    for (ModelRuntimeOptions options : {ModelRuntimeOptions{}, ModelRuntimeOptions{2, 3}}) {
      const auto model = Model::load(tmp / "model", options);
      KVCache cache(model->config(), static_cast<std::int64_t>(tokens.size()));
      std::size_t done = 0;
      int step = 0;
      for (std::size_t chunk : {3u, 1u, 5u, 7u, 2u, 9u, 4u}) {
        const std::span<const std::int32_t> part(tokens.data() + done, chunk);
        std::vector<float> logits;
        const bool all = step++ % 2 == 0;
        model->forward(part, cache, all ? LogitsFor::all : LogitsFor::last, &logits);
        const std::string what =
            "chunk at " + std::to_string(done) + " of " + std::to_string(chunk);
        if (all) {
          expect_logits(logits, expected, done, chunk, 97, what);
        } else {
          expect_logits(logits, expected, done + chunk - 1, 1, 97, what + " (last)");
        }
        done += chunk;
        ASSERT_EQ(cache.size(), static_cast<std::int64_t>(done));
      }
      ASSERT_EQ(done, tokens.size());
    }
  }
}

TEST(Model, TruncatedCacheRecomputesADifferentSuffix) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  test::TempDir tmp;
  make_model(tmp / "model", tiny_config(2, DType::bf16, 1e4), DType::bf16, rng());
  const auto model = Model::load(tmp / "model");
  const ReferenceWeights weights = load_reference(tmp / "model");
  const std::vector<std::int32_t> first = random_tokens(14, 97, rng);
  KVCache cache(model->config(), 20);
  std::vector<float> logits;
  model->forward(first, cache, LogitsFor::none, &logits);
  cache.truncate(8);  // keep a shared prefix, ask something else after it
  ASSERT_EQ(cache.size(), 8);
  std::vector<std::int32_t> second(first.begin(), first.begin() + 8);
  const std::vector<std::int32_t> suffix = random_tokens(6, 97, rng);
  second.insert(second.end(), suffix.begin(), suffix.end());
  model->forward(suffix, cache, LogitsFor::all, &logits);
  expect_logits(logits, reference_forward(weights, second), 8, suffix.size(), 97, "after truncate");
}

TEST(Model, ForwardBeyondCacheCapacityThrows) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  test::TempDir tmp;
  make_model(tmp / "model", tiny_config(4, DType::f32, 1e4), DType::f32, rng());
  const auto model = Model::load(tmp / "model");
  KVCache cache(model->config(), 5);
  std::vector<float> logits;
  const std::vector<std::int32_t> four = {1, 2, 3, 4}, two = {5, 6};
  model->forward(four, cache, LogitsFor::last, &logits);
  EXPECT_THROW(model->forward(two, cache, LogitsFor::last, &logits), Error);
  EXPECT_EQ(cache.size(), 4) << "a refused forward must not advance the cache";
}

// --- numpy reference ----------------------------------------------------------------------------

// Runs tests/python/numpy_reference.py (numpy in float64, written without looking at the C++) and
// returns its logits.
Matrix numpy_logits(const fs::path& model_dir, const std::vector<std::int32_t>& tokens,
                    const fs::path& out_json) {
  std::string token_list;
  for (std::int32_t t : tokens) {
    if (!token_list.empty()) token_list += ',';
    token_list += std::to_string(t);
  }
  const fs::path script = test::source_dir() / "tests/python/numpy_reference.py";
  const test::CommandResult run =
      test::run_command("'" + test::test_python().string() + "' '" + script.string() + "' '" +
                        model_dir.string() + "' " + token_list + " '" + out_json.string() + "'");
  EXPECT_EQ(run.exit_code, 0) << run.output;
  if (run.exit_code != 0) return {};
  std::ifstream in(out_json);
  const nlohmann::json json = nlohmann::json::parse(in);
  Matrix logits;
  for (const auto& row : json.at("logits"))
    for (const auto& x : row) logits.push_back(x.get<double>());
  return logits;
}

TEST(Model, MatchesIndependentNumpyReference) {
  if (!fs::exists(test::test_python())) {
    FAIL() << "no test Python at " << test::test_python()
           << "; run `bash packaging/install-deps.sh --tests` (or configure with "
              "-DLWM_TEST_PYTHON=<python with numpy "
              "and safetensors>)";
  }
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  test::TempDir tmp;
  // f32 storage: safetensors.numpy cannot read bf16.
  make_model(tmp / "jax", tiny_config(2, DType::f32, 1e6), DType::f32, rng());
  write_hf_copy(tmp / "jax", tmp / "hf");
  const std::vector<std::int32_t> tokens = random_tokens(19, 97, rng);
  const Matrix cpp_reference = reference_forward(load_reference(tmp / "jax"), tokens);
  for (const char* convention : {"jax", "hf"}) {
    SCOPED_TRACE(convention);
    const Matrix numpy =
        numpy_logits(tmp / convention, tokens, tmp / (std::string(convention) + ".json"));
    ASSERT_EQ(numpy.size(), tokens.size() * 97);
    expect_logits(full_forward(*Model::load(tmp / convention), tokens), numpy, 0, tokens.size(), 97,
                  "engine vs numpy");
    // Two independent fp64 references agree to double rounding (1e-9 leaves room for exp/log).
    double worst = 0.0;
    for (std::size_t i = 0; i < numpy.size(); ++i)
      worst = std::max(worst, std::fabs(numpy[i] - cpp_reference[i]));
    EXPECT_LT(worst, 1e-9) << "the C++ and numpy fp64 references disagree";
  }
}

// --- vision-language model (spec §2.2) ---------------------------------------------------------

constexpr std::int64_t kVisionVocab = 40;

ModelConfig tiny_vision_config(DType dtype, bool tie_vision) {
  ModelConfig c = tiny_config(2, dtype, 5e7);
  c.vision_vocab_size = kVisionVocab;
  c.tie_vision_embeddings = tie_vision;
  return c;
}

// Text and vision ids in runs of random length, as a prompt with frames between text has them.
std::pair<std::vector<std::int32_t>, std::vector<std::uint8_t>> random_mixed_tokens(
    std::size_t n, std::mt19937_64& rng) {
  std::vector<std::int32_t> tokens;
  std::vector<std::uint8_t> mask;
  std::uniform_int_distribution<int> run_length(1, 7);
  bool vision = false;
  while (tokens.size() < n) {
    const std::vector<std::int32_t> run = random_tokens(
        std::min<std::size_t>(static_cast<std::size_t>(run_length(rng)), n - tokens.size()),
        vision ? kVisionVocab : 97, rng);
    tokens.insert(tokens.end(), run.begin(), run.end());
    mask.insert(mask.end(), run.size(), vision ? 1 : 0);
    vision = !vision;
  }
  return {tokens, mask};
}

std::vector<float> full_forward(const Model& model, const std::vector<std::int32_t>& tokens,
                                const std::vector<std::uint8_t>& mask, Head head) {
  KVCache cache(model.config(), static_cast<std::int64_t>(tokens.size()));
  std::vector<float> logits;
  model.forward(tokens, cache, {.logits_for = LogitsFor::all, .head = head, .vision_mask = mask},
                &logits);
  return logits;
}

TEST(VisionModel, MixedTokensMatchFp64ReferenceOnBothHeads) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (const bool tie : {false, true}) {
    for (const DType dtype : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + (tie ? " tied" : " untied"));
      test::TempDir tmp;
      make_model(tmp / "model", tiny_vision_config(dtype, tie), dtype, rng());
      const ReferenceWeights weights = load_reference(tmp / "model");
      const auto model = Model::load(tmp / "model", ModelRuntimeOptions{4, 6});
      const auto [tokens, mask] = random_mixed_tokens(31, rng);
      const auto n = tokens.size();
      expect_logits(full_forward(*model, tokens, mask, Head::text),
                    reference_forward(weights, tokens, ReferencePairing::interleaved, mask, false),
                    0, n, 97, "text head");
      expect_logits(full_forward(*model, tokens, mask, Head::vision),
                    reference_forward(weights, tokens, ReferencePairing::interleaved, mask, true),
                    0, n, kVisionVocab, "vision head");
    }
  }
}

// The same ids read as vision instead of text must change the result: guards against a mask
// that is silently ignored.
TEST(VisionModel, TheMaskRoutesTheEmbedding) {
  std::mt19937_64 rng(test::test_seed());
  test::TempDir tmp;
  make_model(tmp / "model", tiny_vision_config(DType::f32, false), DType::f32, rng());
  const auto model = Model::load(tmp / "model");
  const std::vector<std::int32_t> tokens = random_tokens(12, kVisionVocab, rng);
  const std::vector<std::uint8_t> all_text(tokens.size(), 0), all_vision(tokens.size(), 1);
  const std::vector<float> as_text = full_forward(*model, tokens, all_text, Head::text);
  const std::vector<float> as_vision = full_forward(*model, tokens, all_vision, Head::text);
  double largest_change = 0.0;
  for (std::size_t i = 0; i < as_text.size(); ++i) {
    largest_change = std::max(largest_change, std::abs(double{as_text[i]} - as_vision[i]));
  }
  EXPECT_GT(largest_change, 0.1);
  EXPECT_EQ(as_text, full_forward(*model, tokens, {}, Head::text)) << "empty mask = all text";
}

TEST(VisionModel, HuggingFaceConventionGivesTheSameLogits) {
  std::mt19937_64 rng(test::test_seed());
  test::TempDir tmp;
  make_model(tmp / "jax", tiny_vision_config(DType::f32, false), DType::f32, rng());
  write_hf_copy(tmp / "jax", tmp / "hf");
  const auto [tokens, mask] = random_mixed_tokens(19, rng);
  const Matrix expected = reference_forward(load_reference(tmp / "jax"), tokens,
                                            ReferencePairing::interleaved, mask, true);
  expect_logits(full_forward(*Model::load(tmp / "hf"), tokens, mask, Head::vision), expected, 0,
                tokens.size(), kVisionVocab, "HF vision head");
}

TEST(VisionModel, ChunkedPrefillOfAPromptMatchesFullForward) {
  std::mt19937_64 rng(test::test_seed());
  test::TempDir tmp;
  make_model(tmp / "model", tiny_vision_config(DType::bf16, false), DType::bf16, rng());
  const auto model = Model::load(tmp / "model");
  const auto [tokens, mask] = random_mixed_tokens(27, rng);
  const Matrix expected = reference_forward(load_reference(tmp / "model"), tokens,
                                            ReferencePairing::interleaved, mask, false);
  for (const std::int64_t chunk : {1, 4, 5, 27}) {
    KVCache cache(model->config(), 32);
    const std::vector<float> last =
        prefill(*model, cache, PromptView(tokens, mask), chunk);
    expect_logits(last, expected, tokens.size() - 1, 1, 97, "chunk " + std::to_string(chunk));
  }
}

TEST(VisionModel, BadVisionInputIsRefused) {
  std::mt19937_64 rng(test::test_seed());
  test::TempDir tmp;
  make_model(tmp / "vision", tiny_vision_config(DType::f32, false), DType::f32, rng());
  make_model(tmp / "text", tiny_config(2, DType::f32, 1e4), DType::f32, rng());
  const auto vision = Model::load(tmp / "vision");
  const auto text = Model::load(tmp / "text");
  const std::vector<std::int32_t> tokens = {3, 5, 7};
  const std::vector<std::uint8_t> mask = {0, 1, 0};
  KVCache vision_cache(vision->config(), 8), text_cache(text->config(), 8);
  std::vector<float> logits;
  auto refused = [&](const Model& model, KVCache& cache, std::vector<std::int32_t> ids,
                     std::vector<std::uint8_t> m, Head head, const std::string& fragment) {
    const Error error = test::capture_error([&] {
      model.forward(ids, cache, {.logits_for = LogitsFor::last, .head = head, .vision_mask = m},
                    &logits);
    });
    EXPECT_EQ(error.kind(), ErrorKind::invalid_argument) << error.what();
    EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
    EXPECT_EQ(cache.size(), 0) << "a refused forward must not advance the cache";
  };
  refused(*text, text_cache, tokens, mask, Head::text, "text-only");
  refused(*text, text_cache, tokens, {}, Head::vision, "text-only");
  refused(*vision, vision_cache, tokens, {0, 1}, Head::text, "vision mask has 2 entries");
  refused(*vision, vision_cache, {3, static_cast<std::int32_t>(kVisionVocab), 4}, mask,
          Head::vision, "vision tokens from position 1");
  const std::vector<std::int32_t> code_outside_the_vocabulary = {3, 99, 4};
  const Error error = test::capture_error(
      [&] { prefill(*vision, vision_cache, PromptView(code_outside_the_vocabulary, mask), 2); });
  EXPECT_NE(std::string(error.what()).find("vision vocabulary of 40"), std::string::npos)
      << error.what();
}

}  // namespace
}  // namespace lwm
