// The GPU half of list_devices(): cuda_devices.cpp with the CUDA runtime (LWM_HAVE_CUDA), or
// no_cuda_devices.cpp in a build without it.
#pragma once

#include "lwm/devices.h"

namespace lwm::detail {

// Appends every CUDA device to `list.devices` and sets cuda_built and cuda_status. Never throws.
void add_cuda_devices(DeviceList& list);

}  // namespace lwm::detail
