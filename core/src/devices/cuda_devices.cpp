// GPUs through the CUDA runtime API (linked statically; the driver is loaded at run time, so a
// machine without one gets a reason, not a failure to start).
#include "devices/cuda_devices.h"

#include <cuda_runtime_api.h>

#include <string>

namespace lwm::detail {
namespace {

std::string version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string((version % 1000) / 10);
}

}  // namespace

void add_cuda_devices(DeviceList& list) {
  list.cuda_built = true;
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    list.cuda_status =
        std::string("no CUDA device: ") +
        (status != cudaSuccess ? cudaGetErrorString(status) : "the driver reports no GPU");
    return;
  }
  int driver = 0;
  int runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  // cudaMemGetInfo reports on the current device; the caller's current device is put back after.
  int previous_device = 0;
  cudaGetDevice(&previous_device);
  std::string problems;
  int listed = 0;
  for (int index = 0; index < count; ++index) {
    cudaDeviceProp properties{};
    std::size_t free_bytes = 0;
    std::size_t total_bytes = 0;
    cudaError_t error = cudaGetDeviceProperties(&properties, index);
    if (error == cudaSuccess) error = cudaSetDevice(index);
    // cudaMemGetInfo needs a context on the device; it is created here and kept for later use.
    if (error == cudaSuccess) error = cudaMemGetInfo(&free_bytes, &total_bytes);
    if (error != cudaSuccess) {
      problems += "; cuda:" + std::to_string(index) + " unusable: " + cudaGetErrorString(error);
      cudaGetLastError();  // clear the sticky-free error so the next device is queried afresh
      continue;
    }
    DeviceInfo info;
    info.kind = DeviceKind::cuda;
    info.index = index;
    info.name = properties.name;
    info.cores = properties.multiProcessorCount;
    info.compute_major = properties.major;
    info.compute_minor = properties.minor;
    info.total_bytes = static_cast<std::int64_t>(total_bytes);
    info.available_bytes = static_cast<std::int64_t>(free_bytes);
    list.devices.push_back(std::move(info));
    ++listed;
  }
  cudaSetDevice(previous_device);
  list.cuda_status = (listed == 0 ? std::string("no CUDA device: ") : std::string()) +
                     std::to_string(listed) + " CUDA device" + (listed == 1 ? "" : "s") +
                     " (driver " + version_text(driver) + ", runtime " + version_text(runtime) +
                     ")" + problems;
}

}  // namespace lwm::detail
