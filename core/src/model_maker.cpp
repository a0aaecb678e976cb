#include "lwm/model_maker.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "atomic_file.h"
#include "config_file.h"
#include "lwm/error.h"
#include "safetensors_format.h"
#include "vqgan/vqgan_network.h"
#include "weight_names.h"

namespace lwm {
namespace {

namespace fs = std::filesystem;
using weight_names::LayerMatrix;
using weight_names::LayerNorm;

constexpr std::size_t kChunkElements = std::size_t{1} << 20;  // floats generated per write

enum class InitKind { normal, norm_weight };

struct TensorPlan {
  std::string name;
  Shape shape;
  InitKind init;
};

// Standard normal samples from mt19937_64 (whose output sequence the C++ standard fixes) through
// our own Box–Muller transform, so the same seed gives the same model with any standard library.
class NormalSource {
 public:
  explicit NormalSource(std::uint64_t seed) : engine_(seed) {}

  double next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = 1.0 - uniform();  // (0, 1], so the logarithm stays finite
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = 2.0 * std::numbers::pi * u2;
    spare_ = radius * std::sin(angle);
    has_spare_ = true;
    return radius * std::cos(angle);
  }

 private:
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }  // [0, 1)

  std::mt19937_64 engine_;
  bool has_spare_ = false;
  double spare_ = 0.0;
};

// splitmix64's finaliser: decorrelates the per-tensor seeds derived from one user seed.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Each tensor has its own stream, so its values do not depend on how tensors are sharded.
std::uint64_t tensor_seed(std::uint64_t seed, std::size_t tensor_index) {
  return mix(mix(seed) ^ static_cast<std::uint64_t>(tensor_index));
}

Shape matrix_shape(const ModelConfig& config, LayerMatrix m) {
  const std::int64_t in = weight_names::matrix_in(config, m);
  const std::int64_t out = weight_names::matrix_out(config, m);
  return config.convention == WeightConvention::jax ? Shape{in, out} : Shape{out, in};
}

// Every tensor of the text model in the order written (spec §1.5 for JAX, §1.6 for HF).
// In the HF convention q/k rows are permuted to rotate-half pairs (spec §1.6); a permutation of
// i.i.d. random rows is just as random, so random weights need no permutation here.
std::vector<TensorPlan> plan_tensors(const ModelConfig& config) {
  const WeightConvention c = config.convention;
  const std::int64_t hidden = config.hidden_size;
  const std::int64_t vocab = config.vocab_size;
  std::vector<TensorPlan> plans;
  plans.push_back({weight_names::token_embedding(c), {vocab, hidden}, InitKind::normal});
  for (std::int64_t layer = 0; layer < config.num_layers; ++layer) {
    plans.push_back({weight_names::layer_norm(c, layer, LayerNorm::attention),
                     {hidden},
                     InitKind::norm_weight});
    for (const LayerMatrix m :
         {LayerMatrix::wq, LayerMatrix::wk, LayerMatrix::wv, LayerMatrix::wo}) {
      plans.push_back(
          {weight_names::layer_matrix(c, layer, m), matrix_shape(config, m), InitKind::normal});
    }
    plans.push_back(
        {weight_names::layer_norm(c, layer, LayerNorm::ffn), {hidden}, InitKind::norm_weight});
    for (const LayerMatrix m : {LayerMatrix::w1, LayerMatrix::w2, LayerMatrix::w3}) {
      plans.push_back(
          {weight_names::layer_matrix(c, layer, m), matrix_shape(config, m), InitKind::normal});
    }
  }
  plans.push_back({weight_names::final_norm(c), {hidden}, InitKind::norm_weight});
  // Heads are stored like matrices of their convention: JAX [hidden, vocab], HF [vocab, hidden].
  const auto head_shape = [&](std::int64_t rows) {
    return c == WeightConvention::jax ? Shape{hidden, rows} : Shape{rows, hidden};
  };
  if (!config.tie_word_embeddings) {
    plans.push_back({weight_names::lm_head(c), head_shape(vocab), InitKind::normal});
  }
  if (config.has_vision()) {
    const std::int64_t vision_vocab = config.vision_vocab_size;
    plans.push_back({weight_names::vision_embedding(c), {vision_vocab, hidden}, InitKind::normal});
    if (!config.tie_vision_embeddings) {
      plans.push_back({weight_names::vision_head(c), head_shape(vision_vocab), InitKind::normal});
    }
  }
  return plans;
}

