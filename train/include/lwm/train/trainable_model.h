// The LWM transformer (spec §1.2, with the vision embedding and head of §2.2) with trainable
// float32 master parameters in the JAX layout, forward and backward on the CPU.
//
// Memory: one row is run at a time; forward keeps only each layer's input (the residual stream)
// and backward recomputes the layer's inside from it (per-layer activation recomputation, spec
// §5.6 [ours]). Attention is blockwise both ways (backward.h); the heads and the loss run over
// chunks of rows so the vocabulary-wide logits of a whole row never exist at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "lwm/dtype.h"
#include "lwm/model_config.h"
#include "lwm/tensor.h"
#include "lwm/train/batch.h"

namespace lwm::train {

// One parameter tensor inside the flat parameter (and gradient) vector; `name` is the tensor's
// name in our JAX-convention model directories (transformer.h.<i>.attention.wq.kernel, ...).
struct ParameterInfo {
  std::string name;
  Shape shape;
  std::size_t offset = 0;
  std::size_t size = 0;
};

struct TrainableModelOptions {
  std::int64_t attention_query_chunk = 256;
  std::int64_t attention_key_chunk = 256;
  std::int64_t logits_chunk = 256;  // target rows whose logits exist at once
};

class TrainableModel {
 public:
  // Zero parameters for `config` (validated; tied embeddings are not trainable here).
  explicit TrainableModel(ModelConfig config, TrainableModelOptions options = {});

  // LWM's initialisation (spec §1.1): normal(0, stddev) for every matrix and embedding, norms 1.
  void initialize(std::uint64_t seed, float stddev = 0.02f);
  // Reads a model directory (JAX convention, per-layer or stacked, any storage dtype) as float32.
  static TrainableModel load(const std::filesystem::path& dir, TrainableModelOptions options = {});
  // Writes config.json and model.safetensors (JAX convention) atomically, readable by
  // lwm::Model::load and `lwm ask`.
  void save(const std::filesystem::path& dir, DType dtype) const;

  const ModelConfig& config() const noexcept { return config_; }
  // Stages change the RoPE base and the context length between them (spec §5.8).
  void set_rope_theta(double theta);
  void set_max_sequence_length(std::int64_t length);
  // Adds normal(0, stddev) vision embedding and head to a text model (spec §5.7 [ours]).
  void add_vision(std::int64_t vision_vocab_size, std::uint64_t seed, float stddev = 0.02f);

  const std::vector<ParameterInfo>& parameter_table() const noexcept { return table_; }
  const ParameterInfo& parameter(const std::string& name) const;  // throws for an unknown name
  std::span<float> parameters() noexcept { return params_; }
  std::span<const float> parameters() const noexcept { return params_; }
  std::span<float> gradients() noexcept { return grads_; }
  std::span<const float> gradients() const noexcept { return grads_; }
  void zero_gradients();

  // Runs the batch forward and backward and ADDS the gradient of its loss Σ_t w_t·CE_t to
  // gradients(); returns that loss. Throws Error(invalid_argument) for a malformed batch (sizes,
  // ids outside their vocabulary, vision ids for a text-only model).
  double forward_backward(const Batch& batch);
  // The same loss without gradients.
  double loss(const Batch& batch) const;

 private:
  struct Views;
  double run(const Batch& batch, float* gradients) const;
  void build_table();
  void check(const Batch& batch) const;

  ModelConfig config_;
  TrainableModelOptions options_;
  std::vector<ParameterInfo> table_;
  std::vector<float> params_;
  std::vector<float> grads_;
};

}  // namespace lwm::train
