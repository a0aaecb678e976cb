// The book readers behind load_book (lwm/book.h), one file per format, and what they share.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include "lwm/book.h"
#include "lwm/error.h"
#include "lwm/progress.h"

namespace lwm::book_detail {

// "the book '<path>'": every message starts by naming the file.
std::string book_where(const std::filesystem::path& path);

[[noreturn]] void fail(ErrorKind kind, const std::filesystem::path& path, const std::string& what);

// Offset of the first byte that breaks UTF-8 (overlong forms, surrogates and code points past
// U+10FFFF included), or npos when all of `text` is valid.
std::size_t first_invalid_utf8(std::string_view text);

// Appends code point `code` as UTF-8.
void append_utf8(std::string& out, char32_t code);

// Text with "\r\n" and lone "\r" turned into "\n", and a leading byte-order mark removed.
std::string normalise_newlines(std::string_view text);

// Throws file_format naming the file when `text` has no letters, digits or punctuation at all.
void require_some_text(const std::string& text, const std::filesystem::path& path);

// Reports progress and throws Error(cancelled) when the callback asks to stop.
void report_progress(const ProgressCallback& progress, std::int64_t done, std::int64_t total,
                     double elapsed_seconds, const std::filesystem::path& path);

// Each reader fills text, outline, warnings and metadata; load_book fills path, format and
// text_bytes and checks the anchors.
Book read_text_book(const std::filesystem::path& path, std::string bytes, bool markdown);
Book read_epub_book(const std::filesystem::path& path, const std::string& bytes,
                    const ProgressCallback& progress);
Book read_pdf_book(const std::filesystem::path& path, const std::string& bytes,
                   const ProgressCallback& progress);

}  // namespace lwm::book_detail
