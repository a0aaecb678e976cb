// SourceMap (lwm/source_map.h), Tokenizer::encode_with_offsets and render_prompt's field locations:
// token positions of a prompt map to video frames and book locations and back. The book lookups
// are checked against a brute-force reference on random layouts, and end to end with the test
// tokenizer: every token's bytes must be the text SentencePiece says the piece spells.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "lwm/book.h"
#include "lwm/chat_template.h"
#include "lwm/error.h"
#include "lwm/source_map.h"
#include "test_support.h"
#include "text_test_tokenizer.h"

namespace {

using lwm::BookOutline;
using lwm::ByteRange;
using lwm::Error;
using lwm::SourceLocation;
using lwm::SourceMap;
using lwm::TokenRange;

BookOutline outline_of(std::size_t text_bytes, std::vector<std::size_t> chapter_offsets) {
  BookOutline outline;
  outline.text_bytes = text_bytes;
  for (std::size_t i = 0; i < chapter_offsets.size(); ++i) {
    outline.chapters.push_back({"Chapter " + std::to_string(i + 1), chapter_offsets[i], 1, 0});
  }
  return outline;
}

TEST(SourceMap, VideoFramesMapBothWays) {
  SourceMap map;
  const auto video = map.add_video("clip.mp4");
  // Frames of 4 tokens after a 3-token preamble, one frame per half second; added out of order.
  for (int frame : {2, 0, 1, 3}) {
    map.add_video_frame(video, 3 + 4 * frame, 4, {0.5 * frame, frame});
  }
  EXPECT_FALSE(map.locate(0).has_value());
  EXPECT_FALSE(map.locate(2).has_value());
  for (int position = 3; position < 19; ++position) {
    const auto location = map.locate(position);
    ASSERT_TRUE(location.has_value()) << position;
    EXPECT_EQ(location->kind, SourceLocation::Kind::video);
    EXPECT_EQ(location->source, video);
    EXPECT_EQ(location->video.frame, (position - 3) / 4);
    EXPECT_DOUBLE_EQ(location->video.seconds, 0.5 * ((position - 3) / 4));
  }
  EXPECT_FALSE(map.locate(19).has_value());
  const auto at = [&](double seconds) { return map.tokens_for_time(video, seconds).value(); };
  EXPECT_EQ(at(0.0).begin, 3);
  EXPECT_EQ(at(0.74).begin, 7);
  EXPECT_EQ(at(1.0).begin, 11);
  EXPECT_EQ(at(1.0).end, 15);
  EXPECT_EQ(at(99.0).begin, 15);
  EXPECT_EQ(at(-1.0).begin, 3);
  EXPECT_EQ(map.source_name(video), "clip.mp4");
}

TEST(SourceMap, RejectsOverlapsUnknownSourcesAndBackwardOffsets) {
  SourceMap map;
  const auto video = map.add_video("clip.mp4");
  const auto book = map.add_book("book.txt", outline_of(100, {0, 50}));
  map.add_video_frame(video, 10, 5, {0.0, 0});
  EXPECT_THROW(map.add_video_frame(video, 14, 2, {1.0, 1}), Error);
  EXPECT_THROW(map.add_video_frame(video, 8, 3, {1.0, 1}), Error);
  EXPECT_THROW(map.add_video_frame(video, 20, 0, {1.0, 1}), Error);
  EXPECT_THROW(map.add_video_frame(video, -2, 1, {1.0, 1}), Error);
  EXPECT_THROW(map.add_video_frame(book, 30, 2, {1.0, 1}), Error);  // a book, not a video
  EXPECT_THROW(map.add_video_frame(7, 30, 2, {1.0, 1}), Error);
  const std::vector<std::size_t> backwards = {0, 5, 4};
  EXPECT_THROW(map.add_book_tokens(book, 20, backwards, 10), Error);
  const std::vector<std::size_t> fine = {0, 5, 9};
  EXPECT_THROW(map.add_book_tokens(book, 20, fine, 8), Error);    // ends before its last token
  EXPECT_THROW(map.add_book_tokens(book, 20, fine, 101), Error);  // past the book's text
  EXPECT_THROW(map.add_book_tokens(book, 13, fine, 10), Error);   // overlaps the frame
  map.add_book_tokens(book, 15, fine, 10);
  EXPECT_THROW(map.tokens_for_chapter(book, 2), Error);
  EXPECT_THROW(map.tokens_for_page(book, 1), Error);
  EXPECT_THROW(map.tokens_for_time(book, 1.0), Error);
  EXPECT_EQ(map.locate(16)->book.offset, 5u);
  EXPECT_EQ(map.locate(16)->book.chapter, 0);
}

// Reference: token i covers [begins[i], begins[i + 1]) (the last up to text_end); it belongs to a
// byte range when that overlaps it, or when it is empty and starts inside it; tokens that share a
// first byte with one that belongs, belong too (the byte pieces of one character).
std::optional<TokenRange> reference_tokens(const std::vector<std::size_t>& begins,
                                           std::size_t text_end, std::int64_t first_token,
                                           ByteRange bytes) {
  std::vector<bool> in(begins.size(), false);
  for (std::size_t i = 0; i < begins.size(); ++i) {
    const std::size_t end = i + 1 < begins.size() ? begins[i + 1] : text_end;
    const bool overlaps = begins[i] < bytes.end && end > bytes.begin;
    const bool empty_inside = begins[i] == end && begins[i] >= bytes.begin && begins[i] < bytes.end;
    in[i] = overlaps || empty_inside;
  }
  for (std::size_t i = 0; i < begins.size(); ++i) {
    for (std::size_t j = 0; j < begins.size(); ++j) {
      if (in[j] && begins[j] == begins[i]) in[i] = true;
    }
  }
  const auto first = std::find(in.begin(), in.end(), true);
  if (first == in.end()) return std::nullopt;
  const auto last = std::find(in.rbegin(), in.rend(), true);
  return TokenRange{first_token + (first - in.begin()),
                    first_token + static_cast<std::int64_t>(in.rend() - last)};
}

TEST(SourceMap, BookBytesToTokensMatchesABruteForceReference) {
  std::mt19937_64 rng(lwm::test::test_seed());
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t tokens = 1 + rng() % 40;
    std::vector<std::size_t> begins(tokens);
    std::size_t offset = rng() % 5;
    for (auto& begin : begins) {
      begin = offset;
      offset += rng() % 4;  // zero-width runs included
    }
    const std::size_t text_end = offset + rng() % 3;
    const std::size_t text_bytes = text_end + rng() % 5;
    SourceMap map;
    const auto book = map.add_book("random", outline_of(text_bytes, {}));
    const std::int64_t first_token = static_cast<std::int64_t>(rng() % 7);
    map.add_book_tokens(book, first_token, begins, text_end);
    for (int query = 0; query < 30; ++query) {
      const std::size_t a = rng() % (text_bytes + 2), b = rng() % (text_bytes + 2);
      const ByteRange bytes{std::min(a, b), std::max(a, b)};
      const auto expected = reference_tokens(begins, text_end, first_token, bytes);
      const auto actual = map.tokens_for_bytes(book, bytes);
      ASSERT_EQ(actual.has_value(), expected.has_value() && bytes.end > bytes.begin)
          << "seed " << lwm::test::test_seed() << " trial " << trial << " bytes [" << bytes.begin
          << ", " << bytes.end << ")";
      if (actual) {
        EXPECT_EQ(actual->begin, expected->begin) << "trial " << trial;
        EXPECT_EQ(actual->end, expected->end) << "trial " << trial;
      }
    }
    for (std::size_t i = 0; i < tokens; ++i) {
      EXPECT_EQ(map.locate(first_token + static_cast<std::int64_t>(i))->book.offset,
                std::min(begins[i], text_bytes - 1));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// With the tokenizer

const lwm::Tokenizer& tokenizer() {
  return lwm::test::test_tokenizer();
}

// The text a piece spells in its input: "▁" is the space it absorbed.
std::string surface_of(const std::string& piece) {
  std::string out;
  for (std::size_t i = 0; i < piece.size();) {
    if (piece.compare(i, 3, "\xE2\x96\x81") == 0) {
      out += ' ';
      i += 3;
    } else {
      out += piece[i++];
    }
  }
  return out;
}

bool is_byte_piece(const std::string& piece) {
  return piece.size() == 6 && piece.compare(0, 3, "<0x") == 0;
}

TEST(TokenizerOffsets, IdsMatchEncodeAndSpansSpellThePieces) {
  const std::string text =
      "The keeper wrote 1907 in the logbook.\nLe gardien écrivait; 灯台守は毎晩 🌊 waves  "
      "and\ttabs.";
  const lwm::EncodedText encoded = tokenizer().encode_with_offsets(text);
  EXPECT_EQ(encoded.ids, tokenizer().encode(text));
  ASSERT_EQ(encoded.begins.size(), encoded.ids.size());
  ASSERT_EQ(encoded.ends.size(), encoded.ids.size());
  std::size_t byte_pieces = 0;
  for (std::size_t i = 0; i < encoded.ids.size(); ++i) {
    ASSERT_LE(encoded.begins[i], encoded.ends[i]);
    ASSERT_LE(encoded.ends[i], text.size());
    if (i > 0) {
      EXPECT_LE(encoded.begins[i - 1], encoded.begins[i]);
    }
    const std::string piece = tokenizer().piece(encoded.ids[i]);
    if (is_byte_piece(piece)) {
      ++byte_pieces;
      continue;
    }
    std::string expected = surface_of(piece);
    if (i == 0 && expected.starts_with(' ')) expected.erase(0, 1);  // the dummy prefix
    EXPECT_EQ(text.substr(encoded.begins[i], encoded.ends[i] - encoded.begins[i]), expected)
        << "token " << i << " piece '" << piece << "'";
  }
  EXPECT_GT(byte_pieces, 0u) << "the emoji should go through byte fallback";
}

TEST(PromptFields, TokensAreRenderPromptsAndFieldsAreLocated) {
  const auto& chat_template = lwm::ChatTemplates::builtin().get("document-qa");
  const std::map<std::string, std::string> fields = {{"context", "The keeper climbed the stairs."},
                                                     {"question", "Who climbed?"}};
  const lwm::Prompt rendered = lwm::render_prompt(chat_template, tokenizer(), fields, nullptr);
  const std::vector<std::int32_t> tokens(rendered.tokens().begin(), rendered.tokens().end());
  EXPECT_EQ(tokens, lwm::render_prompt(chat_template, tokenizer(), fields));
  ASSERT_EQ(rendered.fields().size(), 2u);
  for (const auto& field : rendered.fields()) {
    const std::string& value = fields.at(field.field);
    EXPECT_EQ(field.value_bytes, value.size());
    ASSERT_FALSE(field.value_begins.empty());
    const auto count = static_cast<std::int64_t>(field.value_begins.size());
    const std::vector<std::int32_t> ids(tokens.begin() + field.first_token,
                                        tokens.begin() + field.first_token + count);
    // The field's tokens spell the value (give or take the space the first one absorbed).
    std::string decoded = tokenizer().decode(ids);
    if (decoded.starts_with(' ')) decoded.erase(0, 1);
    EXPECT_EQ(decoded, value);
  }
}

// A book with chapters (Markdown), made-up pages, several scripts and a character that needs byte
// fallback, asked about through the document-qa template.
struct PromptedBook {
  lwm::Book book;
  lwm::Prompt rendered;
  SourceMap map;
  std::int32_t source = 0;
  const lwm::FieldTokens* context = nullptr;
};

PromptedBook prompted_book(const lwm::test::TempDir& dir) {
  std::string text = "# The Harbour\n\n";
  for (int i = 0; i < 12; ++i) {
    text += "The keeper watched the harbour on night " + std::to_string(i) + ". ";
  }
  text += "\n\n## Gulls\n\nLe gardien écrivait: les mouettes 🌊 volaient.\n\n# The Storm\n\n";
  for (int i = 0; i < 12; ++i)
    text += "Ships passed far out at sea, wave " + std::to_string(i) + ". ";
  text += "\n\n# 灯台\n\n灯台守は毎晩階段を上り、レンズを磨いた。\n";
  std::ofstream(dir / "book.md", std::ios::binary) << text;

  PromptedBook prompted;
  prompted.book = lwm::load_book(dir / "book.md");
  // Pages every ~150 bytes, at line or sentence starts, to test page lookups.
  auto& pages = prompted.book.outline.pages;
  std::int32_t number = 1;
  for (std::size_t at = 0; at < text.size(); at = text.find(". ", at + 150)) {
    pages.push_back({number++, at == 0 ? 0 : at + 2});
    if (text.find(". ", at + 150) == std::string::npos) break;
  }
  const auto& chat_template = lwm::ChatTemplates::builtin().get("document-qa");
  prompted.rendered = lwm::render_prompt(
      chat_template, tokenizer(), {{"context", prompted.book.text}, {"question", "Who watched?"}},
      nullptr);
  prompted.source = prompted.map.add_book("book.md", prompted.book.outline);
  for (const auto& field : prompted.rendered.fields()) {
    if (field.field != "context") continue;
    prompted.context = &field;
    prompted.map.add_book_tokens(prompted.source, field.first_token, field.value_begins,
                                 field.value_bytes);
  }
  return prompted;
}

std::string decode_range(std::span<const std::int32_t> tokens, TokenRange range) {
  return tokenizer().decode(
      std::vector<std::int32_t>(tokens.begin() + range.begin, tokens.begin() + range.end));
}

TEST(BookSourceMap, ChaptersMapToTheirTokensAndBack) {
  lwm::test::TempDir dir;
  const PromptedBook prompted = prompted_book(dir);
  const auto& book = prompted.book;
  const auto& tokens = prompted.rendered.tokens();
  ASSERT_NE(prompted.context, nullptr);
  ASSERT_EQ(book.outline.chapters.size(), 4u);
  for (std::size_t c = 0; c < book.outline.chapters.size(); ++c) {
    const auto range = prompted.map.tokens_for_chapter(prompted.source, c);
    ASSERT_TRUE(range.has_value()) << c;
    const std::string decoded = decode_range(tokens, *range);
    const auto bytes = book.outline.chapter_bytes(c);
    // The chapter's tokens spell exactly its bytes (the first may have absorbed a space).
    std::string expected = book.text.substr(bytes.begin, bytes.end - bytes.begin);
    std::string actual = decoded;
    if (actual.starts_with(' ') && !expected.starts_with(' ')) actual.erase(0, 1);
    EXPECT_EQ(actual, expected) << "chapter " << c;
    EXPECT_NE(decoded.find(book.outline.chapters[c].title), std::string::npos);
    const std::int32_t innermost_first = prompted.map.locate(range->begin)->book.chapter;
    EXPECT_EQ(innermost_first, static_cast<std::int32_t>(c));
    const auto last = prompted.map.locate(range->end - 1);
    ASSERT_TRUE(last.has_value());
    // A part's last token may lie in its last sub-chapter.
    EXPECT_GE(last->book.chapter, static_cast<std::int32_t>(c));
    const auto after = prompted.map.locate(range->end);
    if (c + 1 < book.outline.chapters.size() &&
        book.outline.chapters[c + 1].level <= book.outline.chapters[c].level) {
      ASSERT_TRUE(after.has_value());
      EXPECT_EQ(after->book.chapter, static_cast<std::int32_t>(c + 1));
    }
  }
  // The template's tokens (BOS, instructions, the question) map to nothing.
  EXPECT_FALSE(prompted.map.locate(0).has_value());
  EXPECT_FALSE(prompted.map.locate(prompted.context->first_token - 1).has_value());
  EXPECT_FALSE(prompted.map.locate(static_cast<std::int64_t>(tokens.size()) - 1).has_value());
}

TEST(BookSourceMap, EveryBookTokenSpellsTheBytesItMapsTo) {
  lwm::test::TempDir dir;
  const PromptedBook prompted = prompted_book(dir);
  const auto& field = *prompted.context;
  const auto& text = prompted.book.text;
  const auto count = field.value_begins.size();
  for (std::size_t i = 1; i + 1 < count; ++i) {
    const std::int64_t position = field.first_token + static_cast<std::int64_t>(i);
    const auto location = prompted.map.locate(position);
    ASSERT_TRUE(location.has_value());
    EXPECT_EQ(location->book.offset, field.value_begins[i]);
    const std::string piece = tokenizer().piece(prompted.rendered.tokens()[position]);
    if (is_byte_piece(piece)) continue;
    const std::size_t next = field.value_begins[i + 1];
    EXPECT_EQ(text.substr(field.value_begins[i], next - field.value_begins[i]), surface_of(piece))
        << "token " << position << " piece '" << piece << "'";
  }
  // The wave emoji goes through byte fallback: its four byte tokens map to it together.
  const std::size_t wave = text.find("\xF0\x9F\x8C\x8A");
  const auto range = prompted.map.tokens_for_bytes(prompted.source, {wave + 1, wave + 2});
  ASSERT_TRUE(range.has_value());
  EXPECT_EQ(
      decode_range(prompted.rendered.tokens(), *range).find("\xF0\x9F\x8C\x8A") != std::string::npos,
      true);
}

TEST(BookSourceMap, PagesMapToTheirTokensAndBack) {
  lwm::test::TempDir dir;
  const PromptedBook prompted = prompted_book(dir);
  const auto& outline = prompted.book.outline;
  ASSERT_GE(outline.pages.size(), 4u);
  for (const auto& page : outline.pages) {
    const auto range = prompted.map.tokens_for_page(prompted.source, page.number);
    ASSERT_TRUE(range.has_value()) << page.number;
    const auto bytes = outline.page_bytes(page.number);
    // The first token is on the page, or straddles its start ("▁Ships" takes the space before).
    const auto first = prompted.map.locate(range->begin)->book;
    if (first.page != page.number) {
      EXPECT_EQ(first.page, page.number - 1);
      EXPECT_LT(first.offset, bytes.begin);
      EXPECT_EQ(prompted.map.locate(range->begin + 1)->book.page, page.number);
    }
    EXPECT_EQ(prompted.map.locate(range->end - 1)->book.page, page.number);
    // The middle of the page is certainly inside the page's tokens.
    const std::size_t middle_begin = bytes.begin + (bytes.end - bytes.begin) / 3;
    const std::string middle = prompted.book.text.substr(middle_begin, 12);
    if (lwm::test::is_valid_utf8(middle)) {
      EXPECT_NE(decode_range(prompted.rendered.tokens(), *range).find(middle), std::string::npos)
          << "page " << page.number << ": '" << middle << "'";
    }
  }
}

}  // namespace
