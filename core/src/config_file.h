// config.json of a model directory, read once the same way by every part that keeps its settings
// there (the model, the VQGAN, the converter).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>

namespace lwm {

// `path` is a model directory (its config.json is read) or a config file. Throws Error(io) when it
// cannot be opened and Error(config) naming the file when it is not valid JSON.
struct ConfigFile {
  std::filesystem::path file;
  nlohmann::json json;
};
ConfigFile read_config_file(const std::filesystem::path& path);

}  // namespace lwm
