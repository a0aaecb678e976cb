// y = x · W on the GPU through cuBLASLt (the CUDA counterpart of cpu::linear): bf16 (or f16, f32)
// inputs, f32 accumulation (CUBLAS_COMPUTE_32F), output in x's dtype or f32. Both weight layouts
// of lwm/linear.h are used as stored: an out_in weight is read transposed by cuBLAS, never copied.
#pragma once

#include "cuda/context.h"
#include "cuda/device_tensor.h"
#include "lwm/linear.h"

namespace lwm::cuda {

// A weight matrix resident on the GPU, with the layout its file stores it in.
struct DeviceLinear {
  DeviceTensor weight;  // rank 2
  MatrixLayout layout = MatrixLayout::in_out;

  // Uploads a host Linear (same dtype and layout) on the context's stream.
  static DeviceLinear upload(Context& ctx, const Linear& host);
  std::int64_t in_features() const;
  std::int64_t out_features() const;
};

// y[m, out] = x[m, in] · W. x and W share a dtype (bf16, f16 or f32); y is that dtype or f32.
// Shapes and dtypes are checked before any CUDA call (op_checks.h plan_linear). y must not alias
// x. The algorithm cuBLASLt picks for a shape is cached in the context.
void linear(Context& ctx, const DeviceTensor& x, const DeviceLinear& w, DeviceTensor& y);

}  // namespace lwm::cuda
