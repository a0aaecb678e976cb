// Vqgan (vqgan.h): loading, and the encoder/quantizer/decoder graph of spec lwm-reference §3.4–3.6.
//
// The graph is written once, against a backend's handful of ops (conv, GroupNorm+SiLU, add,
// quantize, lookup, clip) on its own buffers; CpuBackend below implements them with the kernels of
// cpu/image_ops.h. A CUDA backend provides the same members over device buffers and runs the same
// GraphRunner.
#include "lwm/vqgan.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

#include "cpu/image_ops.h"
#include "lwm/error.h"
#include "lwm/ops.h"
#include "lwm/safetensors.h"
#include "vqgan/vqgan_network.h"

namespace lwm {
namespace {

namespace fs = std::filesystem;
using cpu::ConvGeometry;
using cpu::ImageShape;
using vqgan::Conv;
using vqgan::Network;
using vqgan::Norm;
using vqgan::Resnet;

class CpuBackend {
 public:
  using Buffer = std::vector<float>;

  static void reserve(Buffer& buffer, std::int64_t elements) {
    if (static_cast<std::int64_t>(buffer.size()) < elements) {
      buffer.resize(static_cast<std::size_t>(elements));
    }
  }

  // Returns the output's shape.
  ImageShape conv(const Buffer& x, const ImageShape& in, const Conv& conv, const ConvGeometry& g,
                  Buffer& y) const {
    const ImageShape out{in.batch, g.out_height, g.out_width, conv.out};
    reserve(y, out.numel());
    cpu::conv2d(x.data(), in, conv.kernel, conv.bias, g, y.data());
    return out;
  }

  // y may be x.
  void norm_silu(const Buffer& x, const ImageShape& shape, const Norm& norm, std::int64_t groups,
                 float eps, Buffer& y) const {
    reserve(y, shape.numel());
    cpu::group_norm(x.data(), shape, groups, norm.scale, norm.bias, eps, true, y.data());
  }

  void add(Buffer& y, const Buffer& x, std::int64_t n) const {
    cpu::add_inplace(y.data(), x.data(), n);
  }

  void quantize(const Buffer& z, std::int64_t n, const Tensor& codebook,
                const std::vector<float>& norms, std::int32_t* codes) const {
    cpu::vector_quantize(z.data(), n, codebook, norms, codes);
  }

  void lookup(const Tensor& codebook, std::span<const std::int32_t> codes, Buffer& out) const {
    reserve(out, static_cast<std::int64_t>(codes.size()) * codebook.dim(1));
    cpu::embedding(codebook, codes, out.data());
  }

  void clip(Buffer& x, std::int64_t n) const {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i)
      x[static_cast<std::size_t>(i)] = std::clamp(x[static_cast<std::size_t>(i)], -1.0f, 1.0f);
  }
};

// Reports progress in frames and checks for cancellation between network blocks.
class Checkpoints {
 public:
  Checkpoints(const ProgressCallback& callback, std::int64_t total, const char* what)
      : reporter_(callback, total, std::string("VQGAN ") + what, "frames") {}

  void report(std::int64_t done) {
    done_ = done;
    check();
  }
  // Throws Error(cancelled) when the callback asks to stop.
  void check() const { reporter_.report(done_); }

 private:
  ProgressReporter reporter_;
  std::int64_t done_ = 0;
};

template <typename Backend>
class GraphRunner {
 public:
  using Buffer = typename Backend::Buffer;

  GraphRunner(const Backend& backend, const VqganConfig& config, const Network& net,
              const std::vector<float>& codebook_norms, const Checkpoints& checkpoints)
      : b_(backend),
        config_(config),
        net_(net),
        codebook_norms_(codebook_norms),
        checkpoints_(checkpoints),
        eps_(static_cast<float>(config.eps)) {}

  // frames [n, R, R, C] → codes [n, grid²] (§3.4, §3.5).
  void encode(const float* frames, std::int64_t n, std::int32_t* codes) {
    ImageShape s{n, config_.resolution, config_.resolution, config_.num_channels};
    Backend::reserve(x_, s.numel());
    std::copy(frames, frames + s.numel(), x_.begin());
    s = conv_into_x(s, net_.encoder_in, ConvGeometry::same(3, s.height, s.width));
    for (const auto& level : net_.down) {
      for (const Resnet& block : level.blocks) s = resnet(s, block);
      if (level.has_resample) {
        s = conv_into_x(s, level.resample, ConvGeometry::downsample(s.height, s.width));
      }
    }
    for (const Resnet& block : net_.encoder_mid) s = resnet(s, block);
    b_.norm_silu(x_, s, net_.encoder_norm, config_.num_groups, eps_, x_);
    s = conv_into_x(s, net_.encoder_out, ConvGeometry::same(3, s.height, s.width));
    s = conv_into_x(s, net_.quant_conv, ConvGeometry::same(1, s.height, s.width));
    b_.quantize(x_, s.pixels(), net_.codebook, codebook_norms_, codes);
  }