std::int64_t plan_bytes(const TensorPlan& plan, DType dtype) {
  return shape_numel(plan.shape) * static_cast<std::int64_t>(dtype_size(dtype));
}

// Consecutive tensors fill a shard up to max_bytes; a tensor larger than that gets its own.
std::vector<std::vector<std::size_t>> plan_shards(const std::vector<TensorPlan>& plans, DType dtype,
                                                  std::int64_t max_bytes) {
  std::vector<std::vector<std::size_t>> shards;
  std::int64_t shard_bytes = 0;
  for (std::size_t i = 0; i < plans.size(); ++i) {
    const std::int64_t bytes = plan_bytes(plans[i], dtype);
    if (shards.empty() || (!shards.back().empty() && shard_bytes + bytes > max_bytes)) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(i);
    shard_bytes += bytes;
  }
  return shards;
}

// Hugging Face's naming: model-00001-of-00003.safetensors.
std::string shard_file_name(std::size_t index, std::size_t count) {
  if (count == 1) return "model.safetensors";
  char name[64];
  std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return name;
}

void check_options(const ModelMakerOptions& options) {
  options.config.validate("model maker options");
  if (!std::isfinite(options.init_std) || options.init_std < 0) {
    throw Error(ErrorKind::invalid_argument, "model maker: init_std must be finite and >= 0");
  }
  if (!std::isfinite(options.norm_weight_noise) || options.norm_weight_noise < 0) {
    throw Error(ErrorKind::invalid_argument,
                "model maker: norm_weight_noise must be finite and >= 0");
  }
  if (options.max_shard_bytes <= 0) {
    throw Error(ErrorKind::invalid_argument, "model maker: max_shard_bytes must be positive");
  }
  const auto& tokenizer = options.tokenizer_model;
  if (!tokenizer.empty() && !fs::is_regular_file(tokenizer)) {
    throw Error(ErrorKind::io,
                "model maker: tokenizer model '" + tokenizer.string() + "' does not exist");
  }
}

void check_destination(const fs::path& dir) {
  if (!fs::exists(dir)) return;
  if (!fs::is_directory(dir) || !fs::is_empty(dir)) {
    throw Error(ErrorKind::invalid_argument,
                "model maker: '" + dir.string() + "' already exists and is not an empty directory");
  }
}

// Streams one tensor's values in chunks, so even LWM-7B's lm_head never sits in memory whole.
void write_tensor_values(AtomicFileWriter& writer, const TensorPlan& plan, std::size_t tensor_index,
                         const ModelMakerOptions& options) {
  NormalSource normal(tensor_seed(options.seed, tensor_index));
  const auto count = static_cast<std::size_t>(shape_numel(plan.shape));
  std::vector<float> values(std::min(count, kChunkElements));
  std::vector<unsigned char> bytes(values.size() * dtype_size(options.dtype));
  for (std::size_t done = 0; done < count;) {
    const std::size_t n = std::min(count - done, kChunkElements);
    for (std::size_t i = 0; i < n; ++i) {
      // spec §1.1: normal(0, 0.02) for matrices and embeddings, ones for norms.
      values[i] = plan.init == InitKind::normal
                      ? static_cast<float>(options.init_std * normal.next())
                      : static_cast<float>(1.0 + options.norm_weight_noise * normal.next());
    }
    from_float(options.dtype, values.data(), bytes.data(), n);
    writer.write(bytes.data(), n * dtype_size(options.dtype));
    done += n;
  }
}

