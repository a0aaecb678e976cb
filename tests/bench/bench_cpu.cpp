// CPU throughput of the LWM text model: prefill and decode tokens/s for a random ~100M-parameter
// model (preset "100m", bf16 weights) at 2K and 8K tokens of context. Prints a markdown table,
// and JSON with --json FILE; tests/bench/RESULTS.md records the numbers per machine.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "lwm/error.h"
#include "lwm/generation.h"
#include "lwm/kv_cache.h"
#include "lwm/model.h"
#include "lwm/model_maker.h"

namespace {

using lwm::bench::Clock;
using lwm::bench::cpu_name;
using lwm::bench::seconds_since;
using lwm::bench::today;

struct Row {
  std::int64_t context = 0;
  double prefill_seconds = 0.0;
  std::int64_t decode_tokens = 0;
  double decode_seconds = 0.0;
  double prefill_rate() const { return static_cast<double>(context) / prefill_seconds; }
  double decode_rate() const { return static_cast<double>(decode_tokens) / decode_seconds; }
};

std::int32_t argmax(const std::vector<float>& logits) {
  return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// Removes the benchmark's model directory however the run ends.
struct ScratchDir {
  std::filesystem::path path;
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

Row measure(const lwm::Model& model, std::int64_t context, std::int64_t decode_tokens,
            std::int64_t chunk, std::mt19937& rng) {
  const auto& config = model.config();
  // Random ids: throughput does not depend on the text, only on the shapes.
  std::uniform_int_distribution<std::int32_t> id(3,
                                                 static_cast<std::int32_t>(config.vocab_size - 1));
  std::vector<std::int32_t> prompt(static_cast<std::size_t>(context));
  for (auto& token : prompt) token = id(rng);

  lwm::KVCache cache(config, context + decode_tokens);
  Row row;
  row.context = context;
  row.decode_tokens = decode_tokens;
  auto start = Clock::now();
  std::vector<float> logits = lwm::prefill(model, cache, prompt, chunk);
  row.prefill_seconds = seconds_since(start);

  start = Clock::now();
  for (std::int64_t i = 0; i < decode_tokens; ++i) {
    const std::int32_t next = argmax(logits);
    model.forward({&next, 1}, cache, lwm::LogitsFor::last, &logits);
  }
  row.decode_seconds = seconds_since(start);
  return row;
}

int run(int argc, char** argv) {
  CLI::App app{"CPU prefill and decode throughput of the LWM text model on a random model."};
  std::string preset = "100m";
  std::string dtype = "bf16";
  std::vector<std::int64_t> contexts = {2048, 8192};
  std::int64_t decode_tokens = 32;
  std::int64_t chunk = 512;
  std::string json_file;
  app.add_option("--preset", preset, "Model preset")->capture_default_str();
  app.add_option("--dtype", dtype, "Weight storage dtype")->capture_default_str();
  app.add_option("--contexts", contexts, "Prompt lengths to prefill")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--decode", decode_tokens, "Tokens decoded after each prefill")
      ->capture_default_str();
  app.add_option("--chunk", chunk, "Prefill chunk in tokens")->capture_default_str();
  app.add_option("--json", json_file, "Also write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  lwm::ModelConfig config = lwm::ModelConfig::preset(preset);
  const std::int64_t longest = *std::max_element(contexts.begin(), contexts.end());
  config.max_sequence_length = std::max(config.max_sequence_length, longest + decode_tokens);

  ScratchDir scratch{std::filesystem::temp_directory_path() /
                     ("lwm-bench-" + std::to_string(::getpid()))};
  lwm::ModelMakerOptions maker;
  maker.config = config;
  maker.dtype = lwm::parse_dtype(dtype);
  maker.seed = 1;
  std::fprintf(stderr, "bench: making a random %s model (%lld parameters, %s)\n", preset.c_str(),
               static_cast<long long>(config.parameter_count()), dtype.c_str());
  lwm::make_random_model(scratch.path / "model", maker);
  const auto model = lwm::Model::load(scratch.path / "model");

  std::mt19937 rng(7);
  // Touches every weight page once, so the first measurement does not pay for page faults.
  (void)measure(*model, std::min<std::int64_t>(128, longest), 1, chunk, rng);

  std::vector<Row> rows;
  for (const std::int64_t context : contexts) {
    std::fprintf(stderr, "bench: context %lld\n", static_cast<long long>(context));
    rows.push_back(measure(*model, context, decode_tokens, chunk, rng));
  }

  const char* omp_threads = std::getenv("OMP_NUM_THREADS");
  const std::string threads =
      omp_threads != nullptr ? omp_threads : std::to_string(std::thread::hardware_concurrency());
  std::printf(
      "LWM CPU benchmark, %s, %s (%s threads), preset %s (%lld parameters, %s weights), "
      "prefill chunk %lld\n\n",
      today().c_str(), cpu_name().c_str(), threads.c_str(), preset.c_str(),
      static_cast<long long>(config.parameter_count()), dtype.c_str(),
      static_cast<long long>(chunk));
  std::printf("| context | prefill tok/s | prefill time | decode tok/s | decoded tokens |\n");
  std::printf("| ---: | ---: | ---: | ---: | ---: |\n");
  nlohmann::json results = nlohmann::json::array();
  for (const auto& row : rows) {
    std::printf("| %lld | %.1f | %.2f s | %.2f | %lld |\n", static_cast<long long>(row.context),
                row.prefill_rate(), row.prefill_seconds, row.decode_rate(),
                static_cast<long long>(row.decode_tokens));
    results.push_back({{"context", row.context},
                       {"prefill_tokens_per_second", row.prefill_rate()},
                       {"prefill_seconds", row.prefill_seconds},
                       {"decode_tokens", row.decode_tokens},
                       {"decode_tokens_per_second", row.decode_rate()}});
  }
  if (!json_file.empty()) {
    const nlohmann::json out = {{"date", today()},
                                {"cpu", cpu_name()},
                                {"threads", threads},
                                {"preset", preset},
                                {"parameters", config.parameter_count()},
                                {"dtype", dtype},
                                {"prefill_chunk", chunk},
                                {"results", results}};
    std::ofstream(json_file) << out.dump(2) << '\n';
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return lwm::bench::main_reporting_errors("lwm_bench_cpu", argc, argv, run);
}
