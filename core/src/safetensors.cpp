#include "lwm/safetensors.h"

#include <algorithm>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "atomic_file.h"
#include "lwm/error.h"
#include "mapped_file.h"
#include "safetensors_format.h"

namespace lwm {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::size_t kLengthPrefixBytes = 8;  // u64 little-endian header length
constexpr std::size_t kDataAlignment = 8;
constexpr const char* kMetadataKey = "__metadata__";
constexpr const char* kSingleFileName = "model.safetensors";
constexpr const char* kIndexFileName = "model.safetensors.index.json";

std::string in_quotes(const fs::path& path) {
  return "'" + path.string() + "'";
}

[[noreturn]] void fail_file(ErrorKind kind, const fs::path& path, const std::string& problem) {
  throw Error(kind, "safetensors file " + in_quotes(path) + ": " + problem);
}

[[noreturn]] void fail_tensor(ErrorKind kind, const fs::path& path, const std::string& tensor,
                              const std::string& problem) {
  fail_file(kind, path, "tensor '" + tensor + "' " + problem);
}

std::uint64_t read_le_u64(const unsigned char* bytes) {
  std::uint64_t value = 0;
  for (std::size_t i = kLengthPrefixBytes; i-- > 0;) value = (value << 8) | bytes[i];
  return value;
}

// Only the dtypes the engine computes with; every other safetensors dtype (F64, I32, BOOL, ...)
// is valid in the format but unsupported here.
bool dtype_from_tag(const std::string& tag, DType& dtype) {
  if (tag == "F32")
    dtype = DType::f32;
  else if (tag == "BF16")
    dtype = DType::bf16;
  else if (tag == "F16")
    dtype = DType::f16;
  else
    return false;
  return true;
}

struct ByteRange {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  std::string tensor;
};

Shape parse_shape(const json& value, const fs::path& path, const std::string& name) {
  if (!value.is_array())
    fail_tensor(ErrorKind::file_format, path, name, "has a shape that is not a list");
  Shape shape;
  for (const auto& dim : value) {
    if (!dim.is_number_unsigned()) {
      fail_tensor(ErrorKind::file_format, path, name,
                  "has shape " + value.dump() + ": dimensions must be non-negative integers");
    }
    const auto size = dim.get<std::uint64_t>();
    if (size > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      fail_tensor(ErrorKind::file_format, path, name, "has an impossible shape " + value.dump());
    }
    shape.push_back(static_cast<std::int64_t>(size));
  }
  return shape;
}

ByteRange parse_offsets(const json& value, const fs::path& path, const std::string& name) {
  const bool well_formed = value.is_array() && value.size() == 2 && value[0].is_number_unsigned() &&
                           value[1].is_number_unsigned();
  if (!well_formed) {
    fail_tensor(
        ErrorKind::file_format, path, name,
        "has data_offsets " + value.dump() + ": expected [begin, end] of non-negative integers");
  }
  return {value[0].get<std::uint64_t>(), value[1].get<std::uint64_t>(), name};
}

// Bytes the shape needs, or throws when the element count overflows.
std::uint64_t expected_bytes(const Shape& shape, DType dtype, const fs::path& path,
                             const std::string& name) {
  std::uint64_t bytes = dtype_size(dtype);
  for (const auto dim : shape) {
    if (__builtin_mul_overflow(bytes, static_cast<std::uint64_t>(dim), &bytes)) {
      fail_tensor(ErrorKind::file_format, path, name,
                  "has a shape too large to address " + shape_string(shape));
    }
  }
  return bytes;
}

std::map<std::string, std::string> parse_metadata(const json& value, const fs::path& path) {
  if (!value.is_object()) fail_file(ErrorKind::file_format, path, "__metadata__ is not an object");
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      fail_file(ErrorKind::file_format, path,
                "__metadata__ value of '" + key + "' is not a string");
    }
    metadata[key] = item.get<std::string>();
  }
  return metadata;
}

json parse_header_json(const unsigned char* begin, std::size_t length, const fs::path& path) {
  json header;
  try {
    const auto* text = reinterpret_cast<const char*>(begin);
    header = json::parse(text, text + length);
  } catch (const json::parse_error& error) {
    fail_file(ErrorKind::file_format, path,
              std::string("header is not valid JSON (") + error.what() + ")");
  }
  if (!header.is_object()) fail_file(ErrorKind::file_format, path, "header is not a JSON object");
  return header;
}

// Ranges must lie inside the data section and must not share bytes (spec of the format; a lying
// header could otherwise alias one tensor's bytes as another's).
void check_no_overlap(std::vector<ByteRange> ranges, const fs::path& path) {
  std::erase_if(ranges, [](const ByteRange& r) { return r.begin == r.end; });
  std::sort(ranges.begin(), ranges.end(),
            [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      fail_tensor(ErrorKind::file_format, path, ranges[i].tensor,
                  "overlaps tensor '" + ranges[i - 1].tensor + "' (bytes " +
                      std::to_string(ranges[i].begin) + " < " + std::to_string(ranges[i - 1].end) +
                      ")");
    }
  }
}

}  // namespace

