// The LWM model (LLaMA-2 architecture, spec §1.2; with the vision embedding and head of §2.2
// when the config has a vision vocabulary) on the CPU backend.
// Weights stay memory-mapped in their stored dtype and convention; see linear.h and rope.h for how
// Hugging Face and LWM/JAX files run the same arithmetic without rewriting them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

#include "lwm/kv_cache.h"
#include "lwm/linear.h"
#include "lwm/model_config.h"
#include "lwm/rope.h"
#include "lwm/safetensors.h"

namespace lwm {

// Which positions of a forward call produce logits.
enum class LogitsFor : std::uint8_t { none, last, all };

// Which vocabulary the logits are over (spec §2.2): the text head (lm_head) or, for
// vision-language models, the vision head (VQGAN codes and frame delimiters).
enum class Head : std::uint8_t { text, vision };

struct ForwardOptions {
  LogitsFor logits_for = LogitsFor::none;
  Head head = Head::text;
  // One entry per token: non-zero where the id is a vision id (looked up in the vision
  // embedding), zero for text ids. Empty → every token is text.
  std::span<const std::uint8_t> vision_mask;
};

// The attention of one layer inside Model::forward. It gets the call's queries (RoPE applied) and
// the cache, whose rows [cache.size(), cache.size() + n) already hold this call's keys and
// values, and writes the attended values [n, num_heads · head_dim]. The plain forward attends
// causally over the local cache; sequence parallelism (sequence_parallel.h) runs a ring instead.
class AttentionStep {
 public:
  virtual ~AttentionStep() = default;
  virtual void attend(std::int64_t layer, const float* q, std::int64_t n, const KVCache& cache,
                      float* out) = 0;
};

struct ModelRuntimeOptions {
  std::int64_t attention_query_chunk = 256;
  std::int64_t attention_key_chunk = 512;
};

class Model {
 public:
  // Loads <dir>/config.json and the safetensors weights; checks every tensor's presence and shape.
  // Throws Error naming the file and tensor at fault.
  static std::unique_ptr<Model> load(const std::filesystem::path& dir, ModelRuntimeOptions options = {});

  const ModelConfig& config() const noexcept { return config_; }
  const std::filesystem::path& directory() const noexcept { return dir_; }

  // Runs `tokens` at positions cache.size() … cache.size()+n−1, appending their keys and values
  // to the cache. Writes vocab-wide logits to `logits` for the last token (LogitsFor::last, one
  // row) or for every token (LogitsFor::all, n rows). Throws if the cache has no room.
  // With options.head == Head::vision the rows are vision_vocab_size wide instead. Throws for ids
  // outside their vocabulary, a mask of the wrong length, or vision input to a text-only model.
  void forward(std::span<const std::int32_t> tokens, KVCache& cache, const ForwardOptions& options,
               std::vector<float>* logits) const;
  // Text tokens only, text logits.
  void forward(std::span<const std::int32_t> tokens, KVCache& cache, LogitsFor which,
               std::vector<float>* logits) const {
    forward(tokens, cache, ForwardOptions{.logits_for = which}, logits);
  }

  // The same for callers that place tokens themselves (sequence parallelism): token i takes the
  // rotary angle of global position positions[i], its keys and values go to the next free cache
  // row, and `attention` decides what each query sees. n may be 0: a rank holding none of this
  // call's tokens still takes part in every layer's (collective) attention.
  void forward(std::span<const std::int32_t> tokens, std::span<const std::int64_t> positions,
               KVCache& cache, AttentionStep& attention, const ForwardOptions& options,
               std::vector<float>* logits) const;

  const ModelRuntimeOptions& runtime_options() const noexcept { return options_; }

  // The weights as loaded (host memory, the file's dtype and layout), for backends that keep
  // their own copy on a device (the CUDA backend uploads them once).
  struct LayerWeights {
    Tensor attention_norm, ffn_norm;
    Linear wq, wk, wv, wo, w1, w2, w3;
  };
  const std::vector<LayerWeights>& layer_weights() const noexcept { return layers_; }
  const Tensor& token_embedding() const noexcept { return token_embedding_; }
  const Tensor& final_norm() const noexcept { return final_norm_; }
  const Linear& lm_head() const noexcept { return lm_head_; }
  const Tensor& vision_embedding() const noexcept { return vision_embedding_; }  // empty: text only
  const Linear& vision_head() const noexcept { return vision_head_; }
  const RotaryEmbedding& rotary() const noexcept { return *rope_; }
  // Throws Error(invalid_argument) for a vision mask of the wrong length, or vision input or
  // output asked of a text-only model (what every forward checks first).
  void check_modalities(const ForwardOptions& options, std::int64_t n) const;

 private:
  Model() = default;
  void embed(std::span<const std::int32_t> tokens, std::span<const std::uint8_t> vision_mask,
             float* out) const;

  std::filesystem::path dir_;
  ModelConfig config_;
  ModelRuntimeOptions options_;
  std::unique_ptr<WeightStore> weights_;
  Tensor token_embedding_;
  std::vector<LayerWeights> layers_;
  Tensor final_norm_;
  Linear lm_head_;
  Tensor vision_embedding_;  // empty for text-only models
  Linear vision_head_;
  std::unique_ptr<RotaryEmbedding> rope_;
};

}  // namespace lwm
