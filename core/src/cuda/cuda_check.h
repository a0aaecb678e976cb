// Checked CUDA runtime and cuBLAS calls. Every call the CUDA backend makes goes through one of
// these macros, so a failure surfaces as an lwm::Error naming the call, its source line, the
// device and CUDA's own reason — never as a silently wrong result or a later, unrelated error.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

namespace lwm::cuda {

// Throw lwm::Error (ErrorKind::device, or out_of_memory for allocation failures) whose message
// reads "CUDA call `<call>` failed on cuda:<device> at <file>:<line>: <reason>".
[[noreturn]] void throw_cuda_error(cudaError_t status, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t status, const char* call, const char* file,
                                     int line);

// Raises the error of the last kernel launch (launch configuration, missing kernel image for
// this GPU's architecture), if any. Kernel launches are followed by LWM_CUDA_CHECK_LAUNCH().
void check_launch(const char* kernel, const char* file, int line);

}  // namespace lwm::cuda

#define LWM_CUDA_CHECK(call)                                                   \
  do {                                                                         \
    const cudaError_t lwm_cuda_status_ = (call);                               \
    if (lwm_cuda_status_ != cudaSuccess) {                                     \
      ::lwm::cuda::throw_cuda_error(lwm_cuda_status_, #call, __FILE__, __LINE__); \
    }                                                                          \
  } while (0)

#define LWM_CUBLAS_CHECK(call)                                                     \
  do {                                                                             \
    const cublasStatus_t lwm_cublas_status_ = (call);                              \
    if (lwm_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                             \
      ::lwm::cuda::throw_cublas_error(lwm_cublas_status_, #call, __FILE__, __LINE__); \
    }                                                                              \
  } while (0)

#define LWM_CUDA_CHECK_LAUNCH(kernel) ::lwm::cuda::check_launch(kernel, __FILE__, __LINE__)
