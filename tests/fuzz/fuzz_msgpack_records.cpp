// Fuzz target: the tux record reader and the flax tree reader (spec §4.1, §4.2) on arbitrary bytes.
// Any input must end in records or an lwm::Error, never a crash, a hang or an out-of-bounds read.
#include <cstddef>
#include <cstdint>

#include "convert/msgpack_records.h"
#include "lwm/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const lwm::convert::Bytes bytes(data, size);
  try {
    lwm::convert::MsgpackRecordReader reader(bytes, "fuzz");
    lwm::convert::ArrayLeaf leaf;
    std::uint64_t sum = 0;
    while (reader.next(leaf)) {
      for (const auto& piece : leaf.pieces) sum += piece.empty() ? 0 : piece.front() + piece.back();
    }
    (void)sum;
  } catch (const lwm::Error&) {
  }
  try {
    lwm::convert::read_flax_tree(bytes, "fuzz", [](lwm::convert::ArrayLeaf&&) {});
  } catch (const lwm::Error&) {
  }
  return 0;
}
