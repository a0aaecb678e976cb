// A dense, row-major tensor in GPU memory: storage dtype, shape and stream-ordered bytes from the
// device's memory pool (DeviceBuffer). The GPU counterpart of lwm::Tensor for the CUDA backend's
// activations and weights. It owns its memory, or is a view (rows of another tensor, memory
// someone else owns) that must not outlive the owner.
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

  DeviceTensor(DeviceTensor&& other) noexcept;
  DeviceTensor& operator=(DeviceTensor&& other) noexcept;
  DeviceTensor(const DeviceTensor&) = delete;
  DeviceTensor& operator=(const DeviceTensor&) = delete;
  ~DeviceTensor() = default;

  // A view of `data` (device memory owned elsewhere) as `shape`. Makes no CUDA call.
  static DeviceTensor view(DType dtype, Shape shape, void* data, cudaStream_t stream);
  // A device copy of a host tensor, same dtype and shape.
  static DeviceTensor upload(const Tensor& host, cudaStream_t stream);
  // A host copy (waits for the stream).
  Tensor download() const;

  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  int rank() const noexcept { return static_cast<int>(shape_.size()); }
  std::int64_t dim(int axis) const;  // negative axes count from the end
  std::int64_t numel() const noexcept { return shape_numel(shape_); }
  std::size_t nbytes() const noexcept {
    return static_cast<std::size_t>(numel()) * dtype_size(dtype_);
  }
  cudaStream_t stream() const noexcept { return stream_; }
  bool owns_memory() const noexcept { return buffer_.data() != nullptr; }

  void* data() noexcept { return data_; }
  const void* data() const noexcept { return data_; }

  // Rows [begin, end) along the first axis: a view sharing this tensor's memory (a chunk of a
  // prefill, the last token's row, a KV-cache range). Makes no CUDA call.
  DeviceTensor slice_rows(std::int64_t begin, std::int64_t end);
  // A view of the same memory with another shape of the same element count.
  DeviceTensor reshaped(Shape shape);

 private:
  DType dtype_ = DType::f32;
  Shape shape_;
  cudaStream_t stream_ = nullptr;
  void* data_ = nullptr;            // the first element (inside buffer_ when it owns)
  DeviceBuffer<std::byte> buffer_;  // empty for views
};

}  // namespace lwm::cuda
