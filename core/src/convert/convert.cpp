#include "lwm/convert.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "atomic_file.h"
#include "lwm/error.h"
#include "lwm/safetensors.h"
#include "lwm/tokenizer.h"
#include "mapped_file.h"
#include "msgpack_records.h"
#include "pickle_reader.h"
#include "safetensors_format.h"
#include "torch_checkpoint.h"
#include "vqgan_params.h"
#include "weight_names.h"

namespace lwm {
namespace {

namespace fs = std::filesystem;
using convert::Bytes;
using weight_names::LayerMatrix;
using weight_names::LayerNorm;

constexpr std::size_t kWriteSlice = std::size_t{64} << 20;  // bytes between progress reports
constexpr const char* kVqganFile = "vqgan.safetensors";
// File names tux and the Hugging Face LWM-*-Jax repos use (spec §4.2, §4.3).
constexpr const char* kTuxFileNames[] = {"params", "streaming_params", "streaming_train_state"};

// One tensor to write: its bytes are pieces of a mapped source (or memory it keeps alive), or
// are read by `load` when the tensor is written (sources that are not mapped: PyTorch zips), so
// only one such tensor is in memory at a time.
struct OutputTensor {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  std::vector<Bytes> pieces;
  bool release_after_write = false;  // pieces are in a private file mapping we may drop pages of
  std::function<std::vector<unsigned char>()> load;

  std::uint64_t nbytes() const {
    if (load) return static_cast<std::uint64_t>(shape_numel(shape)) * dtype_size(dtype);
    std::uint64_t n = 0;
    for (const auto& p : pieces) n += p.size();
    return n;
  }
};

std::string named(const fs::path& path) {
  return "'" + path.string() + "'";
}

DType storage_dtype(const std::string& numpy_name, const std::string& what) {
  if (numpy_name == "bfloat16") return DType::bf16;
  if (numpy_name == "float16") return DType::f16;
  if (numpy_name == "float32") return DType::f32;
  throw Error(ErrorKind::unsupported, what + " has dtype " + numpy_name +
                                          "; parameters must be bfloat16, float16 or float32");
}

// '.'-joined names need parts that are non-empty and dot-free, or two paths could collide.
std::string dotted_name(const std::vector<std::string>& key, const std::string& source) {
  std::string name;
  for (const auto& part : key) {
    if (part.empty() || part.find('.') != std::string::npos) {
      std::string slash;
      for (const auto& p : key) slash += (slash.empty() ? "" : "/") + p;
      throw Error(ErrorKind::file_format, named(source) + ": key '" + slash +
                                              "' has an empty part or a part containing '.'");
    }
    if (!name.empty()) name.push_back('.');
    name += part;
  }
  return name;
}

// ---- progress, staging --------------------------------------------------------------------

class ByteProgress {
 public:
  ByteProgress(const ProgressCallback& callback, std::int64_t total, const fs::path& target)
      : reporter_(callback, total, "converting into " + named(target), "bytes") {}
  void add(std::int64_t bytes) {
    done_ += bytes;
    report();
  }
  void report() const { reporter_.report(done_); }

