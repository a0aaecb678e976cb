// The VQGAN that turns video frames into LWM's vision tokens and back (spec lwm-reference §3).
//
// Layouts (all row-major, float32 compute):
//   frames  [B, H, W, C]  NHWC, RGB for LWM (C = num_channels), pixels in [-1, 1] (§3.1:
//                         x/127.5 - 1); H = W = resolution.
//   codes   [B, grid²]    int32 in [0, num_embeddings), the grid flattened row-major
//                         (row·grid + col, §2.3); grid = resolution / 2^(levels-1) (16 for LWM).
//   conv kernels          HWIO [kh, kw, in, out] exactly as Flax stores them (§3.3), used in place:
//                         read row-major they are the [kh·kw·in, out] matrix of an im2col GEMM.
//
// Model directory (design.md "Model directory"): `vqgan.safetensors` holds the §3.7 parameter
// names joined by '.' (`encoder.DownsamplingBlock_0.ResnetBlock_0.Conv_0.kernel`,
// `quantize.embeddings`, `quant_conv.kernel`, ...), float32 as LWM ships them (bf16/f16 also
// load and are widened); `config.json` holds the VqganConfig under a "vqgan" object. `lwm convert`
// writes both from LWM's pickle; make_random_vqgan() (model_maker.h) writes random ones.
//
// Backends: the network is one graph walk (core/src/vqgan/) written against a small set of ops
// (conv, GroupNorm+SiLU, add, quantize, lookup); the CPU backend implements them with im2col +
// Eigen GEMM under OpenMP. A CUDA backend implements the same ops on device buffers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <vector>

#include "lwm/progress.h"
#include "lwm/tensor.h"

namespace lwm {

// LWM's VQGANConfig (§3.2) plus the GroupNorm constants Flax fixes (§3.3). Defaults are LWM's.
struct VqganConfig {
  std::int64_t resolution = 256;                             // frames are resolution × resolution
  std::int64_t num_channels = 3;                             // image channels (RGB)
  std::int64_t hidden_channels = 128;                        // width of level 0
  std::vector<std::int64_t> channel_mult = {1, 2, 2, 4, 6};  // level widths = hidden · mult
  std::int64_t num_res_blocks = 2;        // per encoder level; decoder levels have one more
  std::int64_t z_channels = 64;           // encoder output / decoder input width
  std::int64_t num_embeddings = 8192;     // codebook size
  std::int64_t quantized_embed_dim = 64;  // codebook vector width
  std::int64_t num_groups = 32;           // GroupNorm groups
  double eps = 1e-6;                      // GroupNorm epsilon

  std::int64_t levels() const noexcept { return static_cast<std::int64_t>(channel_mult.size()); }
  std::int64_t level_channels(std::int64_t level) const {
    return hidden_channels * channel_mult.at(static_cast<std::size_t>(level));
  }
  // Side of the code grid: resolution / 2^(levels-1) (16 for LWM).
  std::int64_t grid_size() const noexcept;
  std::int64_t tokens_per_frame() const noexcept { return grid_size() * grid_size(); }
  // Parameters in vqgan.safetensors (146,244,675 for LWM's config).
  std::int64_t parameter_count() const;
  // Multiply-adds ×2 of one frame through encoder + quantizer, and decoder (for plans and benches).
  double encode_flops_per_frame() const;
  double decode_flops_per_frame() const;

  // Throws Error(config) naming `source` and the field: non-positive sizes, an empty channel_mult,
  // a width not divisible by num_groups, a resolution not divisible by 2^(levels-1), eps <= 0.
  void validate(const std::string& source) const;

  // Absent fields take LWM's defaults. LWM's own fields that would change the network
  // (attn_resolutions non-empty, no_attn_mid_block false, resample_with_conv false) are rejected
  // as unsupported; dropout and commitment_cost do not matter at inference and are ignored.
  static VqganConfig from_json(const nlohmann::json& json, const std::string& source);
  nlohmann::json to_json() const;
  // The "vqgan" object of <dir>/config.json (or of a config file); LWM's defaults when the file
  // has no "vqgan" object. Validated.
  static VqganConfig load(const std::filesystem::path& path);
  // "lwm" (spec §3.2: 256², 16×16 codes of 8192) or "tiny" (32², 8×8 codes of 32, for tests and
  // the "tiny-vision" model preset, whose vision vocabulary holds its codes and delimiters).
  static VqganConfig preset(const std::string& name);
};

struct VqganRunOptions {
  // Frames run through the network together. 0 = as many as fit in `memory_budget_bytes` of
  // activations (at least one).
  std::int64_t frames_per_pass = 0;
  std::int64_t memory_budget_bytes = std::int64_t{1} << 30;
};

class Vqgan {
 public:
  // `path` is a model directory (config.json "vqgan" object + vqgan.safetensors) or a
  // safetensors file (config from config.json beside it when present, else LWM's defaults).
  // Weights stay memory-mapped when float32. Every tensor is checked for presence and shape;
  // errors name the file and tensor.
  static std::unique_ptr<Vqgan> load(const std::filesystem::path& path);
  // The same with an explicit config (checked against the weights).
  static std::unique_ptr<Vqgan> load(const std::filesystem::path& safetensors_file,
                                     const VqganConfig& config);

  const VqganConfig& config() const noexcept { return config_; }
  const std::filesystem::path& weights_path() const noexcept { return path_; }

  // frames [B, H, W, C] (see the layouts above; any dtype, computed in float32) → B·grid² codes,
  // frame after frame (§3.4, §3.5). Throws Error(invalid_argument) for a wrong shape or a pixel
  // outside [-1, 1] (NaN included), naming the frame and pixel.
  // Progress counts frames; cancel is checked between network blocks and throws Error(cancelled).
  std::vector<std::int32_t> encode(const Tensor& frames, const ProgressCallback& progress = {},
                                   const VqganRunOptions& options = {}) const;
  // B·grid² codes → frames [B, H, W, C] float32 clipped to [-1, 1] (§3.6). Throws
  // Error(invalid_argument) for a partial frame, or naming the frame and position of a code out
  // of range.
  Tensor decode(std::span<const std::int32_t> codes, const ProgressCallback& progress = {},
                const VqganRunOptions& options = {}) const;

  ~Vqgan();

 private:
  struct Weights;
  Vqgan() = default;

  VqganConfig config_;
  std::filesystem::path path_;
  std::unique_ptr<Weights> weights_;
};

// §3.6: uint8((x + 1)·127.5) with truncation, x clipped to [-1, 1] first (NaN becomes 0).
void frames_to_uint8(std::span<const float> frames, std::span<std::uint8_t> out);
// §3.1: x/127.5 − 1, the encoder's input normalisation.
void frames_from_uint8(std::span<const std::uint8_t> pixels, std::span<float> out);

}  // namespace lwm
