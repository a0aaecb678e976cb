// The VQGAN's parameters as the network uses them, and the one walk over its architecture
// (spec lwm-reference §3.4, §3.6, §3.7) that names every tensor. The loader (a source that reads
// and checks the file), the parameter plan (a source that records names and shapes) and the
// random-weight maker all go through build_network(), so the names exist in one place only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lwm/tensor.h"
#include "lwm/vqgan.h"

namespace lwm::vqgan {

enum class ParamKind : std::uint8_t { conv_kernel, conv_bias, norm_scale, norm_bias, codebook };

// Returns the tensor `name` with `shape` (or an empty Tensor when only recording the plan).
using ParamSource =
    std::function<Tensor(const std::string& name, const Shape& shape, ParamKind kind)>;

struct Conv {
  Tensor kernel;  // HWIO [k, k, in, out]
  Tensor bias;    // [out]
  std::int64_t size = 3;
  std::int64_t in = 0;
  std::int64_t out = 0;
};

struct Norm {
  std::vector<float> scale;  // widened to float32 at load: GroupNorm reads them per pixel
  std::vector<float> bias;
};

// GN → SiLU → Conv3×3 → GN → SiLU → Conv3×3, plus skip (Conv1×1 when in ≠ out) (§3.3).
struct Resnet {
  std::int64_t in = 0;
  std::int64_t out = 0;
  Norm norm0;
  Conv conv0;
  Norm norm1;
  Conv conv1;
  bool has_shortcut = false;
  Conv shortcut;
};

struct Level {
  std::int64_t index = 0;  // the resolution level (0 = full size)
  std::vector<Resnet> blocks;
  bool has_resample = false;  // Downsample_0 / Upsample_0
  Conv resample;
};

struct Network {
  Conv encoder_in;
  std::vector<Level> down;  // DownsamplingBlock_0 … _{L-1}
  std::vector<Resnet> encoder_mid;
  Norm encoder_norm;
  Conv encoder_out;
  Conv quant_conv;
  Tensor codebook;  // [num_embeddings, quantized_embed_dim]
  Conv post_quant_conv;
  Conv decoder_in;
  std::vector<Resnet> decoder_mid;
  std::vector<Level> up;  // UpsamplingBlock_0 (level L-1) … _{L-1} (level 0), in run order
  Norm decoder_norm;
  Conv decoder_out;
};

// Walks the architecture of `config` (validated by the caller) asking `source` for every tensor.
Network build_network(const VqganConfig& config, const ParamSource& source);

struct ParamSpec {
  std::string name;
  Shape shape;
  ParamKind kind;
};
// Every tensor of vqgan.safetensors for `config`, in walk order.
std::vector<ParamSpec> parameter_plan(const VqganConfig& config);

// Upper bound on the float32 elements of one activation of one frame (for batching budgets).
std::int64_t max_activation_elements(const VqganConfig& config);

}  // namespace lwm::vqgan
