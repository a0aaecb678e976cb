// PDF books through poppler's C++ library: the text of each page in reading order, an anchor per
// page, chapter anchors from the outline, title and author from the document information.
#include <poppler-document.h>
#include <poppler-global.h>
#include <poppler-page.h>
#include <poppler-toc.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "media/book_readers.h"

namespace lwm::book_detail {
namespace {

// Poppler reports problems through one process-wide callback; by default it prints them to
// stderr, which a library must not do. We keep the last message of this thread instead, so that a
// PDF poppler cannot open is reported with poppler's reason.
thread_local std::string last_poppler_message;

void keep_poppler_message(const std::string& message, void*) {
  last_poppler_message = message;
}

void install_poppler_messages() {
  static const bool installed = [] {
    poppler::set_debug_error_function(keep_poppler_message, nullptr);
    return true;
  }();
  (void)installed;
}

std::string utf8(const poppler::ustring& text) {
  const poppler::byte_array bytes = text.to_utf8();
  return std::string(bytes.begin(), bytes.end());
}

// A page's text with "\n" line ends, no form feeds and no trailing blanks on its lines.
std::string clean_page_text(const std::string& raw) {
  const std::string text = normalise_newlines(raw);
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (c == '\f') continue;
    if (c == '\n') {
      while (!out.empty() && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
    }
    out += c;
  }
  while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
  while (!out.empty() && (out.front() == '\n')) out.erase(0, 1);
  return out;
}

struct OutlineEntry {
  std::string title;
  int depth = 1;
};

void collect_outline(const poppler::toc_item* item, int depth, std::vector<OutlineEntry>& out) {
  for (const poppler::toc_item* child : item->children()) {
    out.push_back({utf8(child->title()), depth});
    collect_outline(child, depth + 1, out);
  }
}

// The text with whitespace runs collapsed to one space and ASCII letters lowercased, and for each
// of its bytes the offset of the byte it came from, for matching titles loosely.
struct FoldedText {
  std::string text;
  std::vector<std::size_t> origin;
};

FoldedText fold(const std::string& text) {
  FoldedText folded;
  folded.text.reserve(text.size());
  folded.origin.reserve(text.size());
  bool space = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (std::isspace(c)) {
      if (!space) {
        folded.text += ' ';
        folded.origin.push_back(i);
      }
      space = true;
    } else {
      folded.text += static_cast<char>(std::tolower(c));
      folded.origin.push_back(i);
      space = false;
    }
  }
  return folded;
}

std::string fold_title(const std::string& title) {
  std::string folded = fold(title).text;
  while (!folded.empty() && folded.front() == ' ') folded.erase(0, 1);
  while (!folded.empty() && folded.back() == ' ') folded.pop_back();
  return folded;
}

// Poppler's C++ outline gives titles but not their destinations, so each outline entry is anchored
// where its title appears in the text, searching forward from the previous entry (outlines are in
// reading order) and preferring an occurrence at the start of a line, as headings are.
void anchor_outline(const std::vector<OutlineEntry>& outline, const std::filesystem::path& path,
                    Book& book) {
  const FoldedText folded = fold(book.text);
  std::size_t from = 0;
  for (const auto& entry : outline) {
    const std::string needle = fold_title(entry.title);
    if (needle.empty()) continue;
    std::size_t found = std::string::npos;
    for (std::size_t at = folded.text.find(needle, from); at != std::string::npos;
         at = folded.text.find(needle, at + 1)) {
      if (found == std::string::npos) found = at;
      const std::size_t origin = folded.origin[at];
      if (origin == 0 || book.text[origin - 1] == '\n') {
        found = at;
        break;
      }
    }
    if (found == std::string::npos) {
      book.warnings.push_back(book_where(path) + ": outline entry '" + entry.title +
                              "' was not found in the text after the previous entry; no chapter "
                              "anchor for it");
      continue;
    }
    from = found;
    book.outline.chapters.push_back({entry.title, folded.origin[found], entry.depth, 0});
  }
}

}  // namespace

Book read_pdf_book(const std::filesystem::path& path, const std::string& bytes,
                   const ProgressCallback& progress) {
  const auto started = std::chrono::steady_clock::now();
  install_poppler_messages();
  last_poppler_message.clear();
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    fail(ErrorKind::unsupported, path, "is larger than the 2 GiB a PDF can be read from");
  }
  // Poppler reads the bytes in place; `bytes` outlives the document.
  const std::unique_ptr<poppler::document> document(
      poppler::document::load_from_raw_data(bytes.data(), static_cast<int>(bytes.size())));
  if (!document) {
    fail(ErrorKind::file_format, path,
         "is not a readable PDF" +
             (last_poppler_message.empty() ? std::string()
                                           : " (poppler: " + last_poppler_message + ")") +
             "; the file may be truncated or damaged");
  }
  if (document->is_locked()) {
    fail(ErrorKind::unsupported, path,
         "is a password-protected PDF; save an unprotected copy (e.g. qpdf --decrypt) and pass "
         "that");
  }
  const int page_count = document->pages();
  if (page_count <= 0) {
    fail(ErrorKind::file_format, path, "is a PDF without pages; the file may be damaged");
  }

  Book book;
  book.title = utf8(document->get_title());
  book.author = utf8(document->get_author());
  for (int index = 0; index < page_count; ++index) {
    const std::unique_ptr<poppler::page> page(document->create_page(index));
    std::string text;
    if (page) {
      text = clean_page_text(
          utf8(page->text(poppler::rectf(), poppler::page::non_raw_non_physical_layout)));
    } else {
      book.warnings.push_back(book_where(path) + ": page " + std::to_string(index + 1) +
                              " could not be read; it was left out");
    }
    if (!text.empty() && !book.text.empty()) book.text += '\n';
    book.outline.pages.push_back({index + 1, book.text.size()});
    book.text += text;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    report_progress(progress, index + 1, page_count, elapsed, path);
  }
  if (!book.text.empty()) book.text += '\n';
  if (std::all_of(book.text.begin(), book.text.end(),
                  [](char c) { return std::isspace(static_cast<unsigned char>(c)); })) {
    fail(ErrorKind::unsupported, path,
         "has no text layer (" + std::to_string(page_count) +
             " pages, perhaps scanned images); run it through OCR first");
  }

  std::vector<OutlineEntry> outline;
  if (const std::unique_ptr<poppler::toc> toc(document->create_toc()); toc && toc->root()) {
    collect_outline(toc->root(), 1, outline);
  }
  // The two outermost outline levels are chapters, as for Markdown and EPUB.
  outline.erase(std::remove_if(outline.begin(), outline.end(),
                               [](const OutlineEntry& entry) { return entry.depth > 2; }),
                outline.end());
  anchor_outline(outline, path, book);
  book.outline.text_bytes = book.text.size();
  for (auto& chapter : book.outline.chapters)
    chapter.page = book.outline.locate(chapter.offset).page;
  return book;
}

}  // namespace lwm::book_detail
