// VqganConfig (vqgan.h): LWM's VQGANConfig fields (spec lwm-reference §3.2) in config.json.
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lwm/error.h"
#include "lwm/vqgan.h"
#include "config_file.h"
#include "vqgan/vqgan_network.h"

namespace lwm {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

[[noreturn]] void fail(ErrorKind kind, const std::string& source, const std::string& problem) {
  throw Error(kind, "VQGAN config '" + source + "': " + problem);
}

void read_integer(const json& config, const std::string& source, const char* name,
                  std::int64_t& out) {
  if (!config.contains(name) || config[name].is_null()) return;
  const json& value = config[name];
  if (!value.is_number_integer() ||
      (value.is_number_unsigned() && value.get<std::uint64_t>() > std::uint64_t{1} << 40)) {
    fail(ErrorKind::config, source,
         std::string("field '") + name + "' must be an integer, got " + value.dump());
  }
  out = value.get<std::int64_t>();
}

// Fields of LWM's VQGANConfig that select network parts we do not implement (no checkpoint LWM
// released uses them): refusing them beats silently running a different network.
void reject_unsupported(const json& config, const std::string& source) {
  if (config.contains("attn_resolutions") && !config["attn_resolutions"].is_null() &&
      !(config["attn_resolutions"].is_array() && config["attn_resolutions"].empty())) {
    fail(ErrorKind::unsupported, source,
         "field 'attn_resolutions' is " + config["attn_resolutions"].dump() +
             "; attention blocks are not supported (LWM's VQGAN has none, §3.2)");
  }
  if (config.contains("no_attn_mid_block") && config["no_attn_mid_block"] != true) {
    fail(ErrorKind::unsupported, source,
         "field 'no_attn_mid_block' is " + config["no_attn_mid_block"].dump() +
             "; a mid-block attention is not supported (LWM sets true, §3.2)");
  }
  if (config.contains("resample_with_conv") && config["resample_with_conv"] != true) {
    fail(ErrorKind::unsupported, source,
         "field 'resample_with_conv' is " + config["resample_with_conv"].dump() +
             "; only convolutional resampling is supported (LWM sets true, §3.2)");
  }
}

double conv_flops(std::int64_t side_out, std::int64_t kernel, std::int64_t in, std::int64_t out) {
  return 2.0 * static_cast<double>(side_out * side_out) * static_cast<double>(kernel * kernel) *
         static_cast<double>(in) * static_cast<double>(out);
}

double resnet_flops(std::int64_t side, std::int64_t in, std::int64_t out) {
  double flops = conv_flops(side, 3, in, out) + conv_flops(side, 3, out, out);
  if (in != out) flops += conv_flops(side, 1, in, out);
  return flops;
}

}  // namespace

std::int64_t VqganConfig::grid_size() const noexcept {
  if (channel_mult.empty() || levels() > 62) return 0;
  return resolution >> (levels() - 1);
}

std::int64_t VqganConfig::parameter_count() const {
  std::int64_t total = 0;
  for (const auto& spec : vqgan::parameter_plan(*this)) total += shape_numel(spec.shape);
  return total;
}

double VqganConfig::encode_flops_per_frame() const {
  double flops = conv_flops(resolution, 3, num_channels, hidden_channels);
  std::int64_t channels = hidden_channels;
  std::int64_t side = resolution;
  for (std::int64_t l = 0; l < levels(); ++l) {
    const std::int64_t out = level_channels(l);
    for (std::int64_t b = 0; b < num_res_blocks; ++b) {
      flops += resnet_flops(side, channels, out);
      channels = out;
    }
    if (l != levels() - 1) {
      side /= 2;
      flops += conv_flops(side, 3, out, out);
    }
  }
  flops += 2 * resnet_flops(side, channels, channels);
  flops += conv_flops(side, 3, channels, z_channels);
  flops += conv_flops(side, 1, z_channels, quantized_embed_dim);
  flops += 2.0 * static_cast<double>(side * side * num_embeddings * quantized_embed_dim);
  return flops;
}

double VqganConfig::decode_flops_per_frame() const {
  std::int64_t side = grid_size();
  std::int64_t channels = level_channels(levels() - 1);
  double flops = conv_flops(side, 1, quantized_embed_dim, z_channels);
  flops += conv_flops(side, 3, z_channels, channels);
  flops += 2 * resnet_flops(side, channels, channels);
  for (std::int64_t l = levels() - 1; l >= 0; --l) {
    const std::int64_t out = level_channels(l);
    for (std::int64_t b = 0; b < num_res_blocks + 1; ++b) {
      flops += resnet_flops(side, channels, out);
      channels = out;
    }
    if (l != 0) {
      side *= 2;
      flops += conv_flops(side, 3, out, out);
    }
  }
  return flops + conv_flops(side, 3, channels, num_channels);
}

