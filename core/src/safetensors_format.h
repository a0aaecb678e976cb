// The safetensors header on its own, so that a writer can stream tensor bytes one tensor at a time
// (the model maker writes LWM-7B shards without holding a shard in memory).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lwm/dtype.h"
#include "lwm/tensor.h"

namespace lwm::safetensors_format {

// What the header records for one tensor; its bytes follow the previous tensor's.
struct TensorRecord {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
};

// "F32", "BF16", "F16": the safetensors spelling of a dtype.
const char* dtype_tag(DType dtype) noexcept;

// The 8-byte little-endian length followed by the JSON header, padded with spaces so that the
// data section starts 8-byte aligned. Tensors are laid out back to back in `records` order.
// Throws Error(invalid_argument) naming `path` for duplicate or reserved names.
std::string encode_header(const std::string& path, const std::vector<TensorRecord>& records,
                          const std::map<std::string, std::string>& metadata);

}  // namespace lwm::safetensors_format
