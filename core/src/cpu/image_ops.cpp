// VQGAN kernels on the CPU (image_ops.h).
//
// Convolution is im2col + GEMM: output pixels are cut into chunks whose patch matrix
// [pixels, k·k·in] fits a fixed budget; each chunk is gathered in parallel and multiplied by the
// HWIO kernel read as a [k·k·in, out] matrix through cpu::linear (the transformer's threaded Eigen
// GEMM, which also widens bf16/f16 kernels tile by tile). A 1×1 stride-1 convolution needs no
// gathering: the activations already are the patch matrix.
#include "cpu/image_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "lwm/error.h"
#include "lwm/linear.h"
#include "lwm/ops.h"

namespace lwm::cpu {
namespace {

// Bytes of patch matrix gathered per GEMM call: large enough that every chunk feeds both threads
// many row tiles, small enough to stay out of the way of the activations.
constexpr std::int64_t kPatchBudgetBytes = std::int64_t{24} << 20;
// GroupNorm partial sums are taken over this many fixed pixel ranges per image and then added in
// order, so results do not depend on the thread count.
constexpr std::int64_t kNormPartitions = 64;
// Rows of distances held at once by the quantizer.
constexpr std::int64_t kQuantizeBudgetBytes = std::int64_t{32} << 20;

[[noreturn]] void fail(const std::string& what, const std::string& problem) {
  throw Error(ErrorKind::invalid_argument, what + ": " + problem);
}

std::vector<float> bias_values(const Tensor& bias, std::int64_t out) {
  if (!bias.defined() || bias.numel() == 0)
    return std::vector<float>(static_cast<std::size_t>(out), 0.0f);
  if (bias.rank() != 1 || bias.dim(0) != out) {
    fail("conv2d", "bias " + shape_string(bias.shape()) + " does not match " + std::to_string(out) +
                       " output channels");
  }
  return bias.to_floats();
}

// Gathers the patches of output pixels [p0, p0 + count) into rows of `patches`.
void gather_patches(const float* x, const ImageShape& in, const ConvGeometry& g, std::int64_t p0,
                    std::int64_t count, float* patches) {
  const std::int64_t c = in.channels;
  const std::int64_t k = g.kernel;
  const std::int64_t row = k * k * c;
  const std::int64_t virtual_h = in.height * g.upsample;
  const std::int64_t virtual_w = in.width * g.upsample;
  const std::int64_t per_image = g.out_height * g.out_width;
  const auto channel_bytes = static_cast<std::size_t>(c) * sizeof(float);
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t p = p0 + i;
    const std::int64_t b = p / per_image;
    const std::int64_t oy = (p % per_image) / g.out_width;
    const std::int64_t ox = p % g.out_width;
    const float* image = x + b * in.height * in.width * c;
    float* dst = patches + i * row;
    for (std::int64_t ky = 0; ky < k; ++ky) {
      const std::int64_t vy = oy * g.stride - g.pad_top + ky;
      for (std::int64_t kx = 0; kx < k; ++kx, dst += c) {
        const std::int64_t vx = ox * g.stride - g.pad_left + kx;
        if (vy < 0 || vy >= virtual_h || vx < 0 || vx >= virtual_w) {
          std::memset(dst, 0, channel_bytes);
        } else {
          const std::int64_t sy = vy / g.upsample;
          const std::int64_t sx = vx / g.upsample;
          std::memcpy(dst, image + (sy * in.width + sx) * c, channel_bytes);
        }
      }
    }
  }
}

void add_bias(float* y, std::int64_t rows, const std::vector<float>& bias) {
  const auto out = static_cast<std::int64_t>(bias.size());
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    float* dst = y + r * out;
    for (std::int64_t o = 0; o < out; ++o) dst[o] += bias[static_cast<std::size_t>(o)];
  }
}

}  // namespace

ConvGeometry ConvGeometry::same(std::int64_t kernel, std::int64_t height, std::int64_t width) {
  return {kernel, 1, kernel / 2, kernel / 2, 1, height, width};
}

ConvGeometry ConvGeometry::downsample(std::int64_t height, std::int64_t width) {
  // Padded size h+1, VALID 3×3 stride 2: floor((h + 1 − 3) / 2) + 1 rows (none when h < 2).
  const auto windows = [](std::int64_t size) { return size < 2 ? 0 : (size - 2) / 2 + 1; };
  return {3, 2, 0, 0, 1, windows(height), windows(width)};
}

ConvGeometry ConvGeometry::upsample2(std::int64_t height, std::int64_t width) {
  return {3, 1, 1, 1, 2, 2 * height, 2 * width};
}

