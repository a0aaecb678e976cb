#include "atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "lwm/error.h"

namespace lwm {
namespace {

[[noreturn]] void fail(const std::filesystem::path& path, const char* what) {
  throw Error(ErrorKind::io, "cannot " + std::string(what) + " '" + path.string() + "': " + std::strerror(errno));
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(const std::filesystem::path& path)
    : path_(path), temp_path_(path.string() + ".tmp-" + std::to_string(::getpid())) {
  file_ = std::fopen(temp_path_.c_str(), "wb");
  if (file_ == nullptr) fail(temp_path_, "create");
}

AtomicFileWriter::~AtomicFileWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::error_code ignored;
    std::filesystem::remove(temp_path_, ignored);
  }
}

void AtomicFileWriter::write(const void* data, std::size_t size) {
  if (size != 0 && std::fwrite(data, 1, size, file_) != size) fail(temp_path_, "write");
}

void AtomicFileWriter::commit() {
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) fail(temp_path_, "flush");
  if (std::fclose(file_) != 0) {
    file_ = nullptr;
    fail(temp_path_, "close");
  }
  file_ = nullptr;
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    std::error_code ignored;
    std::filesystem::remove(temp_path_, ignored);
    fail(path_, "rename onto");
  }
  // The rename is durable only once the directory entry is on disk too.
  const auto dir = path_.has_parent_path() ? path_.parent_path() : std::filesystem::path(".");
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);
    ::close(dir_fd);
  }
}

void write_file_atomically(const std::filesystem::path& path, std::string_view contents) {
  AtomicFileWriter writer(path);
  writer.write(contents);
  writer.commit();
}

StagingDirectory::StagingDirectory(const std::filesystem::path& target) {
  // Appended piece by piece: GCC 12 reports a false -Wrestrict for chained string additions.
  std::string name = ".";
  name += target.filename().string();
  name += ".partial-";
  name += std::to_string(::getpid());
  path_ = target.parent_path() / name;
  std::filesystem::remove_all(path_);
  std::filesystem::create_directories(path_);
}

StagingDirectory::~StagingDirectory() {
  if (!committed_) {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
}

void StagingDirectory::commit(const std::filesystem::path& target) {
  std::filesystem::rename(path_, target);
  committed_ = true;
}

}  // namespace lwm
