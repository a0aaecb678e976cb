// The VQGAN's configuration (spec §3.2) and the names and shapes of its parameters (§3.7), so a
// converted pickle can be checked tensor by tensor and described in config.json.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "lwm/tensor.h"

namespace lwm::convert {

struct VqganConfig {
  std::int64_t resolution = 256;
  std::int64_t num_channels = 3;
  std::int64_t hidden_channels = 128;
  std::vector<std::int64_t> channel_mult = {1, 2, 2, 4, 6};
  std::int64_t num_res_blocks = 2;
  std::int64_t z_channels = 64;
  std::int64_t num_embeddings = 8192;
  std::int64_t quantized_embed_dim = 64;

  // The "vqgan" object of config.json (every §3.2 field, plus the weights file name).
  nlohmann::json to_json(const std::string& weights_file) const;
};

// Every parameter name ('.'-joined §3.7 path) with its shape, for a config.
std::map<std::string, Shape> vqgan_parameter_shapes(const VqganConfig& config);

// Reads the config back from parameter shapes (resolution is not stored in the weights: 256).
// Throws Error(file_format) naming `source` and the tensor that is missing or inconsistent.
VqganConfig infer_vqgan_config(const std::map<std::string, Shape>& shapes,
                               const std::string& source);

}  // namespace lwm::convert
