// SourceMap: token ranges of a prompt → video frames and book bytes, and back.
#include "lwm/source_map.h"

#include <algorithm>

#include "lwm/error.h"

namespace lwm {
namespace {

const char* kind_name(SourceLocation::Kind kind) {
  return kind == SourceLocation::Kind::book ? "book" : "video";
}

std::string range_text(const TokenRange& range) {
  return "[" + std::to_string(range.begin) + ", " + std::to_string(range.end) + ")";
}

}  // namespace

std::int32_t SourceMap::add_book(std::string name, BookOutline outline) {
  sources_.push_back({SourceLocation::Kind::book, std::move(name), std::move(outline)});
  return static_cast<std::int32_t>(sources_.size() - 1);
}

std::int32_t SourceMap::add_video(std::string name) {
  sources_.push_back({SourceLocation::Kind::video, std::move(name), {}});
  return static_cast<std::int32_t>(sources_.size() - 1);
}

const SourceMap::Source& SourceMap::source(std::int32_t id, SourceLocation::Kind kind) const {
  if (id < 0 || static_cast<std::size_t>(id) >= sources_.size() || sources_[id].kind != kind) {
    throw Error(ErrorKind::invalid_argument, "source map: source " + std::to_string(id) +
                                                 " is not a " + kind_name(kind) + " of this map (" +
                                                 std::to_string(sources_.size()) + " sources)");
  }
  return sources_[id];
}

const std::string& SourceMap::source_name(std::int32_t id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= sources_.size()) {
    throw Error(ErrorKind::invalid_argument, "source map: no source " + std::to_string(id) + " (" +
                                                 std::to_string(sources_.size()) + " sources)");
  }
  return sources_[id].name;
}

const BookOutline& SourceMap::book_outline(std::int32_t book) const {
  return source(book, SourceLocation::Kind::book).outline;
}

void SourceMap::insert(Span span) {
  if (span.tokens.begin < 0 || span.tokens.end <= span.tokens.begin) {
    throw Error(ErrorKind::invalid_argument,
                "source map: token range " + range_text(span.tokens) + " is empty or negative");
  }
  const auto after =
      std::upper_bound(spans_.begin(), spans_.end(), span.tokens.begin,
                       [](std::int64_t value, const Span& s) { return value < s.tokens.begin; });
  const bool overlaps_previous =
      after != spans_.begin() && std::prev(after)->tokens.end > span.tokens.begin;
  const bool overlaps_next = after != spans_.end() && after->tokens.begin < span.tokens.end;
  if (overlaps_previous || overlaps_next) {
    const Span& other = overlaps_previous ? *std::prev(after) : *after;
    throw Error(ErrorKind::invalid_argument, "source map: token range " + range_text(span.tokens) +
                                                 " overlaps " + range_text(other.tokens) +
                                                 ", already mapped to '" +
                                                 sources_[other.source].name + "'");
  }
  spans_.insert(after, std::move(span));
}

void SourceMap::add_book_tokens(std::int32_t book, std::int64_t first_token,
                                std::span<const std::size_t> token_begins, std::size_t text_end) {
  const Source& target = source(book, SourceLocation::Kind::book);
  if (token_begins.empty()) return;
  for (std::size_t i = 0; i < token_begins.size(); ++i) {
    const std::size_t next = i + 1 < token_begins.size() ? token_begins[i + 1] : text_end;
    if (next < token_begins[i]) {
      throw Error(ErrorKind::invalid_argument,
                  "source map: byte offsets of '" + target.name + "' go backwards at token " +
                      std::to_string(first_token + static_cast<std::int64_t>(i)) + " (" +
                      std::to_string(token_begins[i]) + " then " + std::to_string(next) + ")");
    }
  }
  if (text_end > target.outline.text_bytes) {
    throw Error(ErrorKind::invalid_argument,
                "source map: tokens reach byte " + std::to_string(text_end) + " of '" +
                    target.name + "', whose text has " + std::to_string(target.outline.text_bytes) +
                    " bytes");
  }
  Span span;
  span.tokens = {first_token, first_token + static_cast<std::int64_t>(token_begins.size())};
  span.source = book;
  span.token_begins.assign(token_begins.begin(), token_begins.end());
  span.text_end = text_end;
  insert(std::move(span));
}

