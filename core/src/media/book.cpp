// load_book: picks the reader by content and extension; the outline's lookups; shared helpers.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "media/book_readers.h"

namespace lwm {

const char* to_string(BookFormat format) noexcept {
  switch (format) {
    case BookFormat::plain_text:
      return "plain text";
    case BookFormat::markdown:
      return "Markdown";
    case BookFormat::epub:
      return "EPUB";
    case BookFormat::pdf:
      return "PDF";
  }
  return "unknown";
}

namespace book_detail {

std::string book_where(const std::filesystem::path& path) {
  return "the book '" + path.string() + "'";
}

void fail(ErrorKind kind, const std::filesystem::path& path, const std::string& what) {
  throw Error(kind, book_where(path) + " " + what);
}

std::size_t first_invalid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t length;
    unsigned char low = 0x80, high = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      if (c == 0xE0) low = 0xA0;   // overlong
      if (c == 0xED) high = 0x9F;  // UTF-16 surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      if (c == 0xF0) low = 0x90;   // overlong
      if (c == 0xF4) high = 0x8F;  // past U+10FFFF
    } else {
      return i;
    }
    if (i + length > n || s[i + 1] < low || s[i + 1] > high) return i;
    for (std::size_t k = 2; k < length; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
    }
    i += length;
  }
  return std::string_view::npos;
}

void append_utf8(std::string& out, char32_t code) {
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else if (code < 0x800) {
    out += static_cast<char>(0xC0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else if (code < 0x10000) {
    out += static_cast<char>(0xE0 | (code >> 12));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code >> 18));
    out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code & 0x3F));
  }
}

std::string normalise_newlines(std::string_view text) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\r') {
      out += text[i];
    } else {
      out += '\n';
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    }
  }
  return out;
}

void require_some_text(const std::string& text, const std::filesystem::path& path) {
  const bool has_text = std::any_of(text.begin(), text.end(), [](char c) {
    return !std::isspace(static_cast<unsigned char>(c));
  });
  if (!has_text) fail(ErrorKind::file_format, path, "has no text; pass a book with text in it");
}

void report_progress(const ProgressCallback& progress, std::int64_t done, std::int64_t total,
                     double elapsed_seconds, const std::filesystem::path& path) {
  if (!progress) return;
  if (!progress(Progress{done, total, elapsed_seconds})) {
    throw Error(ErrorKind::cancelled, "reading " + book_where(path) + " was cancelled after " +
                                          std::to_string(done) + " of " + std::to_string(total));
  }
}

}  // namespace book_detail

namespace {

using book_detail::fail;

std::string read_whole_file(const std::filesystem::path& path) {
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    fail(ErrorKind::io, path, "is a directory; pass a book file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error(ErrorKind::io, "cannot open the book '" + path.string() +
                                   "': " + std::strerror(errno) + "; check the path");
  }
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(ErrorKind::io, path, "could not be read to the end");
  return bytes;
}

std::string lowercase_extension(const std::filesystem::path& path) {
  std::string extension = path.extension().string();
  for (char& c : extension) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return extension;
}

// Readers must give anchors inside the text, in order; anything else would make positions lie.
void check_outline(const Book& book) {
  const auto& outline = book.outline;
  const auto misplaced = [&](std::size_t offset, std::size_t previous) {
    return offset > book.text.size() || offset < previous;
  };
  std::size_t previous = 0;
  for (const auto& chapter : outline.chapters) {
    if (misplaced(chapter.offset, previous)) {
      throw Error(ErrorKind::file_format, book_detail::book_where(book.path) +
                                              ": internal error, chapter '" + chapter.title +
                                              "' is anchored out of order");
    }
    previous = chapter.offset;
  }
  previous = 0;
  for (const auto& page : outline.pages) {
    if (misplaced(page.offset, previous)) {
      throw Error(ErrorKind::file_format, book_detail::book_where(book.path) +
                                              ": internal error, page " +
                                              std::to_string(page.number) + " is out of order");
    }
    previous = page.offset;
  }
}

}  // namespace

Book load_book(const std::filesystem::path& path, const ProgressCallback& progress) {
  std::string bytes = read_whole_file(path);
  if (bytes.empty()) fail(ErrorKind::file_format, path, "is empty (0 bytes)");

  const std::string extension = lowercase_extension(path);
  const bool looks_like_pdf = bytes.compare(0, 5, "%PDF-") == 0;
  const bool looks_like_zip = bytes.compare(0, 4, "PK\x03\x04") == 0;
  Book book;
  BookFormat format;
  if (looks_like_pdf) {
    format = BookFormat::pdf;
    book = book_detail::read_pdf_book(path, bytes, progress);
  } else if (looks_like_zip) {
    format = BookFormat::epub;
    book = book_detail::read_epub_book(path, bytes, progress);
  } else if (extension == ".pdf" || extension == ".epub") {
    fail(ErrorKind::file_format, path,
         "is named " + extension + " but does not start like one (" +
             (extension == ".pdf" ? "\"%PDF-\"" : "a zip archive") +
             "); it is damaged or misnamed");
  } else {
    const bool markdown = extension == ".md" || extension == ".markdown";
    format = markdown ? BookFormat::markdown : BookFormat::plain_text;
    book = book_detail::read_text_book(path, std::move(bytes), markdown);
  }
  book.path = path;
  book.format = format;
  book.outline.text_bytes = book.text.size();
  check_outline(book);
  return book;
}

// ---------------------------------------------------------------------------------------------
// BookOutline

BookLocation BookOutline::locate(std::size_t offset) const {
  BookLocation location;
  location.offset = std::min(offset, text_bytes == 0 ? 0 : text_bytes - 1);
  const auto chapter =
      std::upper_bound(chapters.begin(), chapters.end(), location.offset,
                       [](std::size_t value, const BookChapter& c) { return value < c.offset; });
  if (chapter != chapters.begin()) {
    location.chapter = static_cast<std::int32_t>(std::prev(chapter) - chapters.begin());
    location.chapter_title = std::prev(chapter)->title;
  }
  const auto page =
      std::upper_bound(pages.begin(), pages.end(), location.offset,
                       [](std::size_t value, const BookPage& p) { return value < p.offset; });
  if (page != pages.begin()) location.page = std::prev(page)->number;
  return location;
}

ByteRange BookOutline::chapter_bytes(std::size_t index) const {
  if (index >= chapters.size()) {
    throw Error(ErrorKind::invalid_argument,
                "chapter " + std::to_string(index) + " does not exist: the book has " +
                    std::to_string(chapters.size()) + " chapters, numbered from 0");
  }
  // A chapter runs to the next one at its level or outside it: a part holds its chapters.
  for (std::size_t next = index + 1; next < chapters.size(); ++next) {
    if (chapters[next].level <= chapters[index].level) {
      return {chapters[index].offset, chapters[next].offset};
    }
  }
  return {chapters[index].offset, text_bytes};
}

ByteRange BookOutline::page_bytes(std::int32_t number) const {
  const auto page = std::find_if(pages.begin(), pages.end(),
                                 [&](const BookPage& p) { return p.number == number; });
  if (page == pages.end()) {
    throw Error(ErrorKind::invalid_argument,
                "page " + std::to_string(number) + " does not exist: " +
                    (pages.empty() ? std::string("the book has no pages")
                                   : "the book has pages " + std::to_string(pages.front().number) +
                                         " to " + std::to_string(pages.back().number)));
  }
  const std::size_t end = std::next(page) != pages.end() ? std::next(page)->offset : text_bytes;
  return {page->offset, end};
}

}  // namespace lwm
