// Reading and writing the safetensors format: an 8-byte little-endian header length, a JSON
// header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}} padded with
// spaces, then the tensor bytes. Files are memory-mapped; tensors are views into the mapping.
// Every byte range, dtype and shape is checked against the file before anything is returned.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lwm/tensor.h"

namespace lwm {

class SafetensorsFile {
 public:
  // Maps and validates the whole header; throws Error(io / file_format / unsupported) naming the
  // file, and the tensor when one is at fault.
  explicit SafetensorsFile(const std::filesystem::path& path);

  const std::filesystem::path& path() const noexcept { return path_; }
  bool contains(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  // A view into the mapping (valid as long as any copy of the tensor lives); throws if absent.
  Tensor tensor(const std::string& name) const;

 private:
  struct Entry {
    DType dtype;
    Shape shape;
    std::size_t begin;
  };
  std::filesystem::path path_;
  std::shared_ptr<const void> mapping_;
  const unsigned char* data_ = nullptr;  // first byte after the header
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

// All weights of a model directory: model.safetensors, or the shards listed by
// model.safetensors.index.json ({"weight_map": {name: file}}).
class WeightStore {
 public:
  explicit WeightStore(const std::filesystem::path& model_dir);

  bool contains(const std::string& name) const;
  std::vector<std::string> names() const;
  Tensor tensor(const std::string& name) const;  // throws Error naming the directory and tensor
  // The file a tensor lives in (for messages).
  std::filesystem::path file_of(const std::string& name) const;

 private:
  std::filesystem::path dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::size_t> index_;  // tensor name → files_ position
};

// Writes tensors to `path` atomically (temporary file, fsync, rename). Data is 8-byte aligned.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace lwm
