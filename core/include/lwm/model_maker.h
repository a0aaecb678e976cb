// Writes a complete model directory with random weights for any config (the real LWM-7B shapes
// included), in either weight convention: config.json, sharded safetensors with an index when
// large, and optionally a tokenizer. Tests, benchmarks and the bundled demo model use it.
#pragma once

#include <cstdint>
#include <filesystem>

#include "lwm/dtype.h"
#include "lwm/model_config.h"
#include "lwm/progress.h"

namespace lwm {

struct ModelMakerOptions {
  ModelConfig config;  // its `convention` decides tensor names and layouts
  DType dtype = DType::bf16;
  std::uint64_t seed = 0;
  float init_std = 0.02f;         // normal(0, init_std) for every matrix and embedding (spec §1.1)
  float norm_weight_noise = 0.0f; // norms are 1 + normal(0, noise); 0 gives LWM's init of ones
  std::int64_t max_shard_bytes = std::int64_t{2} << 30;  // larger models are sharded with an index
  std::filesystem::path tokenizer_model;  // copied to <dir>/tokenizer.model when not empty
};

// Creates `dir` (which must not exist or be empty), writing files atomically. Progress counts
// tensors written; returning false cancels (Error cancelled) and leaves no partial directory.
void make_random_model(const std::filesystem::path& dir, const ModelMakerOptions& options,
                       const ProgressCallback& progress = {});

}  // namespace lwm
