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

// A directory built under a hidden sibling name ".<target>.partial-<pid>" and renamed onto the
// target by commit(); removed with its contents otherwise, so a failed or cancelled build leaves
// nothing under the target's name.
class StagingDirectory {
 public:
  explicit StagingDirectory(const std::filesystem::path& target);
  ~StagingDirectory();
  StagingDirectory(const StagingDirectory&) = delete;
  StagingDirectory& operator=(const StagingDirectory&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }
  // rename(2) replaces an empty directory at the target, so an existing empty one is fine.
  void commit(const std::filesystem::path& target);

 private:
  std::filesystem::path path_;
  bool committed_ = false;
};

}  // namespace lwm