  // codes [n, grid²] (checked by the caller) → frames [n, R, R, C] clipped to [-1, 1] (§3.6).
  void decode(std::span<const std::int32_t> codes, std::int64_t n, float* frames) {
    const std::int64_t grid = config_.grid_size();
    b_.lookup(net_.codebook, codes, x_);
    ImageShape s{n, grid, grid, config_.quantized_embed_dim};
    s = conv_into_x(s, net_.post_quant_conv, ConvGeometry::same(1, grid, grid));
    s = conv_into_x(s, net_.decoder_in, ConvGeometry::same(3, grid, grid));
    for (const Resnet& block : net_.decoder_mid) s = resnet(s, block);
    for (const auto& level : net_.up) {
      for (const Resnet& block : level.blocks) s = resnet(s, block);
      if (level.has_resample) {
        s = conv_into_x(s, level.resample, ConvGeometry::upsample2(s.height, s.width));
      }
    }
    b_.norm_silu(x_, s, net_.decoder_norm, config_.num_groups, eps_, x_);
    s = conv_into_x(s, net_.decoder_out, ConvGeometry::same(3, s.height, s.width));
    b_.clip(x_, s.numel());
    std::copy(x_.begin(), x_.begin() + s.numel(), frames);
  }

 private:
  ImageShape conv_into_x(const ImageShape& s, const Conv& conv, const ConvGeometry& g) {
    const ImageShape out = b_.conv(x_, s, conv, g, t_);
    std::swap(x_, t_);
    return out;
  }

  // §3.3 ResnetBlock on x_: out = skip + Conv(SiLU(GN(Conv(SiLU(GN(x)))))).
  ImageShape resnet(const ImageShape& s, const Resnet& r) {
    const auto same3 = ConvGeometry::same(3, s.height, s.width);
    b_.norm_silu(x_, s, r.norm0, config_.num_groups, eps_, t_);
    const ImageShape out = b_.conv(t_, s, r.conv0, same3, h_);
    b_.norm_silu(h_, out, r.norm1, config_.num_groups, eps_, h_);
    b_.conv(h_, out, r.conv1, same3, t_);
    if (r.has_shortcut) {
      b_.conv(x_, s, r.shortcut, ConvGeometry::same(1, s.height, s.width), h_);
      b_.add(t_, h_, out.numel());
    } else {
      b_.add(t_, x_, out.numel());
    }
    std::swap(x_, t_);
    checkpoints_.check();
    return out;
  }

  const Backend& b_;
  const VqganConfig& config_;
  const Network& net_;
  const std::vector<float>& codebook_norms_;
  const Checkpoints& checkpoints_;
  float eps_;
  Buffer x_, t_, h_;
};

// Our files say what they are in the safetensors metadata; converted files may say nothing.
constexpr const char* kFormatKey = "lwm_format";
constexpr const char* kFormatName = "lwm-vqgan";
constexpr const char* kFormatVersionKey = "lwm_format_version";
constexpr const char* kFormatVersion = "1";

void check_format(const SafetensorsFile& file) {
  const auto& meta = file.metadata();
  const auto format = meta.find(kFormatKey);
  if (format != meta.end() && format->second != kFormatName) {
    throw Error(ErrorKind::file_format, "'" + file.path().string() + "' is a '" + format->second +
                                            "' file, not VQGAN weights ('" + kFormatName + "')");
  }
  const auto version = meta.find(kFormatVersionKey);
  if (format != meta.end() && version != meta.end() && version->second != kFormatVersion) {
    throw Error(ErrorKind::unsupported, "'" + file.path().string() + "' is " + kFormatName +
                                            " version " + version->second +
                                            "; this build reads version " + kFormatVersion);
  }
}

std::int64_t frames_per_pass(const VqganConfig& config, const VqganRunOptions& options,
                             std::int64_t frames) {
  if (options.frames_per_pass < 0 || options.memory_budget_bytes < 0) {
    throw Error(ErrorKind::invalid_argument, "VQGAN run options must not be negative");
  }
  std::int64_t per_pass = options.frames_per_pass;
  if (per_pass == 0) {
    // Three live activations per frame (input, branch, temporary), float32.
    const std::int64_t frame_bytes = 3 * 4 * vqgan::max_activation_elements(config);
    per_pass = options.memory_budget_bytes / std::max<std::int64_t>(frame_bytes, 1);
  }
  return std::clamp<std::int64_t>(per_pass, 1, std::max<std::int64_t>(frames, 1));
}

}  // namespace