 private:
  ProgressReporter reporter_;
  std::int64_t done_ = 0;
};

// Drops the pages of a consumed source range from a private read-only file mapping, so a 13 GB
// conversion does not leave 13 GB resident; they would be re-read from the file if touched again.
void release_pages(const unsigned char* data, std::size_t size) {
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<std::uintptr_t>(data) + page - 1) / page * page;
  const auto end = (reinterpret_cast<std::uintptr_t>(data) + size) / page * page;
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

void write_tensor_file(const fs::path& path, const std::vector<const OutputTensor*>& tensors,
                       ByteProgress& progress) {
  std::vector<safetensors_format::TensorRecord> records;
  for (const auto* t : tensors) records.push_back({t->name, t->dtype, t->shape});
  AtomicFileWriter writer(path);
  writer.write(safetensors_format::encode_header(path.string(), records, {{"format", "pt"}}));
  for (const auto* t : tensors) {
    std::vector<unsigned char> loaded;
    std::vector<Bytes> pieces_of_loaded;
    if (t->load) {
      loaded = t->load();
      pieces_of_loaded = {Bytes(loaded.data(), loaded.size())};
    }
    for (const Bytes& piece : t->load ? pieces_of_loaded : t->pieces) {
      for (std::size_t at = 0; at < piece.size(); at += kWriteSlice) {
        const std::size_t n = std::min(kWriteSlice, piece.size() - at);
        writer.write(piece.data() + at, n);
        if (t->release_after_write) release_pages(piece.data() + at, n);
        progress.add(static_cast<std::int64_t>(n));
      }
    }
  }
  writer.commit();
}

// pytorch_model.bin or pytorch_model-XXXXX-of-YYYYY.bin files of a Hugging Face directory, in
// name order.
std::vector<fs::path> pytorch_checkpoint_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("pytorch_model") && entry.path().extension() == ".bin") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// pytorch_model.bin.index.json, when there is one, lists every tensor: a missing shard or tensor
// is named, never converted into a model with a hole in it.
void check_pytorch_index(const fs::path& dir, const std::vector<OutputTensor>& tensors) {
  const fs::path index = dir / "pytorch_model.bin.index.json";
  if (!fs::exists(index)) return;
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(std::ifstream(index));
  } catch (const nlohmann::json::exception& e) {
    throw Error(ErrorKind::file_format, named(index) + " is not valid JSON: " + e.what());
  }
  if (!json.contains("weight_map") || !json["weight_map"].is_object()) {
    throw Error(ErrorKind::file_format, named(index) + " has no \"weight_map\" object");
  }
  std::set<std::string> present;
  for (const auto& t : tensors) present.insert(t.name);
  for (const auto& [name, file] : json["weight_map"].items()) {
    if (!present.contains(name) && !name.ends_with(".rotary_emb.inv_freq")) {
      throw Error(ErrorKind::file_format, named(index) + " lists tensor '" + name + "' in " +
                                              file.dump() +
                                              ", which is not in any pytorch_model*.bin of " +
                                              named(dir) + " (a shard is missing or incomplete)");
    }
  }
}

std::string shard_name(std::size_t index, std::size_t count) {
  if (count == 1) return "model.safetensors";
  char name[64];
  std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return name;
}

