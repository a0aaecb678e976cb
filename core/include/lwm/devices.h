// The devices this machine can run on (design.md "Devices"): the CPU and each CUDA GPU, with the
// memory each has free, and the parsing of a user's device choice ("cpu", "cpu:4", "cuda:0,1").
// Listing never throws: a build without CUDA, a machine without a driver or without a GPU lists
// the CPU alone and says why there is no GPU, so nothing falls back to the CPU silently.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lwm {

enum class DeviceKind { cpu, cuda };
const char* to_string(DeviceKind kind) noexcept;  // "cpu" / "cuda"

struct DeviceInfo {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;          // CUDA device ordinal; 0 for the CPU
  std::string name;       // "Intel(R) Xeon(R) ...", "NVIDIA H100 80GB HBM3"
  int cores = 0;          // CPU: hardware threads; CUDA: streaming multiprocessors
  int compute_major = 0;  // CUDA compute capability (9.0 for an H100); 0 for the CPU
  int compute_minor = 0;
  std::int64_t total_bytes = 0;  // physical memory (MemTotal) or GPU memory
  std::int64_t available_bytes =
      0;  // what can be allocated now (MemAvailable, or cudaMemGetInfo free)

  std::string id() const;  // "cpu" or "cuda:<index>", as parse_device_list() reads it
};

struct DeviceList {
  std::vector<DeviceInfo> devices;  // the CPU first, then the GPUs by ordinal
  bool cuda_built = false;          // this build has the CUDA runtime (LWM_HAVE_CUDA)
  // One line about the GPUs: "2 CUDA devices (driver 12.4, runtime 12.4)", "no CUDA device: <why>"
  // or "built without CUDA".
  std::string cuda_status;

  std::vector<DeviceInfo> gpus() const;
};

// Lists the devices now (free memory changes; call again to refresh). Never throws.
DeviceList list_devices();

// A parsed device choice. `cpu:N` runs N sequence-parallel ranks on the CPU (in-process ring,
// one memory); `cuda:A,B,...` one rank per listed GPU; `cuda` every GPU.
struct DeviceSelection {
  DeviceKind kind = DeviceKind::cpu;
  int ranks = 1;                    // sequence-parallel ranks (P of the ring)
  std::vector<DeviceInfo> devices;  // the CPU once, or each chosen GPU in the order given

  std::string to_string() const;  // "cpu", "cpu:4", "cuda:0,1"
};

// Reads "cpu", "cpu:N" (1 ≤ N ≤ 256), "cuda" or "cuda:I[,J...]" against `available`. Throws
// Error(invalid_argument) for a malformed or unknown name, a repeated GPU, or a GPU that is not
// there, naming the devices that exist (and why there is no GPU when there is none).
DeviceSelection parse_device_list(std::string_view spec, const DeviceList& available);

// Bytes of memory the machine can give now (/proc/meminfo MemAvailable); -1 when unknown.
// (Declared in kv_cache.h too, where the KV cache checks its size.)
std::int64_t available_memory_bytes();

}  // namespace lwm
