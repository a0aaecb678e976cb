#include "vqgan/vqgan_network.h"

#include <algorithm>

namespace lwm::vqgan {
namespace {

// A recording source hands back empty tensors: nothing to widen then.
std::vector<float> widened(const Tensor& tensor) {
  return tensor.raw() == nullptr ? std::vector<float>{} : tensor.to_floats();
}

class Builder {
 public:
  Builder(const VqganConfig& config, const ParamSource& source)
      : config_(config), source_(source) {}

  Conv conv(const std::string& prefix, std::int64_t size, std::int64_t in, std::int64_t out) const {
    Conv c;
    c.size = size;
    c.in = in;
    c.out = out;
    c.kernel = source_(prefix + ".kernel", {size, size, in, out}, ParamKind::conv_kernel);
    c.bias = source_(prefix + ".bias", {out}, ParamKind::conv_bias);
    return c;
  }

  Norm norm(const std::string& prefix, std::int64_t channels) const {
    Norm n;
    n.scale = widened(source_(prefix + ".scale", {channels}, ParamKind::norm_scale));
    n.bias = widened(source_(prefix + ".bias", {channels}, ParamKind::norm_bias));
    return n;
  }

  // Flax names a ResnetBlock's children in creation order: GroupNorm_0, Conv_0, GroupNorm_1,
  // Conv_1, then Conv_2 for the 1×1 shortcut (§3.7).
  Resnet resnet(const std::string& prefix, std::int64_t in, std::int64_t out) const {
    Resnet r;
    r.in = in;
    r.out = out;
    r.norm0 = norm(prefix + ".GroupNorm_0", in);
    r.conv0 = conv(prefix + ".Conv_0", 3, in, out);
    r.norm1 = norm(prefix + ".GroupNorm_1", out);
    r.conv1 = conv(prefix + ".Conv_1", 3, out, out);
    r.has_shortcut = in != out;
    if (r.has_shortcut) r.shortcut = conv(prefix + ".Conv_2", 1, in, out);
    return r;
  }

  std::vector<Resnet> mid(const std::string& prefix, std::int64_t channels) const {
    return {resnet(prefix + ".MidBlock_0.ResnetBlock_0", channels, channels),
            resnet(prefix + ".MidBlock_0.ResnetBlock_1", channels, channels)};
  }

  Network build() const {
    const VqganConfig& c = config_;
    const std::int64_t levels = c.levels();
    const std::int64_t top = c.level_channels(levels - 1);
    Network net;
    // §3.4 encoder.
    net.encoder_in = conv("encoder.Conv_0", 3, c.num_channels, c.hidden_channels);
    std::int64_t channels = c.hidden_channels;
    for (std::int64_t l = 0; l < levels; ++l) {
      const std::string prefix = "encoder.DownsamplingBlock_" + std::to_string(l);
      Level level;
      level.index = l;
      const std::int64_t out = c.level_channels(l);
      for (std::int64_t b = 0; b < c.num_res_blocks; ++b) {
        level.blocks.push_back(resnet(prefix + ".ResnetBlock_" + std::to_string(b), channels, out));
        channels = out;
      }
      level.has_resample = l != levels - 1;
      if (level.has_resample) level.resample = conv(prefix + ".Downsample_0.Conv_0", 3, out, out);
      net.down.push_back(std::move(level));
    }
    net.encoder_mid = mid("encoder", top);
    net.encoder_norm = norm("encoder.GroupNorm_0", top);
    net.encoder_out = conv("encoder.Conv_1", 3, top, c.z_channels);
    net.quant_conv = conv("quant_conv", 1, c.z_channels, c.quantized_embed_dim);
    // §3.5 codebook.
    net.codebook = source_("quantize.embeddings", {c.num_embeddings, c.quantized_embed_dim},
                           ParamKind::codebook);
    // §3.6 decoder.
    net.post_quant_conv = conv("post_quant_conv", 1, c.quantized_embed_dim, c.z_channels);
    net.decoder_in = conv("decoder.Conv_0", 3, c.z_channels, top);
    net.decoder_mid = mid("decoder", top);
    channels = top;
    for (std::int64_t k = 0; k < levels; ++k) {
      const std::int64_t l = levels - 1 - k;  // UpsamplingBlock_0 is the deepest level (§3.7)
      const std::string prefix = "decoder.UpsamplingBlock_" + std::to_string(k);
      Level level;
      level.index = l;
      const std::int64_t out = c.level_channels(l);
      for (std::int64_t b = 0; b < c.num_res_blocks + 1; ++b) {
        level.blocks.push_back(resnet(prefix + ".ResnetBlock_" + std::to_string(b), channels, out));
        channels = out;
      }
      level.has_resample = l != 0;
      if (level.has_resample) level.resample = conv(prefix + ".Upsample_0.Conv_0", 3, out, out);
      net.up.push_back(std::move(level));
    }
    net.decoder_norm = norm("decoder.GroupNorm_0", channels);
    net.decoder_out = conv("decoder.Conv_1", 3, channels, c.num_channels);
    return net;
  }

 private:
  const VqganConfig& config_;
  const ParamSource& source_;
};

}  // namespace

Network build_network(const VqganConfig& config, const ParamSource& source) {
  return Builder(config, source).build();
}

std::vector<ParamSpec> parameter_plan(const VqganConfig& config) {
  std::vector<ParamSpec> plan;
  const ParamSource record = [&plan](const std::string& name, const Shape& shape, ParamKind kind) {
    plan.push_back({name, shape, kind});
    return Tensor();
  };
  build_network(config, record);
  return plan;
}

std::int64_t max_activation_elements(const VqganConfig& config) {
  const std::int64_t levels = config.levels();
  std::int64_t most = config.resolution * config.resolution *
                      std::max({config.num_channels, config.hidden_channels});
  for (std::int64_t l = 0; l < levels; ++l) {
    const std::int64_t side = config.resolution >> l;
    // At level l's size live the widths of levels l-1 (encoder input), l, and l+1 (the decoder's
    // input to this level and its upsampled output).
    std::int64_t width = config.level_channels(l);
    if (l > 0) width = std::max(width, config.level_channels(l - 1));
    if (l + 1 < levels) width = std::max(width, config.level_channels(l + 1));
    most = std::max(most, side * side * width);
  }
  const std::int64_t grid = config.grid_size();
  return std::max(most, grid * grid * std::max(config.z_channels, config.quantized_embed_dim));
}

}  // namespace lwm::vqgan
