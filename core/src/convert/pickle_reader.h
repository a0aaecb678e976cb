// A restricted pickle virtual machine for the VQGAN parameter file (spec §3.8): a pickled nested
// dict of numpy (or JAX) float arrays, possibly inside a flax FrozenDict, protocols 2 to 5; and
// for the pickle inside a PyTorch checkpoint (spec §1.6: tensors over storages). Only
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

// A tensor of a torch.save pickle (spec §1.6): a strided view of the storage `storage_key`, whose
// bytes the checkpoint keeps beside the pickle (the zip entry <archive>/data/<storage_key>).
struct PickledTensor {
  std::string name;   // state-dict key; nested dicts joined with '.'
  std::string dtype;  // numpy name of the storage's element type: "bfloat16", "float32", ...
  std::size_t itemsize = 0;
  std::string storage_key;
  std::int64_t storage_numel = 0;  // elements the storage holds
  std::int64_t offset = 0;         // first element, in the storage
  Shape shape;
  std::vector<std::int64_t> stride;  // in elements; checked to stay inside the storage

  bool contiguous() const;  // C order, so its bytes are one run of the storage
};

// Runs a torch.save pickle (data.pkl: a dict or OrderedDict of tensors, possibly nested, possibly
// nn.Parameters) and returns its tensors in insertion order. Only torch's tensor rebuilders,
// storage classes (through persistent ids) and OrderedDict are allowed; errors as below.
std::vector<PickledTensor> read_pickled_torch_tensors(std::span<const unsigned char> data,
                                                      const std::string& source);

// Runs the pickle in `data` and returns every array leaf of the nested dict it builds, in
// insertion order. `source` names the file in errors. Throws Error(file_format) for malformed or
// truncated pickles and Error(unsupported) for opcodes, globals or leaves outside the subset.
std::vector<PickledArray> read_pickled_arrays(std::span<const unsigned char> data,
                                              const std::string& source);

}  // namespace lwm::convert
