// A restricted pickle virtual machine for the VQGAN parameter file (spec §3.8): a pickled nested
// dict of numpy (or JAX) float arrays, possibly inside a flax FrozenDict, protocols 2 to 5. Only
// the opcodes and callables such a file needs are implemented; anything else is rejected with an
// Error naming the opcode or the global, so a pickle can never run code here. Array data are
// views into the caller's buffer (a memory-mapped file) where the pickle stores raw bytes;
// protocol 2 stores them as latin-1 text, which is decoded into owned memory.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "lwm/tensor.h"

namespace lwm::convert {

struct PickledArray {
  std::vector<std::string>
      key;            // dict path from the top level, e.g. {"encoder", "Conv_0", "kernel"}
  std::string dtype;  // numpy name: "float32", "float16", ...
  std::size_t itemsize = 0;
  Shape shape;
  std::span<const unsigned char> data;  // C-order element bytes
  std::shared_ptr<const void> owner;    // keeps `data` alive when it is not in the caller's buffer

  std::string key_string(char separator = '/') const;
};

// Runs the pickle in `data` and returns every array leaf of the nested dict it builds, in
// insertion order. `source` names the file in errors. Throws Error(file_format) for malformed or
// truncated pickles and Error(unsupported) for opcodes, globals or leaves outside the subset.
std::vector<PickledArray> read_pickled_arrays(std::span<const unsigned char> data,
                                              const std::string& source);

}  // namespace lwm::convert