void write_shard(const fs::path& path, const std::vector<TensorPlan>& plans,
                 const std::vector<std::size_t>& members, const ModelMakerOptions& options,
                 const ProgressReporter& reporter, std::int64_t& tensors_done) {
  std::vector<safetensors_format::TensorRecord> records;
  for (const std::size_t i : members)
    records.push_back({plans[i].name, options.dtype, plans[i].shape});
  AtomicFileWriter writer(path);
  // Hugging Face transformers refuses safetensors files without {"format": "pt"} metadata.
  writer.write(safetensors_format::encode_header(path.string(), records, {{"format", "pt"}}));
  for (const std::size_t i : members) {
    write_tensor_values(writer, plans[i], i, options);
    reporter.report(++tensors_done);
  }
  writer.commit();
}

void write_index(const fs::path& dir, const std::vector<TensorPlan>& plans,
                 const std::vector<std::vector<std::size_t>>& shards, DType dtype) {
  nlohmann::json weight_map = nlohmann::json::object();
  std::int64_t total_size = 0;
  for (std::size_t s = 0; s < shards.size(); ++s) {
    for (const std::size_t i : shards[s]) {
      weight_map[plans[i].name] = shard_file_name(s, shards.size());
      total_size += plan_bytes(plans[i], dtype);
    }
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total_size}}},
                                {"weight_map", weight_map}};
  write_file_atomically(dir / "model.safetensors.index.json", index.dump(2) + "\n");
}

void write_config(const fs::path& dir, const ModelMakerOptions& options) {
  ModelConfig config = options.config;
  config.convention_known = true;
  config.torch_dtype = options.dtype;
  write_file_atomically(dir / "config.json", config.to_json().dump(2) + "\n");
}

fs::path normalised_target(const fs::path& dir) {
  fs::path target = fs::absolute(dir).lexically_normal();
  if (target.filename().empty()) target = target.parent_path();  // "out/" → "out"
  return target;
}

// Builds the whole directory under a staging name; throws before anything appears at `target`.
void build_model(const fs::path& target, const ModelMakerOptions& options,
                 const ProgressCallback& progress) {
  const std::vector<TensorPlan> plans = plan_tensors(options.config);
  const auto shards = plan_shards(plans, options.dtype, options.max_shard_bytes);
  const ProgressReporter reporter(progress, static_cast<std::int64_t>(plans.size()),
                                  "making the model '" + target.string() + "'", "tensors");
  reporter.report(0);

  fs::create_directories(target.parent_path());
  StagingDirectory staging(target);
  std::int64_t tensors_done = 0;
  for (std::size_t s = 0; s < shards.size(); ++s) {
    write_shard(staging.path() / shard_file_name(s, shards.size()), plans, shards[s], options,
                reporter, tensors_done);
  }
  if (shards.size() > 1) write_index(staging.path(), plans, shards, options.dtype);
  write_config(staging.path(), options);
  if (!options.tokenizer_model.empty()) {
    fs::copy_file(options.tokenizer_model, staging.path() / "tokenizer.model");
  }
  staging.commit(target);
}

}  // namespace

void make_random_model(const fs::path& dir, const ModelMakerOptions& options,
                       const ProgressCallback& progress) {
  check_options(options);
  const fs::path target = normalised_target(dir);
  check_destination(target);
  try {
    build_model(target, options, progress);
  } catch (const fs::filesystem_error& error) {
    throw Error(ErrorKind::io, "cannot make the model '" + target.string() + "': " + error.what());
  }
}

