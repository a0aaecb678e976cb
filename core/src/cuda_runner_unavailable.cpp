// make_cuda_runner for a build without the CUDA backend (core/CMakeLists.txt).
#include "cuda_runner.h"
#include "lwm/error.h"

namespace lwm {

std::unique_ptr<SequenceRunner> make_cuda_runner(const Model&, int device, std::int64_t,
                                                 KvPrecision) {
  throw Error(ErrorKind::unsupported,
              "cuda:" + std::to_string(device) +
                  " cannot run the model: this build of LWM Studio has no CUDA backend (it was "
                  "built without nvcc); use --devices cpu, or a build with CUDA");
}

}  // namespace lwm