void SourceMap::add_video_frame(std::int32_t video, std::int64_t first_token,
                                std::int64_t token_count, const VideoLocation& where) {
  source(video, SourceLocation::Kind::video);
  Span span;
  span.tokens = {first_token, first_token + token_count};
  span.source = video;
  span.video = where;
  insert(std::move(span));
}

std::optional<SourceLocation> SourceMap::locate(std::int64_t position) const {
  const auto after =
      std::upper_bound(spans_.begin(), spans_.end(), position,
                       [](std::int64_t value, const Span& s) { return value < s.tokens.begin; });
  if (after == spans_.begin()) return std::nullopt;
  const Span& span = *std::prev(after);
  if (position >= span.tokens.end) return std::nullopt;
  SourceLocation location;
  location.source = span.source;
  location.kind = sources_[span.source].kind;
  if (location.kind == SourceLocation::Kind::video) {
    location.video = span.video;
  } else {
    const std::size_t offset = span.token_begins[position - span.tokens.begin];
    location.book = sources_[span.source].outline.locate(offset);
  }
  return location;
}

std::optional<TokenRange> SourceMap::tokens_for_bytes(std::int32_t book, ByteRange bytes) const {
  source(book, SourceLocation::Kind::book);
  if (bytes.end <= bytes.begin) return std::nullopt;
  std::optional<TokenRange> found;
  for (const Span& span : spans_) {
    if (span.source != book) continue;
    const auto& begins = span.token_begins;
    // Token i covers bytes [begins[i], begins[i + 1]) (the last one up to text_end); tokens that
    // share their first byte belong together (the byte pieces of one character).
    std::size_t first = static_cast<std::size_t>(
        std::lower_bound(begins.begin(), begins.end(), bytes.begin) - begins.begin());
    if (first > 0) {
      const std::size_t straddler_end = first < begins.size() ? begins[first] : span.text_end;
      if (begins[first - 1] < bytes.begin && straddler_end > bytes.begin) {
        first = static_cast<std::size_t>(
            std::lower_bound(begins.begin(), begins.end(), begins[first - 1]) - begins.begin());
      }
    }
    const auto last = static_cast<std::size_t>(
        std::lower_bound(begins.begin(), begins.end(), bytes.end) - begins.begin());
    if (first >= last) continue;
    const TokenRange range{span.tokens.begin + static_cast<std::int64_t>(first),
                           span.tokens.begin + static_cast<std::int64_t>(last)};
    if (!found) {
      found = range;
    } else {
      found->end = range.end;
    }
  }
  return found;
}

std::optional<TokenRange> SourceMap::tokens_for_chapter(std::int32_t book,
                                                        std::size_t index) const {
  return tokens_for_bytes(book, book_outline(book).chapter_bytes(index));
}

std::optional<TokenRange> SourceMap::tokens_for_page(std::int32_t book, std::int32_t number) const {
  return tokens_for_bytes(book, book_outline(book).page_bytes(number));
}

std::optional<TokenRange> SourceMap::tokens_for_time(std::int32_t video, double seconds) const {
  source(video, SourceLocation::Kind::video);
  const Span* best = nullptr;
  const Span* earliest = nullptr;
  for (const Span& span : spans_) {
    if (span.source != video) continue;
    if (earliest == nullptr || span.video.seconds < earliest->video.seconds) earliest = &span;
    if (span.video.seconds <= seconds &&
        (best == nullptr || span.video.seconds > best->video.seconds)) {
      best = &span;
    }
  }
  if (best == nullptr) best = earliest;
  if (best == nullptr) return std::nullopt;
  return best->tokens;
}

}  // namespace lwm
