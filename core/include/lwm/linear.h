// A weight matrix used as y = x · W, whatever order its file stores it in.
// LWM/JAX checkpoints store kernels [in, out]; Hugging Face stores nn.Linear weights [out, in].
// Both are used in place (memory-mapped, any storage dtype) without a transposed copy.
#pragma once

#include <cstdint>

#include "lwm/tensor.h"

namespace lwm {

enum class MatrixLayout : std::uint8_t {
  in_out,  // row-major [in, out] (JAX kernels)
  out_in,  // row-major [out, in] (PyTorch nn.Linear weights, embedding tables used as heads)
};

struct Linear {
  Tensor weight;  // rank 2, f32/bf16/f16
  MatrixLayout layout = MatrixLayout::in_out;

  std::int64_t in_features() const { return layout == MatrixLayout::in_out ? weight.dim(0) : weight.dim(1); }
  std::int64_t out_features() const { return layout == MatrixLayout::in_out ? weight.dim(1) : weight.dim(0); }
};

}  // namespace lwm
