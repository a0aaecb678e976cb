#include "cuda/cuda_check.h"

#include <string>

#include "lwm/error.h"

namespace lwm::cuda {
namespace {

std::string where(const char* call, const char* file, int line) {
  int device = -1;
  // Best effort: the device may be the thing that failed.
  if (cudaGetDevice(&device) != cudaSuccess) device = -1;
  std::string text = std::string("`") + call + "` failed";
  if (device >= 0) text += " on cuda:" + std::to_string(device);
  return text + " at " + file + ":" + std::to_string(line);
}

}  // namespace

void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line) {
  const ErrorKind kind =
      status == cudaErrorMemoryAllocation ? ErrorKind::out_of_memory : ErrorKind::device;
  std::string reason = cudaGetErrorString(status);
  if (status == cudaErrorNoKernelImageForDevice) {
    reason += " (this build has no kernels for the GPU's compute capability; rebuild with "
              "CMAKE_CUDA_ARCHITECTURES including it)";
  }
  throw Error(kind, "CUDA call " + where(call, file, line) + ": " + reason);
}

void throw_cublas_error(cublasStatus_t status, const char* call, const char* file, int line) {
  const ErrorKind kind =
      status == CUBLAS_STATUS_ALLOC_FAILED ? ErrorKind::out_of_memory : ErrorKind::device;
  throw Error(kind, "cuBLAS call " + where(call, file, line) + ": " + cublasGetStatusString(status));
}

void check_launch(const char* kernel, const char* file, int line) {
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess) {
    throw_cuda_error(status, (std::string("launch of ") + kernel).c_str(), file, line);
  }
}

}  // namespace lwm::cuda
