// What every benchmark prints beside its numbers: the machine, the date, and elapsed time.
#pragma once

#include <chrono>
#include <cstdio>
#include <ctime>
#include <exception>
#include <fstream>
#include <string>

#include "lwm/devices.h"
#include "lwm/error.h"

namespace lwm::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The CPU's model name from /proc/cpuinfo.
inline std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown CPU";
}

// Today as YYYY-MM-DD, for results tables.
inline std::string today() {
  const std::time_t now = std::time(nullptr);
  char buffer[16];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%d", std::localtime(&now));
  return buffer;
}

// GPU `index` from the device list, or Error(device) saying why there is none: the CUDA
// benchmarks need one, and say so instead of printing numbers of nothing.
inline DeviceInfo require_gpu(int index = 0) {
  const DeviceList devices = list_devices();
  for (const DeviceInfo& device : devices.gpus()) {
    if (device.index == index) return device;
  }
  throw Error(ErrorKind::device, "this benchmark needs the NVIDIA GPU cuda:" +
                                     std::to_string(index) + " (" + devices.cuda_status +
                                     "); run it on the GPU machine, see tests/bench/README.md");
}

// main() of every benchmark: `run`, with any error printed as "<name>: error: ..." and exit
// status 2.
inline int main_reporting_errors(const char* name, int argc, char** argv,
                                 int (*run)(int, char**)) {
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s: error: %s\n", name, error.what());
    return 2;
  }
}

}  // namespace lwm::bench