// Consecutive tensors fill a shard up to max_bytes; a larger tensor gets a shard of its own.
std::size_t write_model_shards(const fs::path& dir, const std::vector<OutputTensor>& tensors,
                               std::int64_t max_bytes, ByteProgress& progress) {
  std::vector<std::vector<const OutputTensor*>> shards;
  std::uint64_t shard_bytes = 0;
  for (const auto& t : tensors) {
    if (shards.empty() || (!shards.back().empty() &&
                           shard_bytes + t.nbytes() > static_cast<std::uint64_t>(max_bytes))) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(&t);
    shard_bytes += t.nbytes();
  }
  nlohmann::json weight_map = nlohmann::json::object();
  std::uint64_t total = 0;
  for (std::size_t s = 0; s < shards.size(); ++s) {
    write_tensor_file(dir / shard_name(s, shards.size()), shards[s], progress);
    for (const auto* t : shards[s]) {
      weight_map[t->name] = shard_name(s, shards.size());
      total += t->nbytes();
    }
  }
  if (shards.size() > 1) {
    const nlohmann::json index = {{"metadata", {{"total_size", total}}},
                                  {"weight_map", weight_map}};
    write_file_atomically(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  }
  return shards.size();
}

// ---- checking tensors against the config --------------------------------------------------

// Every expected tensor must be present with its shape, and nothing else may be: a converter
// that drops or invents tensors would produce a model that runs but answers wrongly.
void check_tensor_set(const std::map<std::string, Shape>& expected,
                      const std::vector<OutputTensor>& tensors, const std::string& source,
                      const std::string& config_name) {
  std::vector<std::string> missing, extra, wrong;
  std::set<std::string> seen;
  for (const auto& t : tensors) {
    if (!seen.insert(t.name).second) {
      throw Error(ErrorKind::file_format,
                  named(source) + " holds the tensor '" + t.name + "' twice");
    }
    const auto found = expected.find(t.name);
    if (found == expected.end()) {
      extra.push_back(t.name + " " + shape_string(t.shape));
    } else if (found->second != t.shape) {
      wrong.push_back(t.name + " is " + shape_string(t.shape) + ", expected " +
                      shape_string(found->second));
    }
  }
  for (const auto& [name, shape] : expected) {
    if (seen.count(name) == 0) missing.push_back(name + " " + shape_string(shape));
  }
  if (missing.empty() && extra.empty() && wrong.empty()) return;
  auto list = [](const char* title, const std::vector<std::string>& names) {
    if (names.empty()) return std::string();
    std::string text = std::string("; ") + title + " (" + std::to_string(names.size()) + "): ";
    for (std::size_t i = 0; i < names.size() && i < 8; ++i) text += (i ? ", " : "") + names[i];
    if (names.size() > 8) text += ", …";
    return text;
  };
  throw Error(ErrorKind::file_format, named(source) + " does not match " + config_name +
                                          list("wrong shapes", wrong) + list("missing", missing) +
                                          list("unexpected", extra));
}

Shape matrix_shape(WeightConvention c, std::int64_t in, std::int64_t out) {
  return c == WeightConvention::jax ? Shape{in, out} : Shape{out, in};
}

std::map<std::string, Shape> expected_text_tensors(const ModelConfig& config, bool stacked,
                                                   std::int64_t vision_vocab) {
  const WeightConvention c = config.convention;
  const std::int64_t hidden = config.hidden_size;
  const std::int64_t layers = config.num_layers;
  std::map<std::string, Shape> out;
  out[weight_names::token_embedding(c)] = {config.vocab_size, hidden};
  out[weight_names::final_norm(c)] = {hidden};
  if (!config.tie_word_embeddings)
    out[weight_names::lm_head(c)] = matrix_shape(c, hidden, config.vocab_size);
  for (const LayerMatrix m : {LayerMatrix::wq, LayerMatrix::wk, LayerMatrix::wv, LayerMatrix::wo,
                              LayerMatrix::w1, LayerMatrix::w2, LayerMatrix::w3}) {
    const std::int64_t in = weight_names::matrix_in(config, m);
    const std::int64_t o = weight_names::matrix_out(config, m);
    if (stacked) {
      out[weight_names::stacked_layer_matrix(m)] = {layers, in, o};
    } else {
      for (std::int64_t l = 0; l < layers; ++l)
        out[weight_names::layer_matrix(c, l, m)] = matrix_shape(c, in, o);
    }
  }
  for (const LayerNorm n : {LayerNorm::attention, LayerNorm::ffn}) {
    if (stacked) {
      out[weight_names::stacked_layer_norm(n)] = {layers, hidden};
    } else {
      for (std::int64_t l = 0; l < layers; ++l) out[weight_names::layer_norm(c, l, n)] = {hidden};
    }
  }
  if (vision_vocab > 0) {  // spec §1.5, §2.1
    out["transformer.vte.embedding"] = {vision_vocab, hidden};
    out["vision_head.kernel"] = {hidden, vision_vocab};
  }
  return out;
}

// ---- config -------------------------------------------------------------------------------

const OutputTensor* find_tensor(const std::vector<OutputTensor>& tensors, const std::string& name) {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

// `length` bytes from byte `offset` of the concatenation of `pieces` (whose first bytes are at
// `starts`), appended to `out` as spans of the pieces: a range may straddle chunk boundaries.
void append_range(const std::vector<Bytes>& pieces, const std::vector<std::uint64_t>& starts,
                  std::uint64_t offset, std::uint64_t length, std::vector<Bytes>& out) {
  auto at = static_cast<std::size_t>(std::upper_bound(starts.begin(), starts.end(), offset) -
                                     starts.begin() - 1);
  while (length > 0) {
    const std::uint64_t within = offset - starts[at];
    const std::uint64_t n = std::min<std::uint64_t>(length, pieces[at].size() - within);
    out.push_back(
        pieces[at].subspan(static_cast<std::size_t>(within), static_cast<std::size_t>(n)));
    offset += n;
    length -= n;
    ++at;
  }
}

// spec §1.5: with param_scan_axis=1 the scanned tensors hold the layer on their second axis
// ([in, L, out]; norms [hidden, L]). The model reads [L, …], so each is re-ordered layer by layer
// as spans of its source (nothing copied).
void move_layer_axis_first(OutputTensor& t) {
  const std::int64_t outer = t.shape[0];
  const std::int64_t layers = t.shape[1];
  std::int64_t inner = 1;
  for (std::size_t d = 2; d < t.shape.size(); ++d) inner *= t.shape[d];
  const std::uint64_t run = static_cast<std::uint64_t>(inner) * dtype_size(t.dtype);
  std::vector<std::uint64_t> starts;
  std::uint64_t total = 0;
  for (const Bytes& piece : t.pieces) {
    starts.push_back(total);
    total += piece.size();
  }
  std::vector<Bytes> moved;
  moved.reserve(static_cast<std::size_t>(outer * layers));
  for (std::int64_t l = 0; l < layers; ++l) {
    for (std::int64_t i = 0; i < outer; ++i) {
      append_range(t.pieces, starts, static_cast<std::uint64_t>(i * layers + l) * run, run, moved);
    }
  }
  t.pieces = std::move(moved);
  std::swap(t.shape[0], t.shape[1]);
  // Pages are now read out of order; dropping them after each span would re-read them.
  t.release_after_write = false;
}

// Finds the scan axis of a stacked JAX checkpoint from wq ([L, hidden, hidden] or
// [hidden, L, hidden]) and moves the layer axis of every scanned tensor first when it is 1.
void normalise_scan_axis(std::vector<OutputTensor>& tensors, const fs::path& file,
                         std::vector<std::string>& notes) {
  OutputTensor* wq = nullptr;
  const OutputTensor* wte = nullptr;
  for (auto& t : tensors) {
    if (t.name == weight_names::stacked_layer_matrix(LayerMatrix::wq)) wq = &t;
    if (t.name == weight_names::token_embedding(WeightConvention::jax)) wte = &t;
  }
  if (wq == nullptr || wte == nullptr || wq->shape.size() != 3 || wte->shape.size() != 2) return;
  const std::int64_t hidden = wte->shape[1];
  const Shape& s = wq->shape;
  const bool axis0 = s[1] == hidden && s[2] == hidden;
  const bool axis1 = s[0] == hidden && s[2] == hidden;
  if (axis0 && axis1) {
    notes.push_back(
        "the scanned tensors have as many layers as hidden units; read them with the "
        "layer axis first (param_scan_axis=0, what LWM's released checkpoints use)");
  }
  if (!axis1 || axis0) return;
  const std::int64_t layers = s[1];
  const std::string prefix = "transformer.h.scan_decoder.";
  for (auto& t : tensors) {
    if (t.name.rfind(prefix, 0) != 0) continue;
    if (t.shape.size() < 2 || t.shape[1] != layers) {
      throw Error(ErrorKind::file_format,
                  named(file) + ": '" + t.name + "' has shape " + shape_string(t.shape) +
                      ", but its wq " + shape_string(s) + " says param_scan_axis=1, which puts " +
                      std::to_string(layers) +
                      " layers on the second axis of every scanned tensor");
    }
    move_layer_axis_first(t);
  }
  notes.push_back("param_scan_axis=1: moved the layer axis of the scanned tensors first");
}

// What the JAX weights say about the config (spec §1.5).
struct InferredShapes {
  std::int64_t vocab = 0, hidden = 0, intermediate = 0, layers = 0, vision_vocab = 0;
  bool stacked = false;
};

InferredShapes infer_jax_shapes(const std::vector<OutputTensor>& tensors,
                                const std::string& source) {
  InferredShapes s;
  const auto* wte = find_tensor(tensors, weight_names::token_embedding(WeightConvention::jax));
  if (wte == nullptr || wte->shape.size() != 2) {
    throw Error(ErrorKind::file_format,
                named(source) +
                    " has no 2-D 'transformer/wte/embedding'; it is not an LWM "
                    "parameter file");
  }
  s.vocab = wte->shape[0];
  s.hidden = wte->shape[1];
  const auto* stacked_w1 =
      find_tensor(tensors, weight_names::stacked_layer_matrix(LayerMatrix::w1));
  s.stacked = find_tensor(tensors, weight_names::stacked_layer_matrix(LayerMatrix::wq)) != nullptr;
  if (s.stacked) {
    if (stacked_w1 != nullptr && stacked_w1->shape.size() == 3) {
      s.layers = stacked_w1->shape[0];
      s.intermediate = stacked_w1->shape[2];
    }
  } else {
    std::set<std::string> layer_ids;
    for (const auto& t : tensors) {
      if (t.name.rfind("transformer.h.", 0) == 0) {
        const auto end = t.name.find('.', 14);
        layer_ids.insert(
            t.name.substr(14, end == std::string::npos ? std::string::npos : end - 14));
      }
    }
    s.layers = static_cast<std::int64_t>(layer_ids.size());
    const auto* w1 =
        find_tensor(tensors, weight_names::layer_matrix(WeightConvention::jax, 0, LayerMatrix::w1));
    if (w1 != nullptr && w1->shape.size() == 2) s.intermediate = w1->shape[1];
  }
  if (const auto* vte = find_tensor(tensors, "transformer.vte.embedding");
      vte != nullptr && !vte->shape.empty()) {
    s.vision_vocab = vte->shape[0];
  } else if (const auto* head = find_tensor(tensors, "vision_head.kernel");
             head != nullptr && head->shape.size() == 2) {
    s.vision_vocab = head->shape[1];
  }
  return s;
}

const char* kPresetNames[] = {"7b", "13b",  "30b",  "65b",   "1b",
                              "3b", "200m", "100m", "debug", "tiny"};

// The config named by the options, or the LWM preset whose sizes the weights have.
ModelConfig base_config(const ConvertOptions& options, const InferredShapes* inferred,
                        std::string& name, std::vector<std::string>& notes) {
  if (!options.preset.empty() && !options.config_file.empty()) {
    throw Error(ErrorKind::invalid_argument, "give a preset or a config file, not both");
  }
  if (!options.config_file.empty()) {
    name = "the config " + named(options.config_file);
    return ModelConfig::load(options.config_file);
  }
  if (!options.preset.empty()) {
    name = "the preset '" + options.preset + "'";
    return ModelConfig::preset(options.preset);
  }
  if (inferred == nullptr)
    throw Error(ErrorKind::invalid_argument, "a config is needed: give a preset or a config file");
  for (const char* preset : kPresetNames) {
    ModelConfig config = ModelConfig::preset(preset);
    if (config.hidden_size == inferred->hidden &&
        config.intermediate_size == inferred->intermediate) {
      config.vocab_size = inferred->vocab;
      config.num_layers = inferred->layers;
      name = "the config inferred from the weights (LWM preset '" + std::string(preset) + "')";
      notes.push_back("config: hidden size " + std::to_string(inferred->hidden) +
                      " and intermediate size " + std::to_string(inferred->intermediate) +
                      " match the LWM preset '" + preset +
                      "'; its head count and norm epsilon were used");
      return config;
    }
  }
  throw Error(ErrorKind::config,
              "the weights (hidden size " + std::to_string(inferred->hidden) +
                  ", intermediate size " + std::to_string(inferred->intermediate) +
                  ") match no LWM preset, so the number of attention heads is unknown; give "
                  "--preset or --config");
}

void apply_overrides(ModelConfig& config, const ConvertOptions& options,
                     std::vector<std::string>& notes, bool warn_theta) {
  if (options.rope_theta) config.rope_theta = *options.rope_theta;
  if (options.max_sequence_length) config.max_sequence_length = *options.max_sequence_length;
  if (warn_theta && !options.rope_theta && options.config_file.empty()) {
    char theta[32];
    std::snprintf(theta, sizeof theta, "%g", config.rope_theta);
    notes.push_back(
        std::string("theta: the checkpoint does not record RoPE theta; using ") + theta +
        ". LWM's long-context models need theta 5e7 (1M) or their stage's value (spec §5.8): pass "
        "--theta");
  }
}

// bos/eos from the tokenizer, and every id it makes must have an embedding row.
void check_tokenizer(const fs::path& file, ModelConfig& config) {
  const Tokenizer tokenizer(file);
  if (tokenizer.vocab_size() > config.vocab_size) {
    throw Error(ErrorKind::config,
                "tokenizer " + named(file) + " has " + std::to_string(tokenizer.vocab_size()) +
                    " pieces but the model's vocabulary is " + std::to_string(config.vocab_size));
  }
  config.bos_token_id = tokenizer.bos_id();
  config.eos_token_id = tokenizer.eos_id();
}

// ---- sources ------------------------------------------------------------------------------

struct Sniffed {
  ConvertSource kind;
  fs::path file;  // the checkpoint file (or the HF directory)
};

// spec §4.1: a record stream starts with fixarray(2); a flax tree with a map; a pickle with PROTO.
ConvertSource sniff_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(ErrorKind::io, "cannot open " + named(file));
  unsigned char head[2] = {0, 0};
  in.read(reinterpret_cast<char*>(head), 2);
  const auto got = in.gcount();
  if (got >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5)
    return ConvertSource::vqgan_pickle;
  if (got >= 1 && head[0] == 0x92)
    return ConvertSource::tux_params;  // train state decided by its keys
  if (got >= 1 && ((head[0] >= 0x80 && head[0] <= 0x8f) || head[0] == 0xde || head[0] == 0xdf)) {
    return ConvertSource::flax_params;
  }
  throw Error(ErrorKind::file_format,
              named(file) +
                  " is not a tux checkpoint, a flax msgpack file, a VQGAN pickle "
                  "or a Hugging Face model directory");
}

Sniffed locate_source(const fs::path& source) {
  if (!fs::exists(source))
    throw Error(ErrorKind::io, "the source " + named(source) + " does not exist");
  if (!fs::is_directory(source)) return {sniff_file(source), source};
  if (fs::exists(source / "config.json")) return {ConvertSource::hf_directory, source};
  for (const char* name : kTuxFileNames) {
    if (fs::is_regular_file(source / name)) return {sniff_file(source / name), source / name};
  }
  throw Error(ErrorKind::file_format,
              "the directory " + named(source) +
                  " holds neither config.json (a Hugging Face model) nor a tux checkpoint "
                  "named params, streaming_params or streaming_train_state");
}

// Reads a tux or flax file into output tensors (spans into the mapping) and says which kind it was.
std::vector<OutputTensor> read_jax_tensors(const MappedFile& mapped, const fs::path& file,
                                           ConvertSource& kind, std::vector<std::string>& notes) {
  const Bytes data(static_cast<const unsigned char*>(mapped.data.get()), mapped.size);
  std::vector<convert::ArrayLeaf> leaves;
  if (kind == ConvertSource::flax_params) {
    convert::read_flax_tree(data, file.string(),
                            [&](convert::ArrayLeaf&& leaf) { leaves.push_back(std::move(leaf)); });
  } else {
    convert::MsgpackRecordReader reader(data, file.string());
    convert::ArrayLeaf leaf;
    while (reader.next(leaf)) leaves.push_back(leaf);
  }
  auto starts_with = [](const convert::ArrayLeaf& leaf, std::initializer_list<const char*> prefix) {
    if (leaf.key.size() < prefix.size()) return false;
    std::size_t i = 0;
    for (const char* p : prefix) {
      if (leaf.key[i++] != p) return false;
    }
    return true;
  };
  // spec §4.2: a train state keeps the model under params/params/; a bare {"params": …} tree
  // (flax_params of a variables dict) under params/.
  std::size_t strip = 0;
  if (std::any_of(leaves.begin(), leaves.end(), [&](const auto& l) {
        return starts_with(l, {"params", "params"});
      })) {
    strip = 2;
    if (kind == ConvertSource::tux_params) kind = ConvertSource::tux_train_state;
  } else if (!leaves.empty() && std::all_of(leaves.begin(), leaves.end(), [&](const auto& l) {
               return starts_with(l, {"params"});
             })) {
    strip = 1;
  }
  std::vector<OutputTensor> tensors;
  std::size_t skipped = 0;
  for (auto& leaf : leaves) {
    if (strip == 2 && !starts_with(leaf, {"params", "params"})) {
      ++skipped;  // step, opt_state/…: not parameters
      continue;
    }
    std::vector<std::string> key(leaf.key.begin() + static_cast<std::ptrdiff_t>(strip),
                                 leaf.key.end());
    if (key.empty())
      throw Error(ErrorKind::file_format, named(file) + ": a leaf sits directly under 'params'");
    const std::string name = dotted_name(key, file.string());
    if (leaf.kind != convert::LeafKind::array) {
      throw Error(ErrorKind::file_format, named(file) + ": the parameter '" + leaf.key_string() +
                                              "' is a scalar, not an array");
    }
    OutputTensor t;
    t.name = name;
    t.dtype =
        storage_dtype(leaf.dtype, named(file) + ": the parameter '" + leaf.key_string() + "'");
    t.shape = leaf.shape;
    t.pieces = std::move(leaf.pieces);
    t.release_after_write = true;
    tensors.push_back(std::move(t));
  }
  if (skipped > 0) {
    notes.push_back("train state: kept the params/params/ leaves, skipped " +
                    std::to_string(skipped) + " other leaves (step, optimizer state)");
  }
  if (tensors.empty()) throw Error(ErrorKind::file_format, named(file) + " holds no parameters");
  return tensors;
}

struct VqganTensors {
  convert::VqganConfig config;
  std::vector<OutputTensor> tensors;
  std::vector<std::shared_ptr<const void>> owners;
};

VqganTensors read_vqgan(const MappedFile& mapped, const fs::path& file) {
  const Bytes data(static_cast<const unsigned char*>(mapped.data.get()), mapped.size);
  auto arrays = convert::read_pickled_arrays(data, file.string());
  VqganTensors out;
  std::map<std::string, Shape> shapes;
  for (auto& array : arrays) {
    OutputTensor t;
    t.name = dotted_name(array.key, file.string());
    t.dtype = storage_dtype(array.dtype, "VQGAN " + named(file) + ": '" + array.key_string() + "'");
    t.shape = array.shape;
    t.pieces = {array.data};
    if (array.owner) out.owners.push_back(array.owner);
    shapes[t.name] = t.shape;
    out.tensors.push_back(std::move(t));
  }
  out.config = convert::infer_vqgan_config(shapes, file.string());
  check_tensor_set(convert::vqgan_parameter_shapes(out.config), out.tensors, file.string(),
                   "the VQGAN layout of spec §3.7 for its own sizes");
  return out;
}

fs::path normalised(const fs::path& dir) {
  fs::path target = fs::absolute(dir).lexically_normal();
  if (target.filename().empty()) target = target.parent_path();
  return target;
}

std::uint64_t total_bytes(const std::vector<OutputTensor>& tensors) {
  std::uint64_t n = 0;
  for (const auto& t : tensors) n += t.nbytes();
  return n;
}

}  // namespace

