#include "cuda/device_tensor.h"

#include <cstring>
#include <string>
#include <utility>

#include "lwm/error.h"

namespace lwm::cuda {

namespace {

void check_extents(const Shape& shape) {
  for (const std::int64_t extent : shape) {
    if (extent < 0) {
      throw Error(ErrorKind::invalid_argument,
                  "device tensor shape " + shape_string(shape) + " has a negative extent");
    }
  }
}

}  // namespace

DeviceTensor::DeviceTensor(DType dtype, Shape shape, cudaStream_t stream)
    : dtype_(dtype), shape_(std::move(shape)), stream_(stream) {
  check_extents(shape_);  // before allocating: a negative count would wrap
  buffer_ = DeviceBuffer<std::byte>(
      shape_numel(shape_) * static_cast<std::int64_t>(dtype_size(dtype)), stream);
  data_ = buffer_.data();
}

DeviceTensor::DeviceTensor(DeviceTensor&& other) noexcept
    : dtype_(other.dtype_),
      shape_(std::move(other.shape_)),
      stream_(other.stream_),
      data_(other.data_),
      buffer_(std::move(other.buffer_)) {
  other.shape_.clear();
  other.data_ = nullptr;
}

DeviceTensor& DeviceTensor::operator=(DeviceTensor&& other) noexcept {
  if (this != &other) {
    dtype_ = other.dtype_;
    shape_ = std::move(other.shape_);
    stream_ = other.stream_;
    data_ = other.data_;
    buffer_ = std::move(other.buffer_);
    other.shape_.clear();
    other.data_ = nullptr;
  }
  return *this;
}

DeviceTensor DeviceTensor::view(DType dtype, Shape shape, void* data, cudaStream_t stream) {
  check_extents(shape);
  DeviceTensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.stream_ = stream;
  t.data_ = data;
  return t;
}

DeviceTensor DeviceTensor::slice_rows(std::int64_t begin, std::int64_t end) {
  if (rank() == 0 || begin < 0 || end < begin || end > shape_[0]) {
    throw Error(ErrorKind::invalid_argument,
                "rows [" + std::to_string(begin) + ", " + std::to_string(end) +
                    ") out of range for device tensor " + shape_string(shape_));
  }
  Shape rows = shape_;
  rows[0] = end - begin;
  const std::size_t row_bytes = shape_[0] == 0 ? 0 : nbytes() / static_cast<std::size_t>(shape_[0]);
  return view(dtype_, std::move(rows),
              static_cast<std::byte*>(data_) + static_cast<std::size_t>(begin) * row_bytes,
              stream_);
}

DeviceTensor DeviceTensor::reshaped(Shape shape) {
  if (shape_numel(shape) != numel()) {
    throw Error(ErrorKind::invalid_argument,
                "cannot view device tensor " + shape_string(shape_) + " as " + shape_string(shape));
  }
  return view(dtype_, std::move(shape), data_, stream_);
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
