// What the CUDA backend's operations need on one GPU, created once and reused: the device, a
// stream every op is ordered on, a cuBLASLt handle with its workspace, and the cuBLASLt algorithm
// chosen for each GEMM shape (the heuristic query costs more than a decode-sized GEMM), and a
// cuBLAS handle for the shapes cuBLASLt's heuristic has no algorithm for.
// Not thread-safe: one context per thread (per rank) and device.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <tuple>

#include "cuda/device_buffer.h"

namespace lwm::cuda {

class Context {
 public:
  // Makes `device` current on this thread and creates the stream and handle; throws
  // Error(device) naming the failing call when the device cannot be used.
  explicit Context(int device = 0);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  int device() const noexcept { return device_; }
  cudaStream_t stream() const noexcept { return stream_; }
  cublasLtHandle_t lt() const noexcept { return lt_; }
  cublasHandle_t blas() const noexcept { return blas_; }
  void* workspace() noexcept { return workspace_.data(); }
  std::size_t workspace_bytes() const noexcept { return workspace_.bytes(); }
  // Waits for everything queued on the stream; raises the first asynchronous error.
  void synchronize() const;

  // The cuBLASLt algorithm found for each GEMM, or none when cuBLAS's own GEMM serves that shape
  // (cuda/linear.cpp fills and reads it).
  // (transpose A, m, n, k, A/B type, C type, the pointers' alignments packed in one int)
  using GemmKey = std::tuple<int, std::int64_t, std::int64_t, std::int64_t, int, int, int>;
  using GemmChoice = std::optional<cublasLtMatmulAlgo_t>;
  std::map<GemmKey, GemmChoice>& gemm_algorithms() noexcept { return algorithms_; }

 private:
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  DeviceBuffer<std::byte> workspace_;
  std::map<GemmKey, GemmChoice> algorithms_;
};

}  // namespace lwm::cuda
