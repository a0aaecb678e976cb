// The LWM text model (LLaMA-2 architecture, spec §1.2) on the CPU backend.
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
  void forward(std::span<const std::int32_t> tokens, KVCache& cache, LogitsFor which,
               std::vector<float>* logits) const;

  // The same for callers that place tokens themselves (sequence parallelism): token i takes the
  // rotary angle of global position positions[i], its keys and values go to the next free cache
  // row, and `attention` decides what each query sees. n may be 0: a rank holding none of this
  // call's tokens still takes part in every layer's (collective) attention.
  void forward(std::span<const std::int32_t> tokens, std::span<const std::int64_t> positions,
               KVCache& cache, AttentionStep& attention, LogitsFor which,
               std::vector<float>* logits) const;

  const ModelRuntimeOptions& runtime_options() const noexcept { return options_; }

 private:
  struct Layer {
    Tensor attention_norm, ffn_norm;
    Linear wq, wk, wv, wo, w1, w2, w3;
  };
  Model() = default;

  std::filesystem::path dir_;
  ModelConfig config_;
  ModelRuntimeOptions options_;
  std::unique_ptr<WeightStore> weights_;
  Tensor token_embedding_;
  std::vector<Layer> layers_;
  Tensor final_norm_;
  Linear lm_head_;
  std::unique_ptr<RotaryEmbedding> rope_;
};

}  // namespace lwm
