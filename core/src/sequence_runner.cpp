#include "lwm/sequence_runner.h"

#include <string>

#include "cuda_runner.h"
#include "lwm/error.h"

namespace lwm {
namespace {

#if defined(LWM_HAVE_CUDA)
constexpr bool kCudaBackendBuilt = true;
#else
constexpr bool kCudaBackendBuilt = false;
#endif

}  // namespace

CpuSequenceRunner::CpuSequenceRunner(const Model& model, std::int64_t capacity)
    : model_(model),
      owned_(std::make_unique<KVCache>(model.config(), capacity)),
      cache_(owned_.get()) {}

KvPrecision default_kv_precision(const DeviceSelection& devices) noexcept {
  return devices.kind == DeviceKind::cuda ? KvPrecision::bf16 : KvPrecision::f32;
}

void check_runnable(const DeviceSelection& devices, std::optional<KvPrecision> kv_precision) {
  const KvPrecision kv = kv_precision.value_or(default_kv_precision(devices));
  if (devices.ranks > 1 || devices.devices.size() > 1) {
    throw Error(ErrorKind::unsupported,
                "sessions cannot run on " + devices.to_string() +
                    " yet: sequence-parallel sessions over several ranks are not wired to the "
                    "session API; choose one device (cpu or cuda:N)");
  }
  if (devices.kind == DeviceKind::cuda) {
    if (!kCudaBackendBuilt) {
      throw Error(ErrorKind::unsupported,
                  "sessions cannot run on " + devices.to_string() +
                      ": this build has no CUDA backend (it was built without nvcc); use "
                      "--devices cpu, or a build with CUDA");
    }
    if (kv == KvPrecision::f32) {
      throw Error(ErrorKind::unsupported,
                  "a GPU keeps its KV cache in bf16 or int8; f32 is the CPU's format");
    }
    return;
  }
  if (kv != KvPrecision::f32) {
    throw Error(ErrorKind::unsupported, std::string("the CPU keeps its KV cache in f32; ") +
                                            to_string(kv) +
                                            " caches need a GPU (choose cuda:N, or f32)");
  }
}

std::unique_ptr<SequenceRunner> make_sequence_runner(const Model& model,
                                                     const DeviceSelection& devices,
                                                     std::int64_t capacity,
                                                     std::optional<KvPrecision> kv_precision) {
  check_runnable(devices, kv_precision);
  const KvPrecision kv = kv_precision.value_or(default_kv_precision(devices));
  if (devices.kind == DeviceKind::cuda) {
    if (devices.devices.empty()) {
      throw Error(ErrorKind::invalid_argument, "no GPU was chosen; name one, e.g. cuda:0");
    }
    return make_cuda_runner(model, devices.devices.front().index, capacity, kv);
  }
  return std::make_unique<CpuSequenceRunner>(model, capacity);
}

}  // namespace lwm