void conv2d(const float* x, const ImageShape& in, const Tensor& kernel, const Tensor& bias,
            const ConvGeometry& g, float* y) {
  const std::int64_t k = g.kernel;
  if (kernel.rank() != 4 || kernel.dim(0) != k || kernel.dim(1) != k ||
      kernel.dim(2) != in.channels) {
    fail("conv2d", "kernel " + shape_string(kernel.shape()) + " does not match a " +
                       std::to_string(k) + "×" + std::to_string(k) + " convolution of " +
                       std::to_string(in.channels) + " input channels (HWIO expected)");
  }
  if (in.batch < 0 || in.height <= 0 || in.width <= 0 || g.stride <= 0 || g.upsample <= 0 ||
      g.out_height <= 0 || g.out_width <= 0) {
    fail("conv2d", "empty or negative image geometry (input " + std::to_string(in.height) + "×" +
                       std::to_string(in.width) + ", output " + std::to_string(g.out_height) + "×" +
                       std::to_string(g.out_width) + ")");
  }
  const std::int64_t out = kernel.dim(3);
  const std::int64_t patch = k * k * in.channels;
  const std::vector<float> bias_f32 = bias_values(bias, out);
  const Linear matrix{kernel.reshaped({patch, out}), MatrixLayout::in_out};
  const std::int64_t pixels = in.batch * g.out_height * g.out_width;
  if (pixels == 0) return;

  const bool pointwise = k == 1 && g.stride == 1 && g.upsample == 1 && g.pad_top == 0 &&
                         g.pad_left == 0 && g.out_height == in.height && g.out_width == in.width;
  if (pointwise) {
    linear(x, pixels, matrix, y);
  } else {
    const std::int64_t row_bytes = patch * static_cast<std::int64_t>(sizeof(float));
    const std::int64_t chunk = std::clamp<std::int64_t>(kPatchBudgetBytes / row_bytes, 1, pixels);
    std::vector<float> patches(static_cast<std::size_t>(chunk * patch));
    for (std::int64_t p0 = 0; p0 < pixels; p0 += chunk) {
      const std::int64_t count = std::min(chunk, pixels - p0);
      gather_patches(x, in, g, p0, count, patches.data());
      linear(patches.data(), count, matrix, y + p0 * out);
    }
  }
  add_bias(y, pixels, bias_f32);
}

void group_norm(const float* x, const ImageShape& shape, std::int64_t groups,
                std::span<const float> scale, std::span<const float> bias, float eps, bool silu,
                float* y) {
  const std::int64_t c = shape.channels;
  if (groups <= 0 || c % groups != 0) {
    fail("group_norm", std::to_string(c) + " channels cannot be split into " +
                           std::to_string(groups) + " groups");
  }
  if (static_cast<std::int64_t>(scale.size()) != c || static_cast<std::int64_t>(bias.size()) != c) {
    fail("group_norm", "scale/bias of " + std::to_string(scale.size()) + "/" +
                           std::to_string(bias.size()) + " values for " + std::to_string(c) +
                           " channels");
  }
  const std::int64_t hw = shape.height * shape.width;
  const std::int64_t per_group = c / groups;
  if (hw == 0 || c == 0) return;
  const std::int64_t parts = std::min(kNormPartitions, hw);
  // Per-channel sums for each (image, partition), then per-group statistics.
  std::vector<double> sums(static_cast<std::size_t>(shape.batch * parts * c * 2), 0.0);
#pragma omp parallel for collapse(2) schedule(static)
  for (std::int64_t b = 0; b < shape.batch; ++b) {
    for (std::int64_t part = 0; part < parts; ++part) {
      double* sum = sums.data() + ((b * parts + part) * c) * 2;
      double* sum_sq = sum + c;
      const std::int64_t begin = hw * part / parts;
      const std::int64_t end = hw * (part + 1) / parts;
      for (std::int64_t p = begin; p < end; ++p) {
        const float* v = x + (b * hw + p) * c;
        for (std::int64_t ch = 0; ch < c; ++ch) {
          const double value = v[ch];
          sum[ch] += value;
          sum_sq[ch] += value * value;
        }
      }
    }
  }
  // Per (image, channel): the multiplier rsqrt(var + eps)·scale and the group mean.
  std::vector<float> multiplier(static_cast<std::size_t>(shape.batch * c));
  std::vector<float> mean_of(static_cast<std::size_t>(shape.batch * c));
  const double count = static_cast<double>(hw * per_group);
  for (std::int64_t b = 0; b < shape.batch; ++b) {
    for (std::int64_t group = 0; group < groups; ++group) {
      double sum = 0.0, sum_sq = 0.0;
      for (std::int64_t part = 0; part < parts; ++part) {
        const double* partial = sums.data() + ((b * parts + part) * c) * 2;
        for (std::int64_t ch = group * per_group; ch < (group + 1) * per_group; ++ch) {
          sum += partial[ch];
          sum_sq += partial[c + ch];
        }
      }
      // §3.3: float32 statistics, variance E[x²] − E[x]² clamped at 0.
      const auto mean = static_cast<float>(sum / count);
      const auto mean_sq = static_cast<float>(sum_sq / count);
      const float var = std::max(0.0f, mean_sq - mean * mean);
      const float inv = 1.0f / std::sqrt(var + eps);
      for (std::int64_t ch = group * per_group; ch < (group + 1) * per_group; ++ch) {
        const auto i = static_cast<std::size_t>(b * c + ch);
        multiplier[i] = inv * scale[static_cast<std::size_t>(ch)];
        mean_of[i] = mean;
      }
    }
  }
#pragma omp parallel for schedule(static)
  for (std::int64_t p = 0; p < shape.pixels(); ++p) {
    const std::int64_t b = p / hw;
    const float* mul = multiplier.data() + b * c;
    const float* mean = mean_of.data() + b * c;
    const float* in = x + p * c;
    float* out = y + p * c;
    for (std::int64_t ch = 0; ch < c; ++ch) {
      const float v = (in[ch] - mean[ch]) * mul[ch] + bias[static_cast<std::size_t>(ch)];
      out[ch] = silu ? v / (1.0f + std::exp(-v)) : v;
    }
  }
}