namespace {

float vqgan_value(const vqgan::ParamSpec& spec, const VqganMakerOptions& options,
                  NormalSource& normal) {
  const double z = normal.next();
  switch (spec.kind) {
    case vqgan::ParamKind::conv_kernel: {
      const auto fan_in = static_cast<double>(spec.shape[0] * spec.shape[1] * spec.shape[2]);
      return static_cast<float>(z / std::sqrt(fan_in));
    }
    case vqgan::ParamKind::conv_bias:
      return static_cast<float>(options.bias_std * z);
    case vqgan::ParamKind::norm_scale:
      return static_cast<float>(1.0 + options.norm_noise * z);
    case vqgan::ParamKind::norm_bias:
      return static_cast<float>(options.norm_noise * z);
    case vqgan::ParamKind::codebook:
      return static_cast<float>(options.codebook_std * z);
  }
  return 0.0f;
}

void write_vqgan_weights(const fs::path& path, const VqganMakerOptions& options,
                         const ProgressReporter& reporter) {
  const std::vector<vqgan::ParamSpec> plan = vqgan::parameter_plan(options.config);
  std::vector<safetensors_format::TensorRecord> records;
  for (const auto& spec : plan) records.push_back({spec.name, options.dtype, spec.shape});
  AtomicFileWriter writer(path);
  writer.write(safetensors_format::encode_header(
      path.string(), records, {{"lwm_format", "lwm-vqgan"}, {"lwm_format_version", "1"}}));
  std::vector<float> values;
  std::vector<unsigned char> bytes;
  for (std::size_t i = 0; i < plan.size(); ++i) {
    NormalSource normal(tensor_seed(options.seed, i));
    values.resize(static_cast<std::size_t>(shape_numel(plan[i].shape)));
    for (float& v : values) v = vqgan_value(plan[i], options, normal);
    bytes.resize(values.size() * dtype_size(options.dtype));
    from_float(options.dtype, values.data(), bytes.data(), values.size());
    writer.write(bytes.data(), bytes.size());
    reporter.report(static_cast<std::int64_t>(i) + 1);
  }
  writer.commit();
}

void merge_vqgan_config(const fs::path& dir, const VqganConfig& config) {
  const fs::path file = dir / "config.json";
  nlohmann::json json = nlohmann::json::object();
  if (fs::exists(file)) {
    json = read_config_file(file).json;
    if (!json.is_object()) {
      throw Error(ErrorKind::config,
                  "cannot add the VQGAN config to '" + file.string() + "': not a JSON object");
    }
  }
  json["vqgan"] = config.to_json();
  write_file_atomically(file, json.dump(2) + "\n");
}

}  // namespace

void make_random_vqgan(const fs::path& dir, const VqganMakerOptions& options,
                       const ProgressCallback& progress) {
  options.config.validate("VQGAN maker options");
  for (const float value : {options.bias_std, options.norm_noise, options.codebook_std}) {
    if (!std::isfinite(value) || value < 0) {
      throw Error(ErrorKind::invalid_argument,
                  "VQGAN maker: bias_std, norm_noise and codebook_std must be finite and >= 0");
    }
  }
  const fs::path target = normalised_target(dir);
  const fs::path weights = target / "vqgan.safetensors";
  try {
    if (fs::exists(target) && !fs::is_directory(target)) {
      throw Error(ErrorKind::invalid_argument,
                  "VQGAN maker: '" + target.string() + "' exists and is not a directory");
    }
    if (fs::exists(weights)) {
      throw Error(ErrorKind::invalid_argument,
                  "VQGAN maker: '" + weights.string() + "' already exists");
    }
    const auto count = static_cast<std::int64_t>(vqgan::parameter_plan(options.config).size());
    const ProgressReporter reporter(progress, count, "making the VQGAN in '" + target.string() + "'",
                                    "tensors");
    reporter.report(0);
    fs::create_directories(target);
    // Weights first: a config.json naming a VQGAN whose weights never arrived would mislead.
    write_vqgan_weights(weights, options, reporter);
    merge_vqgan_config(target, options.config);
  } catch (const fs::filesystem_error& error) {
    throw Error(ErrorKind::io, "cannot make the VQGAN in '" + target.string() + "': " + error.what());
  }
}

}  // namespace lwm
