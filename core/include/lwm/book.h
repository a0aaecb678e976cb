// Books as text with anchors (design.md step 1, issue 5): a .txt, .md, .epub or .pdf file becomes
// UTF-8 text plus the chapters (and, for PDF, the pages) found in it, so that a byte of the text,
// and through a SourceMap a token of a prompt, maps back to a chapter and a page.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "lwm/progress.h"

namespace lwm {

enum class BookFormat { plain_text, markdown, epub, pdf };

// "plain text", "Markdown", "EPUB", "PDF", for messages.
const char* to_string(BookFormat format) noexcept;

// A chapter starts at `offset` (a byte of Book::text) and runs to the next chapter at its level
// or an outer one: a level-1 part holds the level-2 chapters after it.
struct BookChapter {
  std::string title;
  std::size_t offset = 0;
  std::int32_t level = 1;  // 1 for the outermost headings (Markdown "#", "BOOK II"), 2 inside
  std::int32_t page = 0;   // 1-based page the chapter starts on; 0 when the format has no pages
};

// A page starts at `offset` and runs to the next page's offset (PDF only).
struct BookPage {
  std::int32_t number = 0;  // 1-based
  std::size_t offset = 0;
};

struct ByteRange {
  std::size_t begin = 0;
  std::size_t end = 0;  // one past the last byte
};

// Where a byte of the text came from.
struct BookLocation {
  std::int32_t chapter = -1;  // index into BookOutline::chapters; -1 before the first chapter
  std::string chapter_title;  // empty when chapter is -1
  std::int32_t page = 0;      // 1-based; 0 when the format has no pages
  std::size_t offset = 0;     // byte offset into the text
};

// The anchors of a book without its text: small enough to keep beside every prompt.
struct BookOutline {
  std::vector<BookChapter> chapters;  // sorted by offset
  std::vector<BookPage> pages;        // sorted by offset and number; empty without pages
  std::size_t text_bytes = 0;

  // The innermost chapter and the page holding byte `offset` (an offset past the end is clamped
  // to the last byte).
  BookLocation locate(std::size_t offset) const;
  // The bytes of chapter `index` or of page `number`; throws Error(invalid_argument) naming the
  // chapter or page when the book has no such one.
  ByteRange chapter_bytes(std::size_t index) const;
  ByteRange page_bytes(std::int32_t number) const;
};

struct Book {
  std::filesystem::path path;
  BookFormat format = BookFormat::plain_text;
  std::string title;   // from the file's metadata or first heading; empty when unknown
  std::string author;  // empty when unknown
  std::string text;    // UTF-8, lines ending in "\n"
  BookOutline outline;
  std::vector<std::string> warnings;  // things the reader worked around; each names the file
};

// Reads a book, choosing the reader by content (a PDF or zip signature) and then by extension
// (.md and .markdown are Markdown, anything else plain text):
//  - plain text and Markdown: UTF-8, or Windows-1252 (hence Latin-1) with a warning when the bytes
//    are not UTF-8; chapters from ATX headings (Markdown) or "CHAPTER I" / "Chapter 1" /
//    "BOOK II" / "PART 3" lines (plain text);
//  - EPUB: the spine's XHTML documents in order, text only; chapters from the navigation document
//    or NCX, else from each document's first heading; title and author from the package;
//  - PDF: the text of each page, page anchors, chapters from the outline; title and author.
// Throws Error naming the file and the problem: io when it cannot be read (missing, a directory),
// file_format when it is not a book of its kind (empty, binary bytes, a broken zip, OPF or XHTML,
// a damaged PDF, no text at all), unsupported for a password-protected PDF or one without a text
// layer, cancelled when `progress` (called per EPUB document or PDF page) returns false.
Book load_book(const std::filesystem::path& path, const ProgressCallback& progress = {});

}  // namespace lwm
