#include "zip_archive.h"

#include <zip.h>

#include <cstring>
#include <utility>

#include "lwm/error.h"

namespace lwm {
namespace {

// libzip reports failures to open through a zip_error_t; this turns one into text and frees it.
std::string take_reason(zip_error_t& error) {
  std::string reason = zip_error_strerror(&error);
  zip_error_fini(&error);
  return reason;
}

[[noreturn]] void fail_open(const std::string& where, const std::string& format,
                            const std::string& reason, ErrorKind kind = ErrorKind::file_format) {
  throw Error(kind, where + " is not a readable zip archive, as " + format + " files must be (" +
                        reason + "); the file may be truncated or damaged");
}

}  // namespace

void ZipArchive::Closer::operator()(zip_t* archive) const {
  zip_discard(archive);
}

ZipArchive::ZipArchive(zip_t* archive, std::string where, std::string format)
    : archive_(archive), where_(std::move(where)), format_(std::move(format)) {}
ZipArchive::ZipArchive(ZipArchive&&) noexcept = default;
ZipArchive& ZipArchive::operator=(ZipArchive&&) noexcept = default;
ZipArchive::~ZipArchive() = default;

ZipArchive ZipArchive::open_file(const std::filesystem::path& path, std::string where,
                                 std::string format) {
  int code = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_RDONLY, &code);
  if (archive == nullptr) {
    zip_error_t error;
    zip_error_init_with_code(&error, code);
    const bool unreadable = code == ZIP_ER_OPEN || code == ZIP_ER_NOENT || code == ZIP_ER_READ;
    fail_open(where, format, take_reason(error),
              unreadable ? ErrorKind::io : ErrorKind::file_format);
  }
  return ZipArchive(archive, std::move(where), std::move(format));
}

ZipArchive ZipArchive::open_bytes(const std::string& bytes, std::string where, std::string format) {
  zip_error_t error;
  zip_error_init(&error);
  zip_source_t* source = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
  if (source == nullptr) fail_open(where, format, take_reason(error));
  // No ZIP_CHECKCONS: writers differ in small ways that do not matter for reading, and a damaged
  // entry is still caught by its CRC when it is read.
  zip_t* archive = zip_open_from_source(source, ZIP_RDONLY, &error);
  if (archive == nullptr) {
    zip_source_free(source);  // not taken over when opening fails
    fail_open(where, format, take_reason(error));
  }
  zip_error_fini(&error);
  return ZipArchive(archive, std::move(where), std::move(format));
}

void ZipArchive::fail(const std::string& problem) const {
  throw Error(ErrorKind::file_format, where_ + " " + problem);
}

std::vector<std::string> ZipArchive::names() const {
  std::vector<std::string> out;
  const zip_int64_t n = zip_get_num_entries(archive_.get(), 0);
  for (zip_int64_t i = 0; i < n; ++i) {
    const char* name = zip_get_name(archive_.get(), static_cast<zip_uint64_t>(i), 0);
    if (name != nullptr) out.emplace_back(name);
  }
  return out;
}

bool ZipArchive::contains(const std::string& name) const {
  return zip_name_locate(archive_.get(), name.c_str(), 0) >= 0;
}

std::int64_t ZipArchive::locate(const std::string& name, const std::string& what) const {
  const zip_int64_t index = zip_name_locate(archive_.get(), name.c_str(), 0);
  if (index < 0) {
    fail("is not a complete " + format_ + ": " + what + " '" + name +
         "' is missing from the archive");
  }
  return index;
}

std::uint64_t ZipArchive::size(const std::string& name, const std::string& what) const {
  const auto index = static_cast<zip_uint64_t>(locate(name, what));
  zip_stat_t stat;
  zip_stat_init(&stat);
  if (zip_stat_index(archive_.get(), index, 0, &stat) != 0 || (stat.valid & ZIP_STAT_SIZE) == 0) {
    fail("has a damaged zip entry '" + name + "'");
  }
  return stat.size;
}

std::string ZipArchive::read(const std::string& name, const std::string& what,
                             std::uint64_t max_bytes) const {
  const std::uint64_t stated = size(name, what);
  if (stated > max_bytes) {
    fail("has an entry '" + name + "' (" + what + ") of " + std::to_string(stated) +
         " bytes inflated, more than any " + format_ + " entry can sensibly hold");
  }
  std::string contents(static_cast<std::size_t>(stated), '\0');
  read_exactly(name, what, contents.data(), stated);
  return contents;
}

void ZipArchive::read_exactly(const std::string& name, const std::string& what, void* out,
                              std::uint64_t out_size) const {
  const auto index = static_cast<zip_uint64_t>(locate(name, what));
  zip_file_t* file = zip_fopen_index(archive_.get(), index, 0);
  if (file == nullptr) {
    fail("cannot open its zip entry '" + name +
         "': " + zip_error_strerror(zip_get_error(archive_.get())));
  }
  auto* bytes = static_cast<char*>(out);
  std::uint64_t done = 0;
  while (true) {
    // One byte past the expected size is asked for, so an entry longer than stated is caught.
    char probe = 0;
    const std::uint64_t want = done < out_size ? out_size - done : 1;
    char* into = done < out_size ? bytes + done : &probe;
    const zip_int64_t n = zip_fread(file, into, want);
    if (n < 0) {
      const std::string reason = zip_file_strerror(file);
      zip_fclose(file);
      fail("has a damaged zip entry '" + name + "' (" + what + ": " + reason + ")");
    }
    if (n == 0) break;
    done += static_cast<std::uint64_t>(n);
    if (done > out_size) break;
  }
  zip_fclose(file);
  if (done != out_size) {
    fail("has an entry '" + name + "' (" + what + ") of " +
         (done > out_size ? "more than " + std::to_string(out_size) : std::to_string(done)) +
         " bytes where " + std::to_string(out_size) + " are needed");
  }
}

}  // namespace lwm