const char* convert_source_name(ConvertSource source) noexcept {
  switch (source) {
    case ConvertSource::tux_params:
      return "tux params";
    case ConvertSource::tux_train_state:
      return "tux train state";
    case ConvertSource::flax_params:
      return "flax msgpack params";
    case ConvertSource::vqgan_pickle:
      return "VQGAN pickle";
    case ConvertSource::hf_directory:
      return "Hugging Face directory";
  }
  return "?";
}

ConvertResult convert_model(const fs::path& source, const fs::path& destination,
                            const ConvertOptions& options, const ProgressCallback& progress) {
  if (options.max_shard_bytes <= 0)
    throw Error(ErrorKind::invalid_argument, "the shard size must be positive");
  const fs::path target = normalised(destination);
  if (fs::exists(target) && (!fs::is_directory(target) || !fs::is_empty(target))) {
    throw Error(ErrorKind::invalid_argument, "the destination " + named(destination) +
                                                 " already exists and is not an empty directory");
  }
  const Sniffed found = locate_source(source);
  ConvertResult result;
  result.source = found.kind;
  const fs::path beside = fs::is_directory(source) ? source : source.parent_path();

  // Everything is read and checked before anything is written.
  MappedFile model_mapping, vqgan_mapping;
  std::unique_ptr<WeightStore> hf_store;
  std::vector<OutputTensor> tensors;
  std::optional<VqganTensors> vqgan;
  nlohmann::json config_json;

  fs::path vqgan_file = options.vqgan;
  if (found.kind == ConvertSource::vqgan_pickle) {
    if (!vqgan_file.empty())
      throw Error(ErrorKind::invalid_argument, "the source is itself a VQGAN pickle; drop --vqgan");
    vqgan_file = found.file;
  } else if (vqgan_file.empty() && found.kind != ConvertSource::hf_directory &&
             fs::is_regular_file(beside / "vqgan")) {
    vqgan_file = beside / "vqgan";  // LWM-Chat-*-Jax ship it beside params (spec §4.3)
    result.notes.push_back("VQGAN: using " + named(vqgan_file) + " found beside the checkpoint");
  }
  if (!vqgan_file.empty()) {
    if (sniff_file(vqgan_file) != ConvertSource::vqgan_pickle) {
      throw Error(ErrorKind::file_format,
                  named(vqgan_file) + " is not a pickle (the VQGAN file of spec §3.8)");
    }
    vqgan_mapping = map_file(vqgan_file);
    vqgan = read_vqgan(vqgan_mapping, vqgan_file);
  }

  fs::path tokenizer = options.tokenizer;
  if (found.kind != ConvertSource::vqgan_pickle) {
    if (tokenizer.empty() && fs::is_regular_file(beside / "tokenizer.model"))
      tokenizer = beside / "tokenizer.model";
    ModelConfig config;
    std::string config_name;
    if (found.kind == ConvertSource::hf_directory) {
      // spec §1.6: names and layouts stay Hugging Face's; the loader runs them as they are.
      const fs::path hf_config = found.file / "config.json";
      config = ModelConfig::load(hf_config);
      config_name = "its config.json";
      if (!options.preset.empty() || !options.config_file.empty()) {
        config = base_config(options, nullptr, config_name, result.notes);
      }
      config.convention = WeightConvention::hf;
      config.convention_known = true;
      // Old HF files carry RoPE frequency buffers built with base 10000; theta is in the config.
      std::size_t ignored = 0;
      const auto keep = [&ignored](const std::string& name) {
        const bool rope_buffer = name.ends_with(".rotary_emb.inv_freq");
        ignored += rope_buffer ? 1 : 0;
        return !rope_buffer;
      };
      const std::vector<fs::path> bins = pytorch_checkpoint_files(found.file);
      bool has_safetensors = false;
      for (const auto& entry : fs::directory_iterator(found.file))
        has_safetensors = has_safetensors || entry.path().extension() == ".safetensors";
      if (has_safetensors) {
        hf_store = std::make_unique<WeightStore>(found.file);
        for (const auto& name : hf_store->names()) {
          if (!keep(name)) continue;
          const Tensor t = hf_store->tensor(name);
          OutputTensor out;
          out.name = name;
          out.dtype = t.dtype();
          out.shape = t.shape();
          out.pieces = {Bytes(static_cast<const unsigned char*>(t.raw()), t.nbytes())};
          tensors.push_back(std::move(out));
        }
      } else if (!bins.empty()) {
        // The released LWM PyTorch repositories (spec §1.6): tensors are read from each zip as
        // they are written, one at a time.
        for (const fs::path& bin : bins) {
          auto checkpoint = std::make_shared<const convert::TorchCheckpoint>(bin);
          for (std::size_t i = 0; i < checkpoint->tensors().size(); ++i) {
            const convert::PickledTensor& t = checkpoint->tensors()[i];
            if (!keep(t.name)) continue;
            OutputTensor out;
            out.name = t.name;
            out.dtype = storage_dtype(t.dtype, "tensor '" + t.name + "' of " + named(bin));
            out.shape = t.shape;
            out.load = [checkpoint, i] { return checkpoint->read(i); };
            tensors.push_back(std::move(out));
          }
        }
        check_pytorch_index(found.file, tensors);
        result.notes.push_back("read " + std::to_string(bins.size()) + " PyTorch checkpoint file" +
                               (bins.size() == 1 ? "" : "s"));
      } else {
        throw Error(ErrorKind::file_format,
                    "the Hugging Face directory " + named(found.file) +
                        " has no weights: neither *.safetensors nor pytorch_model*.bin files");
      }
      if (ignored > 0)
        result.notes.push_back("ignored " + std::to_string(ignored) +
                               " rotary_emb.inv_freq buffers");
      apply_overrides(config, options, result.notes, false);
    } else {
      model_mapping = map_file(found.file);
      tensors = read_jax_tensors(model_mapping, found.file, result.source, result.notes);
      normalise_scan_axis(tensors, found.file, result.notes);
      const InferredShapes inferred = infer_jax_shapes(tensors, found.file.string());
      config = base_config(options, &inferred, config_name, result.notes);
      config.convention = WeightConvention::jax;
      config.convention_known = true;
      apply_overrides(config, options, result.notes, true);
      result.vision_vocab_size = inferred.vision_vocab;
    }
    if (!tokenizer.empty()) {
      check_tokenizer(tokenizer, config);
    } else {
      result.notes.push_back(
          "tokenizer: none given or found beside the source; the model directory has no "
          "tokenizer.model");
    }
    if (!tensors.empty()) config.torch_dtype = tensors.front().dtype;
    config.validate(config_name);
    const bool stacked =
        find_tensor(tensors, weight_names::stacked_layer_matrix(LayerMatrix::wq)) != nullptr;
    check_tensor_set(
        expected_text_tensors(config, stacked && config.convention == WeightConvention::jax,
                              result.vision_vocab_size),
        tensors, found.file.string(), config_name);
    config_json = config.to_json();
    if (result.vision_vocab_size > 0) {
      config_json["vision_vocab_size"] = result.vision_vocab_size;  // spec §2.1
      config_json["tie_vision_embeddings"] = false;
    }
    result.config = config;
  } else {
    config_json = nlohmann::json::object();
  }
  if (vqgan) config_json["vqgan"] = vqgan->config.to_json(kVqganFile);
  config_json["lwm_converted_from"] = {{"kind", convert_source_name(result.source)},
                                       {"path", fs::absolute(source).lexically_normal().string()}};

  const std::uint64_t total = total_bytes(tensors) + (vqgan ? total_bytes(vqgan->tensors) : 0);
  ByteProgress reporter(progress, static_cast<std::int64_t>(total), target);
  reporter.report();
  fs::create_directories(target.parent_path());
  StagingDirectory staging(target);
  if (!tensors.empty()) {
    result.shards = static_cast<std::int64_t>(
        write_model_shards(staging.path(), tensors, options.max_shard_bytes, reporter));
  }
  if (vqgan) {
    std::vector<const OutputTensor*> pointers;
    for (const auto& t : vqgan->tensors) pointers.push_back(&t);
    write_tensor_file(staging.path() / kVqganFile, pointers, reporter);
    result.vqgan = true;
  }
  if (!tokenizer.empty()) fs::copy_file(tokenizer, staging.path() / "tokenizer.model");
  write_file_atomically(staging.path() / "config.json", config_json.dump(2) + "\n");
  staging.commit(target);

  result.tensors = static_cast<std::int64_t>(tensors.size() + (vqgan ? vqgan->tensors.size() : 0));
  result.bytes = static_cast<std::int64_t>(total);
  return result;
}

}  // namespace lwm
