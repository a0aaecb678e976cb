// CPU kernels of the VQGAN (spec lwm-reference §3.3, §3.5): 2-D convolution over NHWC images with
// HWIO kernels (SAME, the bottom/right-padded stride-2 downsample, and nearest ×2 upsampling fused
// into the convolution's input), GroupNorm with optional SiLU, and the codebook argmin.
// float32 compute over f32/bf16/f16 weights, OpenMP threads. Internal to lwm::core (vqgan.h is
// the public face); the tests include this header to check each op against an fp64 reference.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "lwm/tensor.h"

namespace lwm::cpu {

struct ImageShape {
  std::int64_t batch = 1;
  std::int64_t height = 0;
  std::int64_t width = 0;
  std::int64_t channels = 0;
  std::int64_t pixels() const noexcept { return batch * height * width; }
  std::int64_t numel() const noexcept { return pixels() * channels; }
};

// Where each output pixel reads its input: output (oy, ox) and kernel tap (ky, kx) read the
// virtual input pixel (oy·stride − pad_top + ky, ox·stride − pad_left + kx) of the input upsampled
// `upsample` times by nearest neighbour; virtual pixels outside it are zeros.
struct ConvGeometry {
  std::int64_t kernel = 3;  // square kernels only (1 or 3 in the VQGAN)
  std::int64_t stride = 1;
  std::int64_t pad_top = 1;
  std::int64_t pad_left = 1;
  std::int64_t upsample = 1;
  std::int64_t out_height = 0;
  std::int64_t out_width = 0;

  // Stride 1, "SAME" for an odd kernel: pad kernel/2 on every side, output size = input size.
  static ConvGeometry same(std::int64_t kernel, std::int64_t height, std::int64_t width);
  // §3.3 Downsample: zero-pad bottom and right by 1, then 3×3 stride 2 "VALID".
  static ConvGeometry downsample(std::int64_t height, std::int64_t width);
  // §3.3 Upsample: nearest ×2, then 3×3 "SAME" on the doubled image (never materialised).
  static ConvGeometry upsample2(std::int64_t height, std::int64_t width);
};

// y[b, oy, ox, o] = bias[o] + Σ x[virtual pixel, i] · kernel[ky, kx, i, o] (see ConvGeometry).
// kernel [k, k, in, out] HWIO, bias [out] (f32/bf16/f16). y is [batch, out_height, out_width, out]
// and must not alias x. Throws Error(invalid_argument) naming the shapes when they disagree.
void conv2d(const float* x, const ImageShape& in, const Tensor& kernel, const Tensor& bias,
            const ConvGeometry& geometry, float* y);

// GroupNorm over [batch, h, w, c] (§3.3): per image and group of c/groups channels, float32
// statistics mean = E[x], var = max(0, E[x²] − mean²) (sums accumulated in double, then rounded),
// y = (x − mean)·(rsqrt(var + eps)·scale) + bias, then y·sigmoid(y) when `silu`.
// y may alias x. scale and bias are [c] float32.
void group_norm(const float* x, const ImageShape& shape, std::int64_t groups,
                std::span<const float> scale, std::span<const float> bias, float eps, bool silu,
                float* y);

// Squared norms of the codebook rows in float32 (sums in double, rounded once).
std::vector<float> codebook_squared_norms(const Tensor& codebook);

// §3.5: for each of the n vectors z (rows of width d), the index of the codebook row [K, d]
// minimising (‖z‖² + ‖E_k‖²) − 2·z·E_k evaluated in float32; the first index on ties.
void vector_quantize(const float* z, std::int64_t n, const Tensor& codebook,
                     std::span<const float> codebook_norms, std::int32_t* codes);

}  // namespace lwm::cpu
