// Helpers shared by the tests: temporary directories, random data, fp64 comparisons.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "lwm/error.h"

namespace lwm::test {

// A fresh directory under the system temp dir, removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Skips the current test, with the reason the device list gives, when no CUDA device is usable
// here (no GPU, no driver, or a build without CUDA). GPU tests start with it.
#define LWM_SKIP_WITHOUT_CUDA_DEVICE()                                                  \
  do {                                                                                \
    if (const std::string lwm_no_gpu_ = ::lwm::test::no_cuda_device_reason();         \
        !lwm_no_gpu_.empty()) {                                                       \
      GTEST_SKIP() << lwm_no_gpu_;                                                    \
    }                                                                                 \
  } while (0)
// Empty when cuda:0 is usable; otherwise why not.
std::string no_cuda_device_reason();

// A seed that differs per run (fresh random data every run) unless LWM_TEST_SEED is set; tests
// print it on failure through SCOPED_TRACE so a failing case can be replayed.
std::uint64_t test_seed();

std::vector<float> random_normal(std::size_t n, std::mt19937_64& rng, float stddev = 1.0f);

// max |a - b| / (atol + rtol·|b|) ≤ 1 holds for every element, reported with the worst index.
struct Closeness {
  bool ok = true;
  std::size_t worst_index = 0;
  double worst_ratio = 0.0;
  double max_abs_error = 0.0;
};
Closeness compare(const float* actual, const double* expected, std::size_t n, double atol, double rtol);

// Expects |actual[i] - expected[i]| ≤ bound[i] for every element (a bound derived per element
// from the op's arithmetic), reporting the worst element under `what`. A non-finite actual fails.
void expect_within(const std::vector<float>& actual, const std::vector<double>& expected,
                   const std::vector<double>& bound, const std::string& what);

std::filesystem::path source_dir();       // the repository root
std::filesystem::path test_python();      // python with numpy/safetensors, may not exist
std::filesystem::path sample_text_file(); // resources/samples/ text used to train test tokenizers

// Runs a command line, returns its exit status and captured stdout+stderr.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult run_command(const std::string& command_line);

// Whether the ffmpeg program is on PATH: tests that write their videos with it skip without it.
bool have_ffmpeg();
// Writes `seconds` of an FFmpeg lavfi source ("testsrc2=size=96x64:rate=8") to `path`, encoded
// with `encoder_arguments` ("-c:v ffv1" lossless, "-pix_fmt yuv420p" for an MP4's H.264); the
// result carries ffmpeg's message when it fails.
CommandResult write_lavfi_video(const std::filesystem::path& path, const std::string& source,
                                double seconds, const std::string& encoder_arguments);

// Runs `fn` and returns the lwm::Error it throws, failing the test when it throws none, so a
// test can check the error's kind and message.
template <typename Fn>
Error capture_error(Fn&& fn) {
  try {
    fn();
  } catch (const Error& error) {
    return error;
  }
  ADD_FAILURE() << "expected lwm::Error";
  return Error(ErrorKind::invalid_argument, "");
}

}  // namespace lwm::test
