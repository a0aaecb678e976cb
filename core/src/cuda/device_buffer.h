// Device memory owned by one object, allocated stream-ordered from the device's default memory
// pool (cudaMallocAsync), so repeated allocations of activation-sized buffers are served from
// the pool instead of the driver. Freed on the stream it was allocated on.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "cuda/cuda_check.h"

namespace lwm::cuda {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(std::int64_t count, cudaStream_t stream) : count_(count), stream_(stream) {
    if (count_ > 0) {
      void* raw = nullptr;
      LWM_CUDA_CHECK(cudaMallocAsync(&raw, bytes(), stream_));
      data_ = static_cast<T*>(raw);
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept { swap(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    DeviceBuffer(std::move(other)).swap(*this);
    return *this;
  }
  ~DeviceBuffer() {
    // A destructor cannot throw; a failing free means the context is already broken and the
    // next checked call reports it.
    if (data_ != nullptr) static_cast<void>(cudaFreeAsync(data_, stream_));
  }

  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  std::int64_t size() const noexcept { return count_; }
  std::size_t bytes() const noexcept { return static_cast<std::size_t>(count_) * sizeof(T); }

  // Copies between host and device on the buffer's stream (host memory must outlive the copy;
  // the download waits for it).
  void upload(const T* host, std::int64_t count) {
    LWM_CUDA_CHECK(cudaMemcpyAsync(data_, host, static_cast<std::size_t>(count) * sizeof(T),
                                   cudaMemcpyHostToDevice, stream_));
  }
  void download(T* host, std::int64_t count) const {
    LWM_CUDA_CHECK(cudaMemcpyAsync(host, data_, static_cast<std::size_t>(count) * sizeof(T),
                                   cudaMemcpyDeviceToHost, stream_));
    LWM_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

 private:
  void swap(DeviceBuffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(count_, other.count_);
    std::swap(stream_, other.stream_);
  }

  T* data_ = nullptr;
  std::int64_t count_ = 0;
  cudaStream_t stream_ = nullptr;
};

}  // namespace lwm::cuda
