#include "mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "lwm/error.h"

namespace lwm {

MappedFile map_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw Error(ErrorKind::io, "cannot open '" + path.string() + "': " + std::strerror(errno));
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int saved = errno;
    ::close(fd);
    throw Error(ErrorKind::io, "cannot stat '" + path.string() + "': " + std::strerror(saved));
  }
  MappedFile mapped;
  mapped.size = static_cast<std::size_t>(info.st_size);
  if (mapped.size == 0) {
    ::close(fd);
    return mapped;
  }
  void* address = ::mmap(nullptr, mapped.size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int saved = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (address == MAP_FAILED) {
    throw Error(ErrorKind::io, "cannot map '" + path.string() + "': " + std::strerror(saved));
  }
  const std::size_t size = mapped.size;
  mapped.data = std::shared_ptr<const void>(address, [size](const void* p) {
    ::munmap(const_cast<void*>(p), size);
  });
  return mapped;
}

}  // namespace lwm
