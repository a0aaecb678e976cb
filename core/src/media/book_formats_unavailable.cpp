// EPUB and PDF readers for a build without libzip, libxml2 or poppler-cpp (core/CMakeLists.txt).
#include "book_readers.h"

namespace lwm::book_detail {
namespace {

[[noreturn]] void built_without(const std::filesystem::path& path, const char* format) {
  fail(ErrorKind::unsupported, path,
       std::string("is ") + format +
           ", and this build of LWM Studio has no EPUB or PDF reader (it was built without "
           "libzip, libxml2 or poppler-cpp; packaging/install-deps.sh installs them)");
}

}  // namespace

Book read_epub_book(const std::filesystem::path& path, const std::string&,
                    const ProgressCallback&) {
  built_without(path, "an EPUB");
}

Book read_pdf_book(const std::filesystem::path& path, const std::string&, const ProgressCallback&) {
  built_without(path, "a PDF");
}

}  // namespace lwm::book_detail