std::vector<float> codebook_squared_norms(const Tensor& codebook) {
  if (codebook.rank() != 2) {
    fail("vector_quantize",
         "codebook must be [entries, dim], got " + shape_string(codebook.shape()));
  }
  const std::int64_t entries = codebook.dim(0);
  const std::int64_t dim = codebook.dim(1);
  const std::vector<float> values = codebook.to_floats();
  std::vector<float> norms(static_cast<std::size_t>(entries));
  for (std::int64_t e = 0; e < entries; ++e) {
    double sum = 0.0;
    for (std::int64_t i = 0; i < dim; ++i) {
      const double v = values[static_cast<std::size_t>(e * dim + i)];
      sum += v * v;
    }
    norms[static_cast<std::size_t>(e)] = static_cast<float>(sum);
  }
  return norms;
}

void vector_quantize(const float* z, std::int64_t n, const Tensor& codebook,
                     std::span<const float> codebook_norms, std::int32_t* codes) {
  if (codebook.rank() != 2 || static_cast<std::int64_t>(codebook_norms.size()) != codebook.dim(0)) {
    fail("vector_quantize", "codebook " + shape_string(codebook.shape()) + " with " +
                                std::to_string(codebook_norms.size()) + " norms");
  }
  const std::int64_t entries = codebook.dim(0);
  const std::int64_t dim = codebook.dim(1);
  if (entries == 0) fail("vector_quantize", "empty codebook");
  const Linear dot_with{codebook, MatrixLayout::out_in};  // z · Eᵀ without a transposed copy
  const std::int64_t chunk = std::clamp<std::int64_t>(
      kQuantizeBudgetBytes / (entries * static_cast<std::int64_t>(sizeof(float))), 1,
      std::max<std::int64_t>(n, 1));
  std::vector<float> dots(static_cast<std::size_t>(chunk * entries));
  std::int64_t first_unusable = -1;  // a row whose distances are all NaN or infinite
  for (std::int64_t r0 = 0; r0 < n; r0 += chunk) {
    const std::int64_t rows = std::min(chunk, n - r0);
    linear(z + r0 * dim, rows, dot_with, dots.data());
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const float* v = z + (r0 + r) * dim;
      double z_sq = 0.0;
      for (std::int64_t i = 0; i < dim; ++i) z_sq += static_cast<double>(v[i]) * v[i];
      const auto z_norm = static_cast<float>(z_sq);
      const float* dot = dots.data() + r * entries;
      float best = std::numeric_limits<float>::infinity();
      std::int32_t best_index = 0;
      for (std::int64_t e = 0; e < entries; ++e) {
        // The reference's order of float32 operations: (‖z‖² + ‖E‖²) − 2·(z·E).
        const float distance =
            (z_norm + codebook_norms[static_cast<std::size_t>(e)]) - 2.0f * dot[e];
        if (distance < best) {  // strict: the first index wins ties
          best = distance;
          best_index = static_cast<std::int32_t>(e);
        }
      }
      codes[r0 + r] = best_index;
      if (!(best < std::numeric_limits<float>::infinity())) {
#pragma omp critical(lwm_vector_quantize)
        if (first_unusable < 0 || r0 + r < first_unusable) first_unusable = r0 + r;
      }
    }
    if (first_unusable >= 0) {
      fail("vector_quantize", "vector " + std::to_string(first_unusable) +
                                  " has no finite distance to any codebook entry (non-finite "
                                  "encoder output or weights)");
    }
  }
}

}  // namespace lwm::cpu