namespace safetensors_format {

const char* dtype_tag(DType dtype) noexcept {
  switch (dtype) {
    case DType::f32:
      return "F32";
    case DType::bf16:
      return "BF16";
    case DType::f16:
      return "F16";
  }
  return "";
}

std::string encode_header(const std::string& path, const std::vector<TensorRecord>& records,
                          const std::map<std::string, std::string>& metadata) {
  // ordered_json keeps the header in data order, which makes files easy to read by eye.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::uint64_t offset = 0;
  for (const auto& record : records) {
    if (record.name == kMetadataKey || header.contains(record.name)) {
      throw Error(ErrorKind::invalid_argument, "cannot write " + in_quotes(path) + ": tensor name '" +
                                                   record.name + "' is reserved or repeated");
    }
    const std::uint64_t bytes =
        static_cast<std::uint64_t>(shape_numel(record.shape)) * dtype_size(record.dtype);
    header[record.name] = {{"dtype", dtype_tag(record.dtype)},
                           {"shape", record.shape},
                           {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // Python's safetensors pads with spaces the same way; JSON ignores trailing whitespace.
  text.append((kDataAlignment - text.size() % kDataAlignment) % kDataAlignment, ' ');
  std::string encoded(kLengthPrefixBytes, '\0');
  for (std::size_t i = 0; i < kLengthPrefixBytes; ++i) {
    encoded[i] = static_cast<char>((static_cast<std::uint64_t>(text.size()) >> (8 * i)) & 0xffu);
  }
  return encoded + text;
}

}  // namespace safetensors_format

SafetensorsFile::SafetensorsFile(const fs::path& path) : path_(path) {
  const MappedFile mapped = map_file(path);
  if (mapped.size < kLengthPrefixBytes) {
    fail_file(ErrorKind::file_format, path,
              "truncated: " + std::to_string(mapped.size) +
                  " bytes, shorter than the 8-byte header length");
  }
  mapping_ = mapped.data;
  const auto* bytes = static_cast<const unsigned char*>(mapping_.get());
  const std::uint64_t header_length = read_le_u64(bytes);
  if (header_length > mapped.size - kLengthPrefixBytes) {
    fail_file(ErrorKind::file_format, path,
              "header length " + std::to_string(header_length) + " is larger than the file (" +
                  std::to_string(mapped.size) + " bytes): truncated or not a safetensors file");
  }
  const json header = parse_header_json(bytes + kLengthPrefixBytes, header_length, path);
  data_ = bytes + kLengthPrefixBytes + header_length;
  const std::uint64_t data_size = mapped.size - kLengthPrefixBytes - header_length;

  std::vector<ByteRange> ranges;
  for (const auto& [name, entry] : header.items()) {
    if (name == kMetadataKey) {
      metadata_ = parse_metadata(entry, path);
      continue;
    }
    if (!entry.is_object()) fail_tensor(ErrorKind::file_format, path, name, "is not a JSON object");
    for (const char* field : {"dtype", "shape", "data_offsets"}) {
      if (!entry.contains(field))
        fail_tensor(ErrorKind::file_format, path, name, std::string("has no ") + field);
    }
    if (!entry["dtype"].is_string())
      fail_tensor(ErrorKind::file_format, path, name, "has a dtype that is not a string");
    const auto tag = entry["dtype"].get<std::string>();
    DType dtype{};
    if (!dtype_from_tag(tag, dtype)) {
      fail_tensor(ErrorKind::unsupported, path, name,
                  "has dtype " + tag + ", which LWM Studio does not read (only F32, BF16, F16)");
    }
    Shape shape = parse_shape(entry["shape"], path, name);
    const ByteRange range = parse_offsets(entry["data_offsets"], path, name);
    if (range.end < range.begin) {
      fail_tensor(ErrorKind::file_format, path, name,
                  "ends before it begins (data_offsets [" + std::to_string(range.begin) + ", " +
                      std::to_string(range.end) + "])");
    }
    if (range.end > data_size) {
      fail_tensor(ErrorKind::file_format, path, name,
                  "ends at byte " + std::to_string(range.end) + " beyond the data section (" +
                      std::to_string(data_size) +
                      " bytes): the file is truncated or its header lies");
    }
    const std::uint64_t needed = expected_bytes(shape, dtype, path, name);
    if (range.end - range.begin != needed) {
      fail_tensor(ErrorKind::file_format, path, name,
                  "has " + std::to_string(range.end - range.begin) + " bytes but shape " +
                      shape_string(shape) + " of " + tag + " needs " + std::to_string(needed));
    }
    ranges.push_back(range);
    entries_[name] = Entry{dtype, std::move(shape), static_cast<std::size_t>(range.begin)};
  }
  check_no_overlap(std::move(ranges), path);
}

bool SafetensorsFile::contains(const std::string& name) const {
  return entries_.count(name) != 0;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& entry : entries_) out.push_back(entry.first);
  return out;
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  const auto found = entries_.find(name);
  if (found == entries_.end()) {
    throw Error(ErrorKind::invalid_argument,
                "safetensors file " + in_quotes(path_) + " has no tensor '" + name + "'");
  }
  const Entry& entry = found->second;
  return Tensor::view(entry.dtype, entry.shape, data_ + entry.begin, mapping_);
}

namespace {

json read_index(const fs::path& index_path) {
  std::ifstream in(index_path, std::ios::binary);
  if (!in) throw Error(ErrorKind::io, "cannot open safetensors index " + in_quotes(index_path));
  json index;
  try {
    index = json::parse(in);
  } catch (const json::parse_error& error) {
    throw Error(ErrorKind::file_format, "safetensors index " + in_quotes(index_path) +
                                            " is not valid JSON (" + error.what() + ")");
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
    throw Error(ErrorKind::file_format,
                "safetensors index " + in_quotes(index_path) + " has no \"weight_map\" object");
  }
  return index;
}

// A shard named by the index must be a file inside the model directory.
fs::path shard_path(const fs::path& dir, const fs::path& index_path, const std::string& tensor,
                    const json& file) {
  const fs::path name = file.is_string() ? fs::path(file.get<std::string>()) : fs::path();
  const bool escapes =
      name.empty() || name.is_absolute() ||
      std::any_of(name.begin(), name.end(), [](const fs::path& p) { return p == ".."; });
  if (escapes) {
    throw Error(ErrorKind::file_format,
                "safetensors index " + in_quotes(index_path) + " maps tensor '" + tensor + "' to " +
                    file.dump() + ", which is not a file name inside the model directory");
  }
  return dir / name;
}

}  // namespace

WeightStore::WeightStore(const fs::path& model_dir) : dir_(model_dir) {
  const fs::path index_path = model_dir / kIndexFileName;
  const fs::path single_path = model_dir / kSingleFileName;
  if (!fs::exists(index_path)) {
    if (!fs::exists(single_path)) {
      throw Error(ErrorKind::io, "model directory " + in_quotes(model_dir) + " has neither " +
                                     kSingleFileName + " nor " + kIndexFileName);
    }
    files_.push_back(std::make_unique<SafetensorsFile>(single_path));
    for (const auto& name : files_.front()->names()) index_[name] = 0;
    return;
  }
  const json index = read_index(index_path);
  std::map<fs::path, std::size_t> opened;  // shard path → files_ position
  for (const auto& [tensor, file] : index["weight_map"].items()) {
    const fs::path shard = shard_path(model_dir, index_path, tensor, file);
    auto found = opened.find(shard);
    if (found == opened.end()) {
      if (!fs::exists(shard)) {
        throw Error(ErrorKind::io, "safetensors index " + in_quotes(index_path) + " lists tensor '" +
                                       tensor + "' in " + in_quotes(shard) + ", which does not exist");
      }
      files_.push_back(std::make_unique<SafetensorsFile>(shard));
      found = opened.emplace(shard, files_.size() - 1).first;
    }
    if (!files_[found->second]->contains(tensor)) {
      throw Error(ErrorKind::file_format, "safetensors index " + in_quotes(index_path) +
                                              " lists tensor '" + tensor + "' in " + in_quotes(shard) +
                                              ", but that file has no such tensor");
    }
    index_[tensor] = found->second;
  }
}

bool WeightStore::contains(const std::string& name) const {
  return index_.count(name) != 0;
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  out.reserve(index_.size());
  for (const auto& entry : index_) out.push_back(entry.first);
  return out;
}

namespace {

std::size_t position_in(const std::map<std::string, std::size_t>& index, const fs::path& dir,
                        const std::string& name) {
  const auto found = index.find(name);
  if (found == index.end()) {
    throw Error(ErrorKind::invalid_argument,
                "model directory " + in_quotes(dir) + " has no tensor '" + name + "'");
  }
  return found->second;
}

}  // namespace

Tensor WeightStore::tensor(const std::string& name) const {
  return files_[position_in(index_, dir_, name)]->tensor(name);
}

fs::path WeightStore::file_of(const std::string& name) const {
  return files_[position_in(index_, dir_, name)]->path();
}

void write_safetensors(const fs::path& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<safetensors_format::TensorRecord> records;
  records.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) {
      throw Error(ErrorKind::invalid_argument,
                  "cannot write " + in_quotes(path) + ": tensor '" + name + "' has no data");
    }
    records.push_back({name, tensor.dtype(), tensor.shape()});
  }
  const std::string header = safetensors_format::encode_header(path.string(), records, metadata);
  AtomicFileWriter writer(path);
  writer.write(header);
  for (const auto& entry : tensors) writer.write(entry.second.raw(), entry.second.nbytes());
  writer.commit();
}

}  // namespace lwm
