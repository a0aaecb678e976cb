// Positions back to the source (design.md step 5, issue 5): which video frame or which place in a
// book each token of a prompt came from, so that an answer can be checked against its sources and
// the GUI can seek there. Tokens of the template (BOS, instructions, the question) map to nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lwm/book.h"
#include "lwm/prompt.h"  // TokenRange

namespace lwm {

struct VideoLocation {
  double seconds = 0.0;    // presentation time of the frame
  std::int64_t frame = 0;  // index of the frame in the video
};

// Where one token came from. `source` is the id that add_book() or add_video() returned.
struct SourceLocation {
  enum class Kind { video, book };
  Kind kind = Kind::book;
  std::int32_t source = 0;
  VideoLocation video;  // when kind is video
  BookLocation book;    // when kind is book
};

class SourceMap {
 public:
  // Registers a source; `name` (a file path, say) is for display. Returns its id.
  std::int32_t add_book(std::string name, BookOutline outline);
  std::int32_t add_video(std::string name);

  // Tokens [first_token, first_token + token_begins.size()) encode the book's text from byte
  // token_begins[0] to byte `text_end`: token i starts at byte token_begins[i] (non-decreasing;
  // tokens that share a byte, as byte-fallback pieces of one character do, repeat it).
  void add_book_tokens(std::int32_t book, std::int64_t first_token,
                       std::span<const std::size_t> token_begins, std::size_t text_end);
  // Tokens [first_token, first_token + token_count) encode one frame of the video.
  void add_video_frame(std::int32_t video, std::int64_t first_token, std::int64_t token_count,
                       const VideoLocation& where);
  // Token ranges may be added in any order but never overlap; both throw Error(invalid_argument)
  // for an unknown source, an overlap, a negative position or offsets that go backwards.

  // Where token `position` came from; nullopt for template tokens and positions past the end.
  std::optional<SourceLocation> locate(std::int64_t position) const;

  // The tokens that encode bytes [bytes.begin, bytes.end) of a book's text, or chapter `index`, or
  // page `number` of it (from the first such token to the last: a book cut into several pieces
  // by other tokens yields a range that spans them). nullopt when no token covers them.
  std::optional<TokenRange> tokens_for_bytes(std::int32_t book, ByteRange bytes) const;
  std::optional<TokenRange> tokens_for_chapter(std::int32_t book, std::size_t index) const;
  std::optional<TokenRange> tokens_for_page(std::int32_t book, std::int32_t number) const;
  // The tokens of the video's last frame at or before `seconds` (its first frame if none).
  std::optional<TokenRange> tokens_for_time(std::int32_t video, double seconds) const;

  const std::string& source_name(std::int32_t source) const;
  const BookOutline& book_outline(std::int32_t book) const;
  std::size_t source_count() const { return sources_.size(); }

 private:
  struct Source {
    SourceLocation::Kind kind;
    std::string name;
    BookOutline outline;  // books only
  };
  struct Span {
    TokenRange tokens;
    std::int32_t source = 0;
    VideoLocation video;
    std::vector<std::size_t> token_begins;  // books: one per token
    std::size_t text_end = 0;               // books: the byte after the last token's text
  };

  const Source& source(std::int32_t id, SourceLocation::Kind kind) const;
  void insert(Span span);

  std::vector<Source> sources_;
  std::vector<Span> spans_;  // sorted by tokens.begin, disjoint
};

}  // namespace lwm