void VqganConfig::validate(const std::string& source) const {
  const auto positive = [&](const char* name, std::int64_t value) {
    if (value <= 0) {
      fail(ErrorKind::config, source,
           std::string("field '") + name + "' must be positive, got " + std::to_string(value));
    }
  };
  positive("resolution", resolution);
  positive("num_channels", num_channels);
  positive("hidden_channels", hidden_channels);
  positive("num_res_blocks", num_res_blocks);
  positive("z_channels", z_channels);
  positive("num_embeddings", num_embeddings);
  positive("quantized_embed_dim", quantized_embed_dim);
  positive("num_groups", num_groups);
  if (num_embeddings > std::int64_t{1} << 31) {
    fail(ErrorKind::config, source, "field 'num_embeddings' does not fit int32 codes");
  }
  if (channel_mult.empty() || levels() > 16) {
    fail(ErrorKind::config, source,
         "field 'channel_mult' must list 1 to 16 levels, got " + std::to_string(levels()));
  }
  for (std::size_t i = 0; i < channel_mult.size(); ++i) {
    if (channel_mult[i] <= 0) {
      fail(ErrorKind::config, source,
           "field 'channel_mult' entry " + std::to_string(i) + " must be positive, got " +
               std::to_string(channel_mult[i]));
    }
  }
  if (!(eps > 0.0) || !std::isfinite(eps)) {
    fail(ErrorKind::config, source,
         "field 'eps' must be a positive number, got " + std::to_string(eps));
  }
  // Every GroupNorm sees hidden_channels · mult channels (never num_channels or z_channels).
  for (std::int64_t l = 0; l < levels(); ++l) {
    if (level_channels(l) % num_groups != 0) {
      fail(ErrorKind::config, source,
           "level " + std::to_string(l) + " has " + std::to_string(level_channels(l)) +
               " channels (hidden_channels " + std::to_string(hidden_channels) +
               " × channel_mult " + std::to_string(channel_mult[static_cast<std::size_t>(l)]) +
               "), not divisible by num_groups " + std::to_string(num_groups));
    }
  }
  const std::int64_t factor = std::int64_t{1} << (levels() - 1);
  if (resolution % factor != 0) {
    fail(ErrorKind::config, source,
         "resolution " + std::to_string(resolution) + " is not divisible by 2^(levels-1) = " +
             std::to_string(factor) + " (" + std::to_string(levels()) + " levels in channel_mult)");
  }
}

VqganConfig VqganConfig::from_json(const json& config, const std::string& source) {
  if (!config.is_object()) fail(ErrorKind::config, source, "is not a JSON object");
  reject_unsupported(config, source);
  VqganConfig out;
  read_integer(config, source, "resolution", out.resolution);
  read_integer(config, source, "num_channels", out.num_channels);
  read_integer(config, source, "hidden_channels", out.hidden_channels);
  read_integer(config, source, "num_res_blocks", out.num_res_blocks);
  read_integer(config, source, "z_channels", out.z_channels);
  read_integer(config, source, "num_embeddings", out.num_embeddings);
  read_integer(config, source, "quantized_embed_dim", out.quantized_embed_dim);
  read_integer(config, source, "num_groups", out.num_groups);
  if (config.contains("channel_mult") && !config["channel_mult"].is_null()) {
    const json& mult = config["channel_mult"];
    if (!mult.is_array()) {
      fail(ErrorKind::config, source, "field 'channel_mult' must be a list, got " + mult.dump());
    }
    out.channel_mult.clear();
    for (const json& value : mult) {
      if (!value.is_number_integer()) {
        fail(ErrorKind::config, source,
             "field 'channel_mult' must hold integers, got " + mult.dump());
      }
      out.channel_mult.push_back(value.get<std::int64_t>());
    }
  }
  if (config.contains("eps") && !config["eps"].is_null()) {
    if (!config["eps"].is_number()) {
      fail(ErrorKind::config, source, "field 'eps' must be a number, got " + config["eps"].dump());
    }
    out.eps = config["eps"].get<double>();
  }
  return out;
}

json VqganConfig::to_json() const {
  return {{"resolution", resolution},
          {"num_channels", num_channels},
          {"hidden_channels", hidden_channels},
          {"channel_mult", channel_mult},
          {"num_res_blocks", num_res_blocks},
          {"attn_resolutions", json::array()},
          {"no_attn_mid_block", true},
          {"resample_with_conv", true},
          {"z_channels", z_channels},
          {"num_embeddings", num_embeddings},
          {"quantized_embed_dim", quantized_embed_dim},
          {"num_groups", num_groups},
          {"eps", eps}};
}

VqganConfig VqganConfig::load(const fs::path& path) {
  const auto [file, config] = read_config_file(path);
  if (!config.is_object()) fail(ErrorKind::config, file.string(), "is not a JSON object");
  const std::string source = file.string() + "' field 'vqgan";
  VqganConfig out = config.contains("vqgan") ? from_json(config["vqgan"], source) : VqganConfig{};
  out.validate(source);
  return out;
}

VqganConfig VqganConfig::preset(const std::string& name) {
  VqganConfig config;
  if (name == "lwm") return config;
  if (name == "tiny") {
    config.resolution = 32;
    config.hidden_channels = 32;
    config.channel_mult = {1, 2, 2};
    config.num_res_blocks = 1;
    config.z_channels = 16;
    config.num_embeddings = 32;
    config.quantized_embed_dim = 16;
    config.num_groups = 8;
    return config;
  }
  throw Error(ErrorKind::invalid_argument, "unknown VQGAN preset '" + name + "' (known: lwm, tiny)");
}

}  // namespace lwm
