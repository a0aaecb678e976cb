// A zip archive read through libzip, for the two zip formats we read: EPUB books and PyTorch
// checkpoints (torch.save). Opened from a file (checkpoints of several GB stay on disk) or from
// bytes in memory; entries are found by name and read whole, bounded so that a zip bomb or a
// lying header cannot exhaust memory. Errors name the file the caller describes and what kind of
// file it should have been.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

typedef struct zip zip_t;

namespace lwm {

class ZipArchive {
 public:
  // `where` names the file in messages ("the book '/a/b.epub'"); `format` is what it should be
  // ("EPUB", "PyTorch checkpoint"). Throws Error(file_format) when it is not a readable zip
  // (truncated, damaged, not a zip) and Error(io) when the file cannot be opened.
  static ZipArchive open_file(const std::filesystem::path& path, std::string where,
                              std::string format);
  // Over `bytes`, which must outlive the archive.
  static ZipArchive open_bytes(const std::string& bytes, std::string where, std::string format);

  ZipArchive(ZipArchive&&) noexcept;
  ZipArchive& operator=(ZipArchive&&) noexcept;
  ~ZipArchive();

  std::vector<std::string> names() const;
  bool contains(const std::string& name) const;
  // Inflated size of entry `name` as the archive states it; throws as read() for a missing entry.
  std::uint64_t size(const std::string& name, const std::string& what) const;
  // The inflated bytes of entry `name`, checked against its CRC. `what` says what the entry is
  // ("package document", "storage 3"), for messages. Throws Error(file_format) when the entry is
  // missing, damaged, or inflates past `max_bytes`.
  std::string read(const std::string& name, const std::string& what, std::uint64_t max_bytes) const;
  // Reads exactly `out_size` bytes of entry `name` into `out`; throws Error(file_format) when the
  // entry is missing, damaged, or not exactly that long.
  void read_exactly(const std::string& name, const std::string& what, void* out,
                    std::uint64_t out_size) const;

 private:
  struct Closer {
    void operator()(zip_t* archive) const;
  };
  ZipArchive(zip_t* archive, std::string where, std::string format);
  std::int64_t locate(const std::string& name, const std::string& what) const;
  [[noreturn]] void fail(const std::string& problem) const;

  std::unique_ptr<zip_t, Closer> archive_;
  std::string where_;
  std::string format_;
};

}  // namespace lwm
