// A dense, row-major tensor in GPU memory: storage dtype, shape and stream-ordered bytes from the
// device's memory pool (DeviceBuffer). The GPU counterpart of lwm::Tensor for the CUDA backend's
// activations and weights; it always owns its memory.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cuda/device_buffer.h"
#include "lwm/dtype.h"
#include "lwm/tensor.h"

namespace lwm::cuda {

class DeviceTensor {
 public:
  DeviceTensor() = default;
  // Uninitialised storage for `shape` on `stream` (allocation is ordered on that stream).
  DeviceTensor(DType dtype, Shape shape, cudaStream_t stream);

  // A device copy of a host tensor, same dtype and shape.
  static DeviceTensor upload(const Tensor& host, cudaStream_t stream);
  // A host copy (waits for the stream).
  Tensor download() const;

  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  int rank() const noexcept { return static_cast<int>(shape_.size()); }
  std::int64_t dim(int axis) const;  // negative axes count from the end
  std::int64_t numel() const noexcept { return shape_numel(shape_); }
  std::size_t nbytes() const noexcept { return buffer_.bytes(); }
  cudaStream_t stream() const noexcept { return stream_; }

  void* data() noexcept { return buffer_.data(); }
  const void* data() const noexcept { return buffer_.data(); }

 private:
  DType dtype_ = DType::f32;
  Shape shape_;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer<std::byte> buffer_;
};

}  // namespace lwm::cuda
