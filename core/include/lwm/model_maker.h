// Writes a complete model directory with random weights for any config (the real LWM-7B shapes
// included), in either weight convention: config.json, sharded safetensors with an index when
// large, and optionally a tokenizer. Tests, benchmarks and the bundled demo model use it.
#pragma once

#include <cstdint>
#include <filesystem>

#include "lwm/dtype.h"
#include "lwm/model_config.h"
#include "lwm/progress.h"
#include "lwm/vqgan.h"

namespace lwm {

struct ModelMakerOptions {
  ModelConfig config;  // its `convention` decides tensor names and layouts
  DType dtype = DType::bf16;
  std::uint64_t seed = 0;
  float init_std = 0.02f;  // normal(0, init_std) for every matrix and embedding (spec §1.1)
  float norm_weight_noise = 0.0f;  // norms are 1 + normal(0, noise); 0 gives LWM's init of ones
  std::int64_t max_shard_bytes = std::int64_t{2} << 30;  // larger models are sharded with an index
  std::filesystem::path tokenizer_model;  // copied to <dir>/tokenizer.model when not empty
};

// Creates `dir` (which must not exist or be empty), writing files atomically. Progress counts
// tensors written; returning false cancels (Error cancelled) and leaves no partial directory.
void make_random_model(const std::filesystem::path& dir, const ModelMakerOptions& options,
                       const ProgressCallback& progress = {});

// Random VQGAN weights for any VqganConfig (vqgan.h), for tests, benchmarks and the demo model.
// Initialisation keeps activations of order one through any depth: conv kernels
// normal(0, 1/sqrt(k·k·in)), conv biases normal(0, bias_std), GroupNorm scale 1 + normal(0,
// norm_noise) and bias normal(0, norm_noise), codebook normal(0, codebook_std).
struct VqganMakerOptions {
  VqganConfig config;
  DType dtype = DType::f32;  // LWM ships its VQGAN in float32 (spec §3.8)
  std::uint64_t seed = 0;
  float bias_std = 0.02f;
  float norm_noise = 0.1f;
  float codebook_std = 0.5f;  // about the spread of the encoder's output with these weights
};

// Writes <dir>/vqgan.safetensors (metadata lwm_format "lwm-vqgan", version 1) and puts the config
// under "vqgan" in <dir>/config.json, creating the directory and the file when absent and keeping
// every other field of an existing config.json. Throws if <dir>/vqgan.safetensors exists.
// Progress counts tensors written; returning false cancels (Error cancelled) and writes nothing.
void make_random_vqgan(const std::filesystem::path& dir, const VqganMakerOptions& options,
                       const ProgressCallback& progress = {});

}  // namespace lwm
