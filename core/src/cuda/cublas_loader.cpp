#include "cuda/cublas_loader.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <dlfcn.h>

namespace lwm::cuda {
namespace {

struct Libraries {
  void* blas = nullptr;
  void* lt = nullptr;
  std::string error;  // empty when both are loaded
};

void* open_library(const std::string& name, std::string& error) {
  void* handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr && error.empty()) {
    const char* why = dlerror();
    error = "the GPU needs cuBLAS " + std::to_string(CUBLAS_VER_MAJOR) + " (" + name +
            "), which could not be loaded: " + (why != nullptr ? why : "not found") +
            ". Install NVIDIA's CUDA " + std::to_string(CUBLAS_VER_MAJOR) +
            " cuBLAS (Debian/Ubuntu from NVIDIA's repository: apt install libcublas-" +
            std::to_string(CUBLAS_VER_MAJOR) + "-" + std::to_string(CUBLAS_VER_MINOR) +
            "), or add its folder to LD_LIBRARY_PATH";
  }
  return handle;
}

const Libraries& libraries() {
  static const Libraries loaded = [] {
    Libraries l;
    const std::string major = std::to_string(CUBLAS_VER_MAJOR);
    l.lt = open_library("libcublasLt.so." + major, l.error);
    l.blas = open_library("libcublas.so." + major, l.error);
    return l;
  }();
  return loaded;
}

void* symbol(void* library, const char* name) {
  return library == nullptr ? nullptr : dlsym(library, name);
}

}  // namespace

const std::string& load_cublas() {
  return libraries().error;
}

}  // namespace lwm::cuda

// The cuBLAS API the backend uses, each function forwarding to the loaded library (resolved once;
// CUBLAS_STATUS_NOT_INITIALIZED when it is missing, though Context refuses to start then).
#define LWM_CUBLAS_FORWARD(library, name, parameters, arguments)                              \
  extern "C" cublasStatus_t CUBLASWINAPI name parameters {                                    \
    using Function = cublasStatus_t(CUBLASWINAPI*) parameters;                                \
    static const auto forward =                                                               \
        reinterpret_cast<Function>(lwm::cuda::symbol(lwm::cuda::libraries().library, #name)); \
    return forward == nullptr ? CUBLAS_STATUS_NOT_INITIALIZED : forward arguments;            \
  }

LWM_CUBLAS_FORWARD(lt, cublasLtCreate, (cublasLtHandle_t * handle), (handle))
LWM_CUBLAS_FORWARD(lt, cublasLtDestroy, (cublasLtHandle_t handle), (handle))
LWM_CUBLAS_FORWARD(lt, cublasLtMatmul,
                   (cublasLtHandle_t handle, cublasLtMatmulDesc_t desc, const void* alpha,
                    const void* a, cublasLtMatrixLayout_t a_desc, const void* b,
                    cublasLtMatrixLayout_t b_desc, const void* beta, const void* c,
                    cublasLtMatrixLayout_t c_desc, void* d, cublasLtMatrixLayout_t d_desc,
                    const cublasLtMatmulAlgo_t* algo, void* workspace, size_t workspace_bytes,
                    cudaStream_t stream),
                   (handle, desc, alpha, a, a_desc, b, b_desc, beta, c, c_desc, d, d_desc, algo,
                    workspace, workspace_bytes, stream))
LWM_CUBLAS_FORWARD(lt, cublasLtMatrixLayoutCreate,
                   (cublasLtMatrixLayout_t * layout, cudaDataType type, uint64_t rows,
                    uint64_t cols, int64_t ld),
                   (layout, type, rows, cols, ld))
LWM_CUBLAS_FORWARD(lt, cublasLtMatrixLayoutDestroy, (cublasLtMatrixLayout_t layout), (layout))
LWM_CUBLAS_FORWARD(lt, cublasLtMatmulDescCreate,
                   (cublasLtMatmulDesc_t * desc, cublasComputeType_t compute, cudaDataType_t scale),
                   (desc, compute, scale))
LWM_CUBLAS_FORWARD(lt, cublasLtMatmulDescDestroy, (cublasLtMatmulDesc_t desc), (desc))
LWM_CUBLAS_FORWARD(lt, cublasLtMatmulDescSetAttribute,
                   (cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute,
                    const void* value, size_t bytes),
                   (desc, attribute, value, bytes))
LWM_CUBLAS_FORWARD(lt, cublasLtMatmulPreferenceCreate, (cublasLtMatmulPreference_t * preference),
                   (preference))
LWM_CUBLAS_FORWARD(lt, cublasLtMatmulPreferenceDestroy, (cublasLtMatmulPreference_t preference),
                   (preference))
LWM_CUBLAS_FORWARD(lt, cublasLtMatmulPreferenceSetAttribute,
                   (cublasLtMatmulPreference_t preference,
                    cublasLtMatmulPreferenceAttributes_t attribute, const void* value,
                    size_t bytes),
                   (preference, attribute, value, bytes))
LWM_CUBLAS_FORWARD(lt, cublasLtMatmulAlgoGetHeuristic,
                   (cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
                    cublasLtMatrixLayout_t a_desc, cublasLtMatrixLayout_t b_desc,
                    cublasLtMatrixLayout_t c_desc, cublasLtMatrixLayout_t d_desc,
                    cublasLtMatmulPreference_t preference, int requested,
                    cublasLtMatmulHeuristicResult_t results[], int* returned),
                   (handle, desc, a_desc, b_desc, c_desc, d_desc, preference, requested, results,
                    returned))
LWM_CUBLAS_FORWARD(blas, cublasCreate_v2, (cublasHandle_t * handle), (handle))
LWM_CUBLAS_FORWARD(blas, cublasDestroy_v2, (cublasHandle_t handle), (handle))
LWM_CUBLAS_FORWARD(blas, cublasSetStream_v2, (cublasHandle_t handle, cudaStream_t stream),
                   (handle, stream))
LWM_CUBLAS_FORWARD(blas, cublasSetWorkspace_v2,
                   (cublasHandle_t handle, void* workspace, size_t bytes),
                   (handle, workspace, bytes))
LWM_CUBLAS_FORWARD(blas, cublasGemmEx,
                   (cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                    int m, int n, int k, const void* alpha, const void* a, cudaDataType a_type,
                    int lda, const void* b, cudaDataType b_type, int ldb, const void* beta, void* c,
                    cudaDataType c_type, int ldc, cublasComputeType_t compute,
                    cublasGemmAlgo_t algo),
                   (handle, transa, transb, m, n, k, alpha, a, a_type, lda, b, b_type, ldb, beta, c,
                    c_type, ldc, compute, algo))

extern "C" const char* CUBLASWINAPI cublasGetStatusString(cublasStatus_t status) {
  using Function = const char* (*)(cublasStatus_t);
  static const auto forward = reinterpret_cast<Function>(
      lwm::cuda::symbol(lwm::cuda::libraries().blas, "cublasGetStatusString"));
  return forward == nullptr ? "cuBLAS is not loaded" : forward(status);
}
