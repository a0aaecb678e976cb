// Session::save and Session::restore (session.h): the KV cache on disk.
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "atomic_file.h"
#include "lwm/error.h"
#include "lwm/session.h"
#include "sha256.h"

namespace lwm {
namespace {

constexpr char kMagic[8] = {'L', 'W', 'M', 'K', 'V', 'S', 'N', 'P'};
constexpr std::uint32_t kVersion = 1;

// Writes through an AtomicFileWriter and hashes what it writes.
class HashingWriter {
 public:
  explicit HashingWriter(const std::filesystem::path& file) : file_(file) {}
  void write(const void* data, std::size_t size) {
    file_.write(data, size);
    hash_.update(data, size);
  }
  void commit() {
    const auto digest = hash_.finish();
    file_.write(digest.data(), digest.size());
    file_.commit();
  }

 private:
  AtomicFileWriter file_;
  Sha256 hash_;
};

class HashingReader {
 public:
  explicit HashingReader(const std::filesystem::path& file)
      : path_(file), in_(file, std::ios::binary) {
    if (!in_) {
      throw Error(ErrorKind::io, "cannot open the session snapshot '" + file.string() + "'");
    }
  }
  void read(void* data, std::size_t size) {
    in_.read(static_cast<char*>(data), static_cast<std::streamsize>(size));
    if (static_cast<std::size_t>(in_.gcount()) != size) corrupt("it ends early (truncated)");
    hash_.update(data, size);
  }
  void check_digest() {
    std::array<std::uint8_t, 32> stored{};
    in_.read(reinterpret_cast<char*>(stored.data()), stored.size());
    if (static_cast<std::size_t>(in_.gcount()) != stored.size())
      corrupt("it ends early (truncated)");
    if (stored != hash_.finish()) corrupt("its checksum does not match (corrupt)");
    if (in_.peek() != std::char_traits<char>::eof()) corrupt("it has bytes after its checksum");
  }
  [[noreturn]] void corrupt(const std::string& why) const {
    throw Error(ErrorKind::file_format, "session snapshot '" + path_.string() + "' is unusable: " +
                                            why + "; delete it and ingest the source again");
  }

 private:
  std::filesystem::path path_;
  std::ifstream in_;
  Sha256 hash_;
};

std::int64_t row_floats(const ModelConfig& config) {
  return config.num_kv_heads * config.head_dim();
}

// The session's KV cache in host memory; a cache on a GPU has no snapshot format yet.
KVCache& host_cache_of(const SequenceRunner& runner, const char* action) {
  KVCache* cache = runner.host_cache();
  if (cache == nullptr) {
    throw Error(ErrorKind::unsupported, std::string("cannot ") + action +
                                            " a session snapshot of a KV cache on " +
                                            runner.device() +
                                            " yet; the source is ingested again instead");
  }
  return *cache;
}

}  // namespace

void Session::save(const std::filesystem::path& file) const {
  const ModelConfig& config = model_.config();
  const KVCache& cache = host_cache_of(*runner_, "save");
  const std::int64_t n = cache.size();
  const nlohmann::json header = {{"format", "lwm-kv-snapshot"},
                                 {"format_version", kVersion},
                                 {"model", config.to_json()},
                                 {"tokens", n},
                                 {"layers", config.num_layers},
                                 {"row_floats", row_floats(config)},
                                 {"dtype", "f32"}};
  const std::string json = header.dump();
  HashingWriter out(file);
  out.write(kMagic, sizeof kMagic);
  out.write(&kVersion, 4);
  const auto json_size = static_cast<std::uint32_t>(json.size());
  out.write(&json_size, 4);
  out.write(json.data(), json.size());
  const auto count = static_cast<std::size_t>(n);
  out.write(cached_.tokens().data(), count * 4);
  std::vector<std::uint8_t> mask(count, 0);
  if (!cached_.vision_mask().empty()) std::memcpy(mask.data(), cached_.vision_mask().data(), count);
  out.write(mask.data(), count);
  const auto layer_bytes = count * static_cast<std::size_t>(row_floats(config)) * 4;
  for (std::int64_t layer = 0; layer < config.num_layers; ++layer) {
    out.write(cache.keys(layer), layer_bytes);
    out.write(cache.values(layer), layer_bytes);
  }
  out.commit();
}

std::int64_t Session::restore(const std::filesystem::path& file) {
  const ModelConfig& config = model_.config();
  KVCache& cache = host_cache_of(*runner_, "restore");
  HashingReader in(file);
  char magic[8];
  in.read(magic, sizeof magic);
  if (std::memcmp(magic, kMagic, sizeof magic) != 0) in.corrupt("it is not a session snapshot");
  std::uint32_t version = 0;
  std::uint32_t json_size = 0;
  in.read(&version, 4);
  if (version != kVersion) {
    in.corrupt("its format version is " + std::to_string(version) + ", this build reads " +
               std::to_string(kVersion));
  }
  in.read(&json_size, 4);
  if (json_size > (1u << 24)) in.corrupt("its header is implausibly large");
  std::string json(json_size, '\0');
  in.read(json.data(), json.size());
  nlohmann::json header;
  std::int64_t n = 0;
  try {
    header = nlohmann::json::parse(json);
    if (header.at("format").get<std::string>() != "lwm-kv-snapshot") {
      in.corrupt("its header names another format");
    }
    // The model first: a snapshot of another model is the likeliest mistake, so name the field.
    const auto& saved = header.at("model");
    const nlohmann::json expected = config.to_json();
    for (const auto& [key, value] : expected.items()) {
      if (!saved.contains(key) || saved[key] != value) {
        in.corrupt("it was made by another model ('" + key + "' is " +
                   (saved.contains(key) ? saved[key].dump() : "absent") + ", this model has " +
                   value.dump() + ")");
      }
    }
    n = header.at("tokens").get<std::int64_t>();
    if (header.at("row_floats").get<std::int64_t>() != row_floats(config) ||
        header.at("layers").get<std::int64_t>() != config.num_layers || n < 0) {
      in.corrupt("its header does not describe this model's cache");
    }
  } catch (const nlohmann::json::exception& error) {
    in.corrupt(std::string("its header is not valid: ") + error.what());
  }
  if (n > cache.capacity()) {
    throw Error(ErrorKind::out_of_memory,
                "session snapshot '" + file.string() + "' holds " + std::to_string(n) +
                    " tokens but this session's context holds " +
                    std::to_string(cache.capacity()) + "; open it with a larger context");
  }
  const auto count = static_cast<std::size_t>(n);
  std::vector<std::int32_t> tokens(count);
  std::vector<std::uint8_t> mask(count);
  in.read(tokens.data(), count * 4);
  in.read(mask.data(), count);
  // Only the tokens that agree with this session's source are kept.
  const std::int64_t use = source_.common_prefix(tokens, mask);
  truncate_cache(0);
  const auto row = static_cast<std::size_t>(row_floats(config));
  const auto used_floats = static_cast<std::size_t>(use) * row;
  std::vector<float> rest((count - static_cast<std::size_t>(use)) * row);
  for (std::int64_t layer = 0; layer < config.num_layers; ++layer) {
    for (float* target : {cache.keys(layer), cache.values(layer)}) {
      in.read(target, used_floats * 4);
      in.read(rest.data(), rest.size() * 4);
    }
  }
  in.check_digest();
  cache.advance(use);
  cached_ = source_.prefix(use);
  return use;
}

}  // namespace lwm