struct Vqgan::Weights {
  std::unique_ptr<SafetensorsFile> file;
  Network net;
  std::vector<float> codebook_norms;
};

Vqgan::~Vqgan() = default;

std::unique_ptr<Vqgan> Vqgan::load(const fs::path& path) {
  if (fs::is_directory(path)) {
    const fs::path weights = path / "vqgan.safetensors";
    if (!fs::exists(weights)) {
      throw Error(ErrorKind::io, "model directory '" + path.string() +
                                     "' has no vqgan.safetensors (convert LWM's vqgan pickle "
                                     "with `lwm convert`)");
    }
    const fs::path config = path / "config.json";
    return load(weights, fs::exists(config) ? VqganConfig::load(config) : VqganConfig{});
  }
  if (!fs::exists(path)) {
    throw Error(ErrorKind::io, "VQGAN weights '" + path.string() + "' do not exist");
  }
  const fs::path config = path.parent_path() / "config.json";
  return load(path, fs::exists(config) ? VqganConfig::load(config) : VqganConfig{});
}

std::unique_ptr<Vqgan> Vqgan::load(const fs::path& safetensors_file, const VqganConfig& config) {
  config.validate(safetensors_file.string());
  std::unique_ptr<Vqgan> model(new Vqgan());
  model->config_ = config;
  model->path_ = safetensors_file;
  model->weights_ = std::make_unique<Weights>();
  auto& w = *model->weights_;
  w.file = std::make_unique<SafetensorsFile>(safetensors_file);
  check_format(*w.file);
  const SafetensorsFile& file = *w.file;
  const std::string where = "VQGAN weights '" + safetensors_file.string() + "'";
  std::vector<std::string> expected;
  const vqgan::ParamSource source = [&](const std::string& name, const Shape& shape,
                                        vqgan::ParamKind) {
    expected.push_back(name);
    if (!file.contains(name)) {
      throw Error(ErrorKind::file_format,
                  where + ": tensor '" + name + "' " + shape_string(shape) +
                      " is missing (does the VQGAN config in config.json match this file?)");
    }
    Tensor tensor = file.tensor(name);
    if (tensor.shape() != shape) {
      throw Error(ErrorKind::file_format,
                  where + ": tensor '" + name + "' has shape " + shape_string(tensor.shape()) +
                      ", the VQGAN config needs " + shape_string(shape) +
                      " (does the VQGAN config in config.json match this file?)");
    }
    return tensor;
  };
  w.net = vqgan::build_network(config, source);
  std::sort(expected.begin(), expected.end());
  for (const std::string& name : file.names()) {
    if (!std::binary_search(expected.begin(), expected.end(), name)) {
      throw Error(ErrorKind::file_format,
                  where + ": unexpected tensor '" + name +
                      "' (not part of the VQGAN the config describes; does the config match?)");
    }
  }
  w.codebook_norms = cpu::codebook_squared_norms(w.net.codebook);
  return model;
}

std::vector<std::int32_t> Vqgan::encode(const Tensor& frames, const ProgressCallback& progress,
                                        const VqganRunOptions& options) const {
  const std::int64_t r = config_.resolution;
  const Shape expected{frames.rank() == 4 ? frames.dim(0) : -1, r, r, config_.num_channels};
  if (frames.rank() != 4 || frames.shape() != expected) {
    throw Error(ErrorKind::invalid_argument,
                "VQGAN encode: frames have shape " + shape_string(frames.shape()) +
                    "; expected [frames, " + std::to_string(r) + ", " + std::to_string(r) + ", " +
                    std::to_string(config_.num_channels) + "] (resize and crop to " +
                    std::to_string(r) + "×" + std::to_string(r) + ", spec §3.1)");
  }
  const std::int64_t n = frames.dim(0);
  const Tensor f32 = frames.dtype() == DType::f32 ? frames : frames.to(DType::f32);
  const float* pixels = f32.f32();
  const std::int64_t frame_elements = r * r * config_.num_channels;
  for (std::int64_t i = 0; i < n * frame_elements; ++i) {
    // Negated test so that NaN fails too.
    if (!(pixels[i] >= -1.0f && pixels[i] <= 1.0f)) {
      const std::int64_t pixel = (i % frame_elements) / config_.num_channels;
      throw Error(ErrorKind::invalid_argument,
                  "VQGAN encode: frame " + std::to_string(i / frame_elements) + " pixel (row " +
                      std::to_string(pixel / r) + ", column " + std::to_string(pixel % r) +
                      ") has value " + std::to_string(pixels[i]) +
                      " outside [-1, 1] (pixels are x/127.5 - 1, spec §3.1)");
    }
  }
  const std::int64_t tokens = config_.tokens_per_frame();
  std::vector<std::int32_t> codes(static_cast<std::size_t>(n * tokens));
  Checkpoints checkpoints(progress, n, "encode");
  checkpoints.report(0);
  const std::int64_t per_pass = frames_per_pass(config_, options, n);
  const CpuBackend backend;
  GraphRunner<CpuBackend> runner(backend, config_, weights_->net, weights_->codebook_norms,
                                 checkpoints);
  for (std::int64_t f0 = 0; f0 < n; f0 += per_pass) {
    const std::int64_t count = std::min(per_pass, n - f0);
    runner.encode(pixels + f0 * frame_elements, count, codes.data() + f0 * tokens);
    checkpoints.report(f0 + count);
  }
  return codes;
}

