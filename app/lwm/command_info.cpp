// lwm info: what a model is and how much memory it needs at each context length.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.h"
#include "lwm/dtype.h"
#include "lwm/kv_cache.h"
#include "terminal.h"

namespace lwm::cli {
namespace {

struct InfoOptions {
  std::string model_dir;
  bool json = false;
};

struct ContextRow {
  const char* label;
  std::int64_t tokens;
};
constexpr ContextRow kContexts[] = {
    {"2K", 2048}, {"8K", 8192}, {"32K", 32768}, {"128K", 131072}, {"1M", 1048576}};

struct WeightFiles {
  std::int64_t bytes = 0;
  int count = 0;
};

WeightFiles weight_files(const std::filesystem::path& dir) {
  WeightFiles files;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors") {
      files.bytes += static_cast<std::int64_t>(entry.file_size());
      ++files.count;
    }
  }
  return files;
}

void run_info(const InfoOptions& options) {
  const auto model = load_model(options.model_dir);
  const ModelConfig& config = model->config();
  const WeightFiles files = weight_files(options.model_dir);
  // The CPU backend keeps the weights memory-mapped as stored and caches K and V in float32.
  const std::int64_t kv_per_token = config.kv_bytes_per_token(DType::f32);
  const std::int64_t available = available_memory_bytes();

  if (options.json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& row : kContexts) {
      const std::int64_t total = files.bytes + kv_per_token * row.tokens;
      rows.push_back({{"context", row.tokens},
                      {"kv_cache_bytes", kv_per_token * row.tokens},
                      {"total_bytes", total},
                      {"fits_in_memory", total <= available},
                      {"within_model_context", row.tokens <= config.max_sequence_length}});
    }
    const nlohmann::json out = {{"model", std::filesystem::absolute(options.model_dir).string()},
                                {"config", config.to_json()},
                                {"parameters", config.parameter_count()},
                                {"weight_bytes", files.bytes},
                                {"weight_files", files.count},
                                {"kv_bytes_per_token", kv_per_token},
                                {"kv_dtype", dtype_name(DType::f32)},
                                {"available_memory_bytes", available},
                                {"memory", rows}};
    std::cout << out.dump(2) << '\n';
    return;
  }

  std::printf("model           %s\n", std::filesystem::absolute(options.model_dir).c_str());
  std::printf("weights         %s convention, %s, %s in %d file%s\n",
              convention_name(config.convention), dtype_name(config.torch_dtype),
              format_bytes(files.bytes).c_str(), files.count, files.count == 1 ? "" : "s");
  std::printf("parameters      %s\n", format_count(config.parameter_count()).c_str());
  std::printf("vocabulary      %s tokens (bos %d, eos %d, pad %d)\n",
              format_count(config.vocab_size).c_str(), config.bos_token_id, config.eos_token_id,
              config.pad_token_id);
  std::printf("layers          %lld, hidden %lld, intermediate %lld\n",
              static_cast<long long>(config.num_layers), static_cast<long long>(config.hidden_size),
              static_cast<long long>(config.intermediate_size));
  std::printf("heads           %lld query, %lld key/value, head dim %lld\n",
              static_cast<long long>(config.num_heads), static_cast<long long>(config.num_kv_heads),
              static_cast<long long>(config.head_dim()));
  std::printf("context         %s tokens, RoPE theta %g, RMSNorm eps %g\n",
              format_count(config.max_sequence_length).c_str(), config.rope_theta,
              config.rms_norm_eps);
  std::printf("tied embeddings %s\n", config.tie_word_embeddings ? "yes" : "no");
  std::printf("KV cache        %s per token (%s, on the CPU)\n", format_bytes(kv_per_token).c_str(),
              dtype_name(DType::f32));
  std::printf("available       %s of memory\n\n", format_bytes(available).c_str());

  std::printf("%-8s %12s %12s  %s\n", "context", "KV cache", "total", "on this machine");
  for (const auto& row : kContexts) {
    const std::int64_t kv = kv_per_token * row.tokens;
    const std::int64_t total = files.bytes + kv;
    std::string verdict = total <= available ? "fits" : "does not fit";
    if (row.tokens > config.max_sequence_length) verdict += " (beyond the model's context)";
    std::printf("%-8s %12s %12s  %s\n", row.label, format_bytes(kv).c_str(),
                format_bytes(total).c_str(), verdict.c_str());
  }
  std::printf(
      "\ntotal = weights + float32 KV cache; activations add a little per prefill chunk.\n");
}

}  // namespace

Command add_info_command(CLI::App& parent) {
  auto options = std::make_shared<InfoOptions>();
  CLI::App* app = parent.add_subcommand(
      "info",
      "Show a model's configuration, parameter count and the memory it needs at context "
      "lengths from 2K to 1M tokens.");
  app->add_option("--model", options->model_dir, "Model directory")->required();
  app->add_flag("--json", options->json, "Print JSON instead of a table");
  return {app, [options] { run_info(*options); }};
}

}  // namespace lwm::cli
