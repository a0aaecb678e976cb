#include "devices/cuda_devices.h"

namespace lwm::detail {

void add_cuda_devices(DeviceList& list) {
  list.cuda_built = false;
  list.cuda_status = "built without CUDA (nvcc was not found at configure time)";
}

}  // namespace lwm::detail
