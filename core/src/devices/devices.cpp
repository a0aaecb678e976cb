#include "lwm/devices.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <string>
#include <thread>

#include "devices/cuda_devices.h"
#include "lwm/error.h"

namespace lwm {
namespace {

// A "Key:  <n> kB" line of /proc/meminfo in bytes; -1 when absent (not Linux).
std::int64_t meminfo_bytes(const std::string& wanted) {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  std::int64_t value = 0;
  std::string unit;
  while (meminfo >> key >> value >> unit) {
    if (key == wanted) return value * 1024;
  }
  return -1;
}

std::string cpu_model_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        const auto begin = line.find_first_not_of(" \t", colon + 1);
        if (begin != std::string::npos) return line.substr(begin);
      }
    }
  }
  return "CPU";
}

std::string known_devices(const DeviceList& available) {
  std::string names = "cpu, cpu:N";
  for (const auto& device : available.gpus()) names += ", " + device.id();
  if (available.gpus().empty()) names += " (" + available.cuda_status + ")";
  return names;
}

// A whole decimal number in [low, high] or -1.
int parse_number(std::string_view text, int low, int high) {
  int value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value < low || value > high) {
    return -1;
  }
  return value;
}

}  // namespace

const char* to_string(DeviceKind kind) noexcept {
  return kind == DeviceKind::cuda ? "cuda" : "cpu";
}

std::string DeviceInfo::id() const {
  std::string out = kind == DeviceKind::cpu ? "cpu" : "cuda:";
  if (kind == DeviceKind::cuda) out.append(std::to_string(index));
  return out;
}

std::vector<DeviceInfo> DeviceList::gpus() const {
  std::vector<DeviceInfo> out;
  std::copy_if(devices.begin(), devices.end(), std::back_inserter(out),
               [](const DeviceInfo& device) { return device.kind == DeviceKind::cuda; });
  return out;
}

std::int64_t available_memory_bytes() {
  return meminfo_bytes("MemAvailable:");
}

DeviceList list_devices() {
  DeviceList list;
  DeviceInfo cpu;
  cpu.name = cpu_model_name();
  cpu.cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu.total_bytes = meminfo_bytes("MemTotal:");
  cpu.available_bytes = available_memory_bytes();
  list.devices.push_back(std::move(cpu));
  try {
    detail::add_cuda_devices(list);
  } catch (const std::exception& error) {  // e.g. bad_alloc: listing must still answer
    list.cuda_status = std::string("no CUDA device: ") + error.what();
  }
  return list;
}

std::string DeviceSelection::to_string() const {
  std::string out = kind == DeviceKind::cpu ? "cpu" : "cuda:";
  if (kind == DeviceKind::cpu) {
    if (ranks != 1) out.append(":").append(std::to_string(ranks));
    return out;
  }
  for (std::size_t i = 0; i < devices.size(); ++i) {
    if (i > 0) out.push_back(',');
    out.append(std::to_string(devices[i].index));
  }
  return out;
}

DeviceSelection parse_device_list(std::string_view spec, const DeviceList& available) {
  const auto fail = [&](const std::string& why) -> Error {
    return Error(ErrorKind::invalid_argument, "device '" + std::string(spec) + "': " + why +
                                                  "; the devices here are " +
                                                  known_devices(available));
  };
  const auto colon = spec.find(':');
  const std::string_view kind = spec.substr(0, colon);
  const std::string_view rest =
      colon == std::string_view::npos ? std::string_view() : spec.substr(colon + 1);
  if (colon != std::string_view::npos && rest.empty()) throw fail("nothing after ':'");
  DeviceSelection selection;
  if (kind == "cpu") {
    selection.kind = DeviceKind::cpu;
    if (!rest.empty()) {
      selection.ranks = parse_number(rest, 1, 256);
      if (selection.ranks < 0) throw fail("cpu:N takes a number of ranks from 1 to 256");
    }
    selection.devices.push_back(available.devices.front());
    return selection;
  }
  if (kind != "cuda") throw fail("unknown device kind '" + std::string(kind) + "'");
  selection.kind = DeviceKind::cuda;
  const auto gpus = available.gpus();
  if (gpus.empty()) throw fail("there is no GPU to use");
  if (rest.empty()) {
    selection.devices = gpus;
  } else {
    std::string_view list = rest;
    while (true) {
      const auto comma = list.find(',');
      const std::string_view item = list.substr(0, comma);
      const int index = parse_number(item, 0, 1 << 20);
      if (index < 0) throw fail("'" + std::string(item) + "' is not a GPU number");
      const auto found = std::find_if(gpus.begin(), gpus.end(),
                                      [&](const DeviceInfo& gpu) { return gpu.index == index; });
      if (found == gpus.end()) throw fail("there is no cuda:" + std::to_string(index));
      if (std::any_of(selection.devices.begin(), selection.devices.end(),
                      [&](const DeviceInfo& gpu) { return gpu.index == index; })) {
        throw fail("cuda:" + std::to_string(index) + " is named twice");
      }
      selection.devices.push_back(*found);
      if (comma == std::string_view::npos) break;
      list = list.substr(comma + 1);
    }
  }
  selection.ranks = static_cast<int>(selection.devices.size());
  return selection;
}

}  // namespace lwm
