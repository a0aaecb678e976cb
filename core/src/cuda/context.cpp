#include "cuda/context.h"

#include <cstdint>
#include <string>

#include "cuda/cublas_loader.h"
#include "cuda/cuda_check.h"
#include "lwm/error.h"

namespace lwm::cuda {
namespace {

// cuBLASLt's recommendation for Hopper is 32 MiB (smaller GPUs need less); split-K and
// stream-K algorithms use it for partial sums.
constexpr std::int64_t kWorkspaceBytes = std::int64_t{32} << 20;

}  // namespace

Context::Context(int device) : device_(device) {
  LWM_CUDA_CHECK(cudaSetDevice(device));
  if (const std::string& missing = load_cublas(); !missing.empty()) {
    throw Error(ErrorKind::unsupported, "cuda:" + std::to_string(device) + ": " + missing);
  }
  // Keep freed pool memory for reuse instead of returning it to the driver at every
  // synchronization (the default threshold, 0): activations are freed and re-allocated every
  // step, and the pool is what makes that cheap.
  cudaMemPool_t pool = nullptr;
  LWM_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
  std::uint64_t keep = UINT64_MAX;
  LWM_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  LWM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  try {
    LWM_CUBLAS_CHECK(cublasLtCreate(&lt_));
    LWM_CUBLAS_CHECK(cublasCreate(&blas_));
    LWM_CUBLAS_CHECK(cublasSetStream(blas_, stream_));
    workspace_ = DeviceBuffer<std::byte>(kWorkspaceBytes, stream_);
    // cuBLAS shares the workspace (it would otherwise take its own from the driver).
    LWM_CUBLAS_CHECK(cublasSetWorkspace(blas_, workspace_.data(), workspace_.bytes()));
  } catch (...) {
    if (blas_ != nullptr) static_cast<void>(cublasDestroy(blas_));
    if (lt_ != nullptr) static_cast<void>(cublasLtDestroy(lt_));
    static_cast<void>(cudaStreamDestroy(stream_));
    throw;
  }
}

Context::~Context() {
  // Pending work must finish before the workspace returns to the pool and the stream goes away;
  // errors here are reported by the next checked call elsewhere, never thrown from a destructor.
  static_cast<void>(cudaStreamSynchronize(stream_));
  static_cast<void>(cublasDestroy(blas_));
  static_cast<void>(cublasLtDestroy(lt_));
  workspace_ = DeviceBuffer<std::byte>();
  static_cast<void>(cudaStreamSynchronize(stream_));
  static_cast<void>(cudaStreamDestroy(stream_));
}

void Context::synchronize() const {
  LWM_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace lwm::cuda
