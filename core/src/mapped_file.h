// Read-only memory mapping of a whole file; the mapping lives as long as the returned pointer.
#pragma once

#include <cstddef>
#include <filesystem>
#include <memory>

namespace lwm {

struct MappedFile {
  std::shared_ptr<const void> data;  // nullptr for an empty file
  std::size_t size = 0;
};

// Throws Error(io) naming the file when it cannot be opened or mapped.
MappedFile map_file(const std::filesystem::path& path);

}  // namespace lwm
