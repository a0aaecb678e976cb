// Files we write are written to a temporary name beside the target, flushed and fsynced, then
// renamed over it (design.md), so a crash never leaves a half-written file under the real name.
#pragma once

#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <string_view>

namespace lwm {

class AtomicFileWriter {
 public:
  // Opens "<path>.tmp-<pid>" for writing; throws Error(io) naming the path.
  explicit AtomicFileWriter(const std::filesystem::path& path);
  // Removes the temporary file unless commit() succeeded.
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, std::size_t size);
  void write(std::string_view text) { write(text.data(), text.size()); }
  // Flushes, fsyncs, renames onto the target and fsyncs the directory.
  void commit();

 private:
  std::filesystem::path path_;
  std::filesystem::path temp_path_;
  std::FILE* file_ = nullptr;
};

// Whole-file convenience wrapper.
void write_file_atomically(const std::filesystem::path& path, std::string_view contents);

}  // namespace lwm
