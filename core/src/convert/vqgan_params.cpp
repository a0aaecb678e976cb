#include "vqgan_params.h"

#include <nlohmann/json.hpp>

#include "lwm/error.h"

namespace lwm::convert {
namespace {

void conv(std::map<std::string, Shape>& out, const std::string& name, std::int64_t k,
          std::int64_t in, std::int64_t o) {
  out[name + ".kernel"] = {k, k, in, o};  // HWIO (spec §3.3)
  out[name + ".bias"] = {o};
}

void group_norm(std::map<std::string, Shape>& out, const std::string& name, std::int64_t c) {
  out[name + ".scale"] = {c};
  out[name + ".bias"] = {c};
}

// ResnetBlock(in → out), spec §3.7: GroupNorm_0, Conv_0, GroupNorm_1, Conv_1, Conv_2 when in ≠ out.
void resnet(std::map<std::string, Shape>& out, const std::string& name, std::int64_t in,
            std::int64_t o) {
  group_norm(out, name + ".GroupNorm_0", in);
  conv(out, name + ".Conv_0", 3, in, o);
  group_norm(out, name + ".GroupNorm_1", o);
  conv(out, name + ".Conv_1", 3, o, o);
  if (in != o) conv(out, name + ".Conv_2", 1, in, o);
}

const Shape& require(const std::map<std::string, Shape>& shapes, const std::string& name,
                     std::size_t rank, const std::string& source) {
  const auto found = shapes.find(name);
  if (found == shapes.end()) {
    throw Error(ErrorKind::file_format, "VQGAN '" + source + "' has no parameter '" + name + "'");
  }
  if (found->second.size() != rank) {
    throw Error(ErrorKind::file_format, "VQGAN '" + source + "': '" + name + "' has shape " +
                                            shape_string(found->second) + ", expected " +
                                            std::to_string(rank) + " dimensions");
  }
  return found->second;
}

}  // namespace

nlohmann::json VqganConfig::to_json(const std::string& weights_file) const {
  return {
      {"format", "lwm-vqgan"},
      {"format_version", 1},
      {"weights", weights_file},
      {"resolution", resolution},
      {"num_channels", num_channels},
      {"hidden_channels", hidden_channels},
      {"channel_mult", channel_mult},
      {"num_res_blocks", num_res_blocks},
      {"attn_resolutions", nlohmann::json::array()},
      {"no_attn_mid_block", true},
      {"z_channels", z_channels},
      {"num_embeddings", num_embeddings},
      {"quantized_embed_dim", quantized_embed_dim},
      {"dropout", 0.0},
      {"resample_with_conv", true},
  };
}

std::map<std::string, Shape> vqgan_parameter_shapes(const VqganConfig& c) {
  std::map<std::string, Shape> out;
  const auto levels = static_cast<std::int64_t>(c.channel_mult.size());
  auto width = [&](std::int64_t level) {
    return c.hidden_channels * c.channel_mult[static_cast<std::size_t>(level)];
  };
  const std::int64_t top = width(levels - 1);

  // Encoder (spec §3.4).
  conv(out, "encoder.Conv_0", 3, c.num_channels, c.hidden_channels);
  for (std::int64_t l = 0; l < levels; ++l) {
    const std::string block = "encoder.DownsamplingBlock_" + std::to_string(l);
    std::int64_t in = l == 0 ? c.hidden_channels : width(l - 1);
    for (std::int64_t r = 0; r < c.num_res_blocks; ++r) {
      resnet(out, block + ".ResnetBlock_" + std::to_string(r), in, width(l));
      in = width(l);
    }
    if (l < levels - 1) conv(out, block + ".Downsample_0.Conv_0", 3, width(l), width(l));
  }
  for (int r = 0; r < 2; ++r)
    resnet(out, "encoder.MidBlock_0.ResnetBlock_" + std::to_string(r), top, top);
  group_norm(out, "encoder.GroupNorm_0", top);
  conv(out, "encoder.Conv_1", 3, top, c.z_channels);

  // Quantizer and the 1×1 convolutions around it (spec §3.5, §3.7).
  out["quantize.embeddings"] = {c.num_embeddings, c.quantized_embed_dim};
  conv(out, "quant_conv", 1, c.z_channels, c.quantized_embed_dim);
  conv(out, "post_quant_conv", 1, c.quantized_embed_dim, c.z_channels);

  // Decoder (spec §3.6): UpsamplingBlock_0 is the deepest level.
  conv(out, "decoder.Conv_0", 3, c.z_channels, top);
  for (int r = 0; r < 2; ++r)
    resnet(out, "decoder.MidBlock_0.ResnetBlock_" + std::to_string(r), top, top);
  std::int64_t in = top;
  for (std::int64_t i = 0; i < levels; ++i) {
    const std::int64_t level = levels - 1 - i;
    const std::string block = "decoder.UpsamplingBlock_" + std::to_string(i);
    for (std::int64_t r = 0; r <= c.num_res_blocks; ++r) {
      resnet(out, block + ".ResnetBlock_" + std::to_string(r), in, width(level));
      in = width(level);
    }
    if (i < levels - 1) conv(out, block + ".Upsample_0.Conv_0", 3, width(level), width(level));
  }
  group_norm(out, "decoder.GroupNorm_0", c.hidden_channels);
  conv(out, "decoder.Conv_1", 3, c.hidden_channels, c.num_channels);
  return out;
}

VqganConfig infer_vqgan_config(const std::map<std::string, Shape>& shapes,
                               const std::string& source) {
  VqganConfig c;
  const Shape& conv_in = require(shapes, "encoder.Conv_0.kernel", 4, source);
  c.num_channels = conv_in[2];
  c.hidden_channels = conv_in[3];
  if (c.hidden_channels <= 0) {
    throw Error(ErrorKind::file_format,
                "VQGAN '" + source + "': encoder.Conv_0 has no output channels");
  }
  c.channel_mult.clear();
  for (int l = 0;; ++l) {
    const std::string name =
        "encoder.DownsamplingBlock_" + std::to_string(l) + ".ResnetBlock_0.Conv_0.kernel";
    if (shapes.count(name) == 0) break;
    const Shape& kernel = require(shapes, name, 4, source);
    if (kernel[3] % c.hidden_channels != 0 || kernel[3] <= 0) {
      throw Error(ErrorKind::file_format,
                  "VQGAN '" + source + "': '" + name + "' has " + std::to_string(kernel[3]) +
                      " output channels, not a multiple of " + std::to_string(c.hidden_channels));
    }
    c.channel_mult.push_back(kernel[3] / c.hidden_channels);
    if (l > 64) throw Error(ErrorKind::file_format, "VQGAN '" + source + "' has too many levels");
  }
  if (c.channel_mult.empty()) {
    require(shapes, "encoder.DownsamplingBlock_0.ResnetBlock_0.Conv_0.kernel", 4, source);
  }
  c.num_res_blocks = 0;
  while (shapes.count("encoder.DownsamplingBlock_0.ResnetBlock_" +
                      std::to_string(c.num_res_blocks) + ".Conv_0.kernel") != 0 &&
         c.num_res_blocks < 64) {
    ++c.num_res_blocks;
  }
  c.z_channels = require(shapes, "encoder.Conv_1.kernel", 4, source)[3];
  const Shape& codebook = require(shapes, "quantize.embeddings", 2, source);
  c.num_embeddings = codebook[0];
  c.quantized_embed_dim = codebook[1];
  return c;
}

}  // namespace lwm::convert