Tensor Vqgan::decode(std::span<const std::int32_t> codes, const ProgressCallback& progress,
                     const VqganRunOptions& options) const {
  const std::int64_t tokens = config_.tokens_per_frame();
  if (codes.empty() || static_cast<std::int64_t>(codes.size()) % tokens != 0) {
    throw Error(ErrorKind::invalid_argument, "VQGAN decode: " + std::to_string(codes.size()) +
                                                 " codes are not a whole number of frames of " +
                                                 std::to_string(tokens) + " codes (" +
                                                 std::to_string(config_.grid_size()) + "×" +
                                                 std::to_string(config_.grid_size()) + ")");
  }
  const std::int64_t n = static_cast<std::int64_t>(codes.size()) / tokens;
  for (std::size_t i = 0; i < codes.size(); ++i) {
    if (codes[i] < 0 || codes[i] >= config_.num_embeddings) {
      throw Error(ErrorKind::invalid_argument,
                  "VQGAN decode: code " + std::to_string(codes[i]) + " at frame " +
                      std::to_string(static_cast<std::int64_t>(i) / tokens) + " position " +
                      std::to_string(static_cast<std::int64_t>(i) % tokens) +
                      " is outside the codebook [0, " + std::to_string(config_.num_embeddings) +
                      ")");
    }
  }
  const std::int64_t r = config_.resolution;
  const std::int64_t frame_elements = r * r * config_.num_channels;
  Tensor frames = Tensor::zeros(DType::f32, {n, r, r, config_.num_channels});
  float* out = frames.mutable_f32();
  Checkpoints checkpoints(progress, n, "decode");
  checkpoints.report(0);
  const std::int64_t per_pass = frames_per_pass(config_, options, n);
  const CpuBackend backend;
  GraphRunner<CpuBackend> runner(backend, config_, weights_->net, weights_->codebook_norms,
                                 checkpoints);
  for (std::int64_t f0 = 0; f0 < n; f0 += per_pass) {
    const std::int64_t count = std::min(per_pass, n - f0);
    runner.decode(codes.subspan(static_cast<std::size_t>(f0 * tokens),
                                static_cast<std::size_t>(count * tokens)),
                  count, out + f0 * frame_elements);
    checkpoints.report(f0 + count);
  }
  return frames;
}

void frames_to_uint8(std::span<const float> frames, std::span<std::uint8_t> out) {
  if (frames.size() != out.size()) {
    throw Error(ErrorKind::invalid_argument, "frames_to_uint8: " + std::to_string(frames.size()) +
                                                 " values into " + std::to_string(out.size()) +
                                                 " bytes");
  }
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const float x = std::isnan(frames[i]) ? -1.0f : std::clamp(frames[i], -1.0f, 1.0f);
    out[i] = static_cast<std::uint8_t>((x + 1.0f) * 127.5f);  // truncation, as §3.6
  }
}

void frames_from_uint8(std::span<const std::uint8_t> pixels, std::span<float> out) {
  if (pixels.size() != out.size()) {
    throw Error(ErrorKind::invalid_argument, "frames_from_uint8: " + std::to_string(pixels.size()) +
                                                 " bytes into " + std::to_string(out.size()) +
                                                 " values");
  }
  for (std::size_t i = 0; i < pixels.size(); ++i)
    out[i] = static_cast<float>(pixels[i]) / 127.5f - 1.0f;
}

}  // namespace lwm
