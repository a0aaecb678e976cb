#include "config_file.h"

#include <fstream>
#include <string>

#include "lwm/error.h"

namespace lwm {

ConfigFile read_config_file(const std::filesystem::path& path) {
  ConfigFile out;
  out.file = std::filesystem::is_directory(path) ? path / "config.json" : path;
  std::ifstream in(out.file, std::ios::binary);
  if (!in) throw Error(ErrorKind::io, "cannot open model config '" + out.file.string() + "'");
  try {
    out.json = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& error) {
    throw Error(ErrorKind::config, "model config '" + out.file.string() + "': is not valid JSON (" +
                                       error.what() + ")");
  }
  return out;
}

}  // namespace lwm
