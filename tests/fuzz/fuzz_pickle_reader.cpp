// Fuzz target: the restricted pickle VM (spec §3.8, and torch.save's pickles of §1.6) on arbitrary
// bytes, read both as a parameter pickle and as a state dict. Any input must end in arrays or
// tensors or an lwm::Error, never a crash, a leak, a hang or an out-of-bounds read.
#include <cstddef>
#include <cstdint>

#include "convert/pickle_reader.h"
#include "lwm/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto arrays = lwm::convert::read_pickled_arrays({data, size}, "fuzz");
    std::uint64_t sum = 0;
    for (const auto& array : arrays)
      sum += array.data.empty() ? 0 : array.data.front() + array.data.back();
    (void)sum;
  } catch (const lwm::Error&) {
  }
  try {
    const auto tensors = lwm::convert::read_pickled_torch_tensors({data, size}, "fuzz");
    std::int64_t elements = 0;
    for (const auto& tensor : tensors) elements += tensor.storage_numel + tensor.offset;
    (void)elements;
  } catch (const lwm::Error&) {
  }
  return 0;
}
