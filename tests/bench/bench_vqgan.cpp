// CPU throughput of the VQGAN at LWM's real config (spec lwm-reference §3.2: 256×256 frames,
// 146,244,675 float32 parameters): encode (encoder + quantizer) and decode, in ms per frame,
// frames/s and GFLOP/s. The random weights are written once to the build directory and reused.
// Prints a markdown table, and JSON with --json FILE; tests/bench/RESULTS.md records the numbers.
#include <CLI/CLI.hpp>
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
#include "lwm/model_maker.h"
#include "lwm/vqgan.h"

namespace {

namespace fs = std::filesystem;
using lwm::bench::Clock;
using lwm::bench::cpu_name;
using lwm::bench::seconds_since;
using lwm::bench::today;

// Reuses <dir> when it already holds this config's weights; otherwise writes them.
void ensure_model(const fs::path& dir, const lwm::VqganConfig& config) {
  if (fs::exists(dir / "vqgan.safetensors")) {
    try {
      if (lwm::VqganConfig::load(dir).to_json() == config.to_json()) return;
    } catch (const lwm::Error&) {
    }
    fs::remove_all(dir);
  }
  std::fprintf(stderr, "bench: writing random VQGAN weights (%lld parameters) to %s\n",
               static_cast<long long>(config.parameter_count()), dir.string().c_str());
  lwm::VqganMakerOptions maker;
  maker.config = config;
  maker.seed = 1;
  lwm::make_random_vqgan(dir, maker);
}

struct Row {
  std::string what;
  std::int64_t frames = 0;
  double seconds = 0.0;
  double flops_per_frame = 0.0;
  double ms_per_frame() const { return 1e3 * seconds / static_cast<double>(frames); }
  double frames_per_second() const { return static_cast<double>(frames) / seconds; }
  double gflops() const { return flops_per_frame * static_cast<double>(frames) / seconds / 1e9; }
};

int run(int argc, char** argv) {
  CLI::App app{"CPU encode and decode throughput of LWM's VQGAN with random weights."};
  std::int64_t frames = 2;
  std::int64_t frames_per_pass = 0;
  std::string model_dir = LWM_BENCH_VQGAN_DIR;
  std::string json_file;
  app.add_option("--frames", frames, "Frames encoded and decoded per measurement")
      ->capture_default_str();
  app.add_option("--frames-per-pass", frames_per_pass, "Frames run together (0 = automatic)")
      ->capture_default_str();
  app.add_option("--model-dir", model_dir, "Where the random weights are kept")
      ->capture_default_str();
  app.add_option("--json", json_file, "Also write the results as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  const lwm::VqganConfig config;  // LWM's (§3.2)
  ensure_model(model_dir, config);
  const auto vqgan = lwm::Vqgan::load(model_dir);
  lwm::VqganRunOptions options;
  options.frames_per_pass = frames_per_pass;

  std::mt19937 rng(7);
  std::uniform_real_distribution<float> pixel(-1.0f, 1.0f);
  std::vector<float> values(static_cast<std::size_t>(frames * config.resolution *
                                                     config.resolution * config.num_channels));
  for (float& v : values) v = pixel(rng);
  const lwm::Tensor input = lwm::Tensor::from_floats(
      {frames, config.resolution, config.resolution, config.num_channels}, values);
  // Warm-up: maps every weight page once, so the measurement does not pay for page faults.
  const lwm::Tensor one = input.slice_rows(0, 1);
  (void)vqgan->decode(vqgan->encode(one));

  std::vector<Row> rows;
  auto start = Clock::now();
  const std::vector<std::int32_t> codes = vqgan->encode(input, {}, options);
  rows.push_back({"encode", frames, seconds_since(start), config.encode_flops_per_frame()});
  start = Clock::now();
  const lwm::Tensor decoded = vqgan->decode(codes, {}, options);
  rows.push_back({"decode", frames, seconds_since(start), config.decode_flops_per_frame()});

  const char* omp_threads = std::getenv("OMP_NUM_THREADS");
  const std::string threads =
      omp_threads != nullptr ? omp_threads : std::to_string(std::thread::hardware_concurrency());
  std::printf("LWM VQGAN CPU benchmark, %s, %s (%s threads), %lld×%lld frames, %lld parameters\n\n",
              today().c_str(), cpu_name().c_str(), threads.c_str(),
              static_cast<long long>(config.resolution), static_cast<long long>(config.resolution),
              static_cast<long long>(config.parameter_count()));
  std::printf("| step | frames | ms/frame | frames/s | GFLOP/frame | GFLOP/s |\n");
  std::printf("| --- | ---: | ---: | ---: | ---: | ---: |\n");
  nlohmann::json results = nlohmann::json::array();
  for (const Row& row : rows) {
    std::printf("| %s | %lld | %.0f | %.3f | %.1f | %.1f |\n", row.what.c_str(),
                static_cast<long long>(row.frames), row.ms_per_frame(), row.frames_per_second(),
                row.flops_per_frame / 1e9, row.gflops());
    results.push_back({{"step", row.what},
                       {"frames", row.frames},
                       {"ms_per_frame", row.ms_per_frame()},
                       {"frames_per_second", row.frames_per_second()},
                       {"gflop_per_frame", row.flops_per_frame / 1e9},
                       {"gflops", row.gflops()}});
  }
  if (!json_file.empty()) {
    const nlohmann::json out = {{"date", today()},
                                {"cpu", cpu_name()},
                                {"threads", threads},
                                {"parameters", config.parameter_count()},
                                {"results", results}};
    std::ofstream(json_file) << out.dump(2) << '\n';
  }
  return decoded.numel() > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  return lwm::bench::main_reporting_errors("lwm_bench_vqgan", argc, argv, run);
}
