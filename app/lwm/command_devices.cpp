// lwm devices: the CPU and the GPUs this machine has, with their free memory, and why there is no
// GPU when there is none.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.h"
#include "lwm/devices.h"
#include "terminal.h"

namespace lwm::cli {
namespace {

void run_devices(bool json) {
  const DeviceList list = list_devices();
  if (json) {
    nlohmann::json devices = nlohmann::json::array();
    for (const auto& device : list.devices) {
      nlohmann::json entry = {{"id", device.id()},
                              {"kind", to_string(device.kind)},
                              {"index", device.index},
                              {"name", device.name},
                              {"cores", device.cores},
                              {"total_bytes", device.total_bytes},
                              {"available_bytes", device.available_bytes}};
      if (device.kind == DeviceKind::cuda) {
        entry["compute_capability"] =
            std::to_string(device.compute_major) + "." + std::to_string(device.compute_minor);
      }
      devices.push_back(entry);
    }
    const nlohmann::json out = {
        {"devices", devices}, {"cuda_built", list.cuda_built}, {"cuda_status", list.cuda_status}};
    std::cout << out.dump(2) << '\n';
    return;
  }
  for (const auto& device : list.devices) {
    std::string about = device.kind == DeviceKind::cpu
                            ? std::to_string(device.cores) + " threads"
                            : "compute " + std::to_string(device.compute_major) + "." +
                                  std::to_string(device.compute_minor) + ", " +
                                  std::to_string(device.cores) + " SMs";
    std::printf("%-8s %s (%s): %s free of %s\n", device.id().c_str(), device.name.c_str(),
                about.c_str(), format_bytes(device.available_bytes).c_str(),
                format_bytes(device.total_bytes).c_str());
  }
  std::printf("%-8s %s\n", "gpus", list.cuda_status.c_str());
}

}  // namespace

Command add_devices_command(CLI::App& parent) {
  auto json = std::make_shared<bool>(false);
  CLI::App* app = parent.add_subcommand(
      "devices",
      "List the devices (the CPU and each CUDA GPU) with their free memory; say why there is no "
      "GPU when there is none. Use the names with --devices.");
  app->add_flag("--json", *json, "Print JSON instead of a table");
  return {app, [json] { run_devices(*json); }};
}

}  // namespace lwm::cli
