#include "test_support.h"

#include "lwm/devices.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <sys/wait.h>

namespace lwm::test {

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
  path_ = std::filesystem::temp_directory_path() /
          ("lwm-test-" + std::to_string(::getpid()) + "-" + std::to_string(stamp) + "-" +
           std::to_string(counter++));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string no_cuda_device_reason() {
  static const std::string reason = [] {
    const DeviceList list = list_devices();
    return list.gpus().empty() ? list.cuda_status : std::string();
  }();
  return reason;
}

std::uint64_t test_seed() {
  static const std::uint64_t seed = [] {
    if (const char* env = std::getenv("LWM_TEST_SEED")) {
      return static_cast<std::uint64_t>(std::strtoull(env, nullptr, 10));
    }
    return static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  }();
  return seed;
}

std::vector<float> random_normal(std::size_t n, std::mt19937_64& rng, float stddev) {
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> out(n);
  for (auto& x : out) x = dist(rng);
  return out;
}

Closeness compare(const float* actual, const double* expected, std::size_t n, double atol, double rtol) {
  Closeness result;
  for (std::size_t i = 0; i < n; ++i) {
    const double error = std::fabs(static_cast<double>(actual[i]) - expected[i]);
    const double ratio = std::isfinite(actual[i]) ? error / (atol + rtol * std::fabs(expected[i]))
                                                  : std::numeric_limits<double>::infinity();
    result.max_abs_error = std::max(result.max_abs_error, error);
    if (ratio > result.worst_ratio || !std::isfinite(ratio)) {
      result.worst_ratio = ratio;
      result.worst_index = i;
    }
  }
  result.ok = result.worst_ratio <= 1.0;
  return result;
}

void expect_within(const std::vector<float>& actual, const std::vector<double>& expected,
                   const std::vector<double>& bound, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  double worst = 0.0;
  std::size_t worst_index = 0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    const double error = std::fabs(static_cast<double>(actual[i]) - expected[i]);
    const double ratio = std::isfinite(actual[i]) ? error / bound[i] : INFINITY;
    if (!(ratio <= worst)) {
      worst = ratio;
      worst_index = i;
    }
  }
  EXPECT_LE(worst, 1.0) << what << ": element " << worst_index << " is " << actual[worst_index]
                        << ", expected " << expected[worst_index] << " ± " << bound[worst_index];
}

std::filesystem::path source_dir() { return LWM_SOURCE_DIR; }
std::filesystem::path test_python() { return LWM_TEST_PYTHON; }
std::filesystem::path sample_text_file() { return source_dir() / "resources/samples/lighthouse-keeper.txt"; }

CommandResult run_command(const std::string& command_line) {
  CommandResult result;
  std::FILE* pipe = ::popen((command_line + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer{};
  std::size_t n;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

bool have_ffmpeg() {
  static const bool have = run_command("ffmpeg -hide_banner -version").exit_code == 0;
  return have;
}

CommandResult write_lavfi_video(const std::filesystem::path& path, const std::string& source,
                                double seconds, const std::string& encoder_arguments) {
  return run_command("ffmpeg -nostdin -hide_banner -loglevel error -y -f lavfi -i " + source +
                     " -t " + std::to_string(seconds) + " " + encoder_arguments + " '" +
                     path.string() + "'");
}

}  // namespace lwm::test
