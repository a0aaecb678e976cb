#include "cuda/device_tensor.h"

#include <cstring>
#include <string>
#include <utility>

#include "lwm/error.h"

namespace lwm::cuda {

DeviceTensor::DeviceTensor(DType dtype, Shape shape, cudaStream_t stream)
    : dtype_(dtype),
      shape_(std::move(shape)),
      stream_(stream),
      buffer_(shape_numel(shape_) * static_cast<std::int64_t>(dtype_size(dtype)), stream) {
  for (const std::int64_t extent : shape_) {
    if (extent < 0) {
      throw Error(ErrorKind::invalid_argument,
                  "device tensor shape " + shape_string(shape_) + " has a negative extent");
    }
  }
}

DeviceTensor DeviceTensor::upload(const Tensor& host, cudaStream_t stream) {
  DeviceTensor device(host.dtype(), host.shape(), stream);
  if (device.nbytes() > 0) {
    // The host tensor may be a memory-mapped weight file: the copy is synchronous for pageable
    // memory, so the mapping only has to live for this call.
    LWM_CUDA_CHECK(cudaMemcpyAsync(device.data(), host.raw(), device.nbytes(),
                                   cudaMemcpyHostToDevice, stream));
  }
  return device;
}

Tensor DeviceTensor::download() const {
  Tensor host = Tensor::zeros(dtype_, shape_);
  if (nbytes() > 0) {
    LWM_CUDA_CHECK(
        cudaMemcpyAsync(host.mutable_raw(), data(), nbytes(), cudaMemcpyDeviceToHost, stream_));
  }
  LWM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  return host;
}

std::int64_t DeviceTensor::dim(int axis) const {
  const int r = rank();
  const int index = axis < 0 ? axis + r : axis;
  if (index < 0 || index >= r) {
    throw Error(ErrorKind::invalid_argument, "axis " + std::to_string(axis) +
                                                 " is out of range for device tensor " +
                                                 shape_string(shape_));
  }
  return shape_[static_cast<std::size_t>(index)];
}

}  // namespace lwm::cuda
