// Book readers (lwm/book.h): plain text and Markdown written here; EPUB and PDF written by Python's
// zipfile and fpdf2 (tests/python/book_fixtures.py) with the expected chapters and pages beside
// them; and every kind of broken book, each a clear Error naming the file.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "lwm/book.h"
#include "lwm/error.h"
#include "lwm/source_map.h"
#include "test_support.h"
#include "text_test_tokenizer.h"

namespace fs = std::filesystem;

namespace {

using lwm::Book;
using lwm::BookFormat;
using lwm::Error;
using lwm::ErrorKind;

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// The fixtures, written once per test process.
struct Fixtures {
  lwm::test::TempDir dir;
  nlohmann::json expected;
  std::string failure;
};

void make_fixtures(Fixtures& f) {
  {
    const fs::path python = lwm::test::test_python();
    const fs::path script = lwm::test::source_dir() / "tests/python/book_fixtures.py";
    if (!fs::exists(python)) {
      f.failure =
          "no test Python at " + python.string() + "; run `bash packaging/install-deps.sh --tests`";
      return;
    }
    const auto result = lwm::test::run_command("'" + python.string() + "' '" + script.string() +
                                               "' '" + f.dir.path().string() + "'");
    if (result.exit_code != 0) {
      f.failure =
          "book_fixtures.py failed (is fpdf2 installed from "
          "packaging/requirements-tests.txt?):\n" +
          result.output;
      return;
    }
    std::ifstream in(f.dir.path() / "expected.json");
    f.expected = nlohmann::json::parse(in);
  }
}

const Fixtures& fixtures() {
  static Fixtures made;
  static const bool ready = (make_fixtures(made), true);
  (void)ready;
  return made;
}

// EPUB and PDF tests skip in a build without their readers (core/CMakeLists.txt).
#define REQUIRE_FIXTURES()                                                          \
  do {                                                                              \
    if (!LWM_HAVE_BOOK_FORMATS) GTEST_SKIP() << "built without EPUB and PDF readers"; \
    if (!fixtures().failure.empty()) FAIL() << fixtures().failure;                  \
  } while (false)

fs::path fixture(const std::string& name) {
  return fixtures().dir.path() / name;
}

// Loads `path` expecting Error of `kind` whose message names the file and contains `what`.
void expect_book_error(const fs::path& path, ErrorKind kind, const std::string& what) {
  try {
    const Book book = lwm::load_book(path);
    ADD_FAILURE() << path << " loaded (" << book.text.size()
                  << " bytes of text), expected: " << what;
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_EQ(error.kind(), kind) << message;
    EXPECT_NE(message.find(path.string()), std::string::npos)
        << "message does not name the file: " << message;
    EXPECT_NE(message.find(what), std::string::npos) << message;
  }
}

std::string text_from(const Book& book, std::size_t offset, std::size_t length) {
  return book.text.substr(offset, length);
}

// Checks a book against its entry in expected.json.
void expect_matches(const Book& book, const nlohmann::json& expected) {
  EXPECT_EQ(book.title, expected["title"].get<std::string>());
  EXPECT_EQ(book.author, expected["author"].get<std::string>());
  const auto& chapters = expected["chapters"];
  ASSERT_EQ(book.outline.chapters.size(), chapters.size()) << book.text;
  for (std::size_t i = 0; i < chapters.size(); ++i) {
    const auto& chapter = book.outline.chapters[i];
    EXPECT_EQ(chapter.title, chapters[i]["title"].get<std::string>());
    const std::string start = chapters[i]["starts_with"];
    EXPECT_EQ(text_from(book, chapter.offset, start.size()), start)
        << "chapter " << i << " '" << chapter.title << "' in:\n"
        << book.text;
    if (chapters[i].contains("page")) {
      EXPECT_EQ(chapter.page, chapters[i]["page"].get<int>());
    }
    EXPECT_EQ(book.outline.locate(chapter.offset).chapter, static_cast<std::int32_t>(i));
  }
  for (const auto& piece : expected["contains"]) {
    EXPECT_NE(book.text.find(piece.get<std::string>()), std::string::npos)
        << piece << " missing from:\n"
        << book.text;
  }
  for (const auto& piece : expected["absent"]) {
    EXPECT_EQ(book.text.find(piece.get<std::string>()), std::string::npos)
        << piece << " should not be in:\n"
        << book.text;
  }
  if (expected.contains("pages")) {
    const auto& pages = expected["pages"];
    ASSERT_EQ(book.outline.pages.size(), pages.size());
    for (std::size_t p = 0; p < pages.size(); ++p) {
      const auto bytes = book.outline.page_bytes(static_cast<std::int32_t>(p + 1));
      const std::string page_text = book.text.substr(bytes.begin, bytes.end - bytes.begin);
      EXPECT_NE(page_text.find(pages[p].get<std::string>()), std::string::npos)
          << "page " << p + 1 << ": " << page_text;
      EXPECT_EQ(book.outline.locate(bytes.begin).page, static_cast<std::int32_t>(p + 1));
      EXPECT_EQ(book.outline.locate(bytes.end - 1).page, static_cast<std::int32_t>(p + 1));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Plain text and encodings

TEST(BookText, Utf8TextKeepsItsBytesAndNormalisesLineEnds) {
  lwm::test::TempDir dir;
  const auto path = dir / "story.txt";
  write_file(path,
             "\xEF\xBB\xBF"
             "Caf\xC3\xA9 \xE7\x81\xAF\r\nsecond line\rthird\n");
  const Book book = lwm::load_book(path);
  EXPECT_EQ(book.format, BookFormat::plain_text);
  EXPECT_EQ(book.text, "Caf\xC3\xA9 \xE7\x81\xAF\nsecond line\nthird\n");
  EXPECT_TRUE(book.warnings.empty());
  EXPECT_TRUE(book.outline.chapters.empty());
  EXPECT_TRUE(book.outline.pages.empty());
  EXPECT_EQ(book.outline.text_bytes, book.text.size());
  EXPECT_EQ(book.outline.locate(3).chapter, -1);
  EXPECT_EQ(book.outline.locate(3).page, 0);
}

TEST(BookText, Latin1BookIsReadAsWindows1252WithAWarning) {
  lwm::test::TempDir dir;
  const auto path = dir / "latin1.txt";
  // é ï in Latin-1, and Windows-1252's curly quotes and euro sign.
  write_file(path,
             "caf\xE9 na\xEFve \x93quoted\x94 \x80"
             "5\n");
  const Book book = lwm::load_book(path);
  EXPECT_EQ(book.text,
            "caf\xC3\xA9 na\xC3\xAFve \xE2\x80\x9Cquoted\xE2\x80\x9D \xE2\x82\xAC"
            "5\n");
  ASSERT_EQ(book.warnings.size(), 1u);
  const std::string& warning = book.warnings[0];
  EXPECT_NE(warning.find(path.string()), std::string::npos) << warning;
  EXPECT_NE(warning.find("0xE9 at offset 3"), std::string::npos) << warning;
  EXPECT_NE(warning.find("Windows-1252"), std::string::npos) << warning;
}

TEST(BookText, BinaryAndUndecodableBytesAreErrors) {
  lwm::test::TempDir dir;
  write_file(dir / "nul.txt", std::string("text\0more", 9));
  expect_book_error(dir / "nul.txt", ErrorKind::file_format, "byte 0x00 at offset 4");
  write_file(dir / "undefined.txt", "abc\xE9 then \x81 here");
  expect_book_error(dir / "undefined.txt", ErrorKind::file_format, "byte 0x81 at offset 10");
  write_file(dir / "empty.txt", "");
  expect_book_error(dir / "empty.txt", ErrorKind::file_format, "is empty");
  write_file(dir / "blank.md", " \n\t\r\n");
  expect_book_error(dir / "blank.md", ErrorKind::file_format, "has no text");
  write_file(dir / "fake.pdf", "just words");
  expect_book_error(dir / "fake.pdf", ErrorKind::file_format, "damaged or misnamed");
  write_file(dir / "fake.epub", "just words");
  expect_book_error(dir / "fake.epub", ErrorKind::file_format, "damaged or misnamed");
  expect_book_error(dir / "missing.txt", ErrorKind::io, "cannot open the book");
  expect_book_error(dir.path(), ErrorKind::io, "is a directory");
}

TEST(BookText, PlainTextChaptersSkipTheTableOfContents) {
  lwm::test::TempDir dir;
  const auto path = dir / "novel.txt";
  const std::string text =
      "THE SEA BOOK\n\nCONTENTS\n\nCHAPTER I. The Harbour\nCHAPTER II. The Storm\n"
      "CHAPTER III. Home\n\n"
      "BOOK I\n\n"
      "CHAPTER I. The Harbour\n\nIt began at the harbour.\n\n"
      "Chapter 2 was what the keeper called the storm.\n\n"
      "CHAPTER II.\nThe Storm\n\nWind.\n\nRain.\n\n"
      "BOOK II\n\n"
      "CHAPTER III. Home\n\nShe came home.\n\nIn spring.\n\n"
      "Chapter Twenty-One\n\nThe end.\n";
  write_file(path, text);
  const Book book = lwm::load_book(path);
  const std::vector<std::pair<std::string, int>> expected = {
      {"BOOK I", 1},  {"CHAPTER I. The Harbour", 2}, {"CHAPTER II. The Storm", 2},
      {"BOOK II", 1}, {"CHAPTER III. Home", 2},      {"Chapter Twenty-One", 2}};
  ASSERT_EQ(book.outline.chapters.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& chapter = book.outline.chapters[i];
    EXPECT_EQ(chapter.title, expected[i].first);
    EXPECT_EQ(chapter.level, expected[i].second) << chapter.title;
    // Each anchor sits at the start of its heading line, after the table of contents.
    EXPECT_GE(chapter.offset, text.find("BOOK I\n")) << chapter.title;
    EXPECT_TRUE(chapter.offset == 0 || text[chapter.offset - 1] == '\n');
  }
  EXPECT_EQ(book.text.compare(book.outline.chapters[2].offset, 12, "CHAPTER II.\n"), 0);
  // BOOK I holds its chapters; a chapter ends at the next chapter.
  const auto book_one = book.outline.chapter_bytes(0);
  EXPECT_EQ(book_one.end, book.outline.chapters[3].offset);
  EXPECT_EQ(book.outline.chapter_bytes(1).end, book.outline.chapters[2].offset);
  EXPECT_EQ(book.outline.chapter_bytes(5).end, book.text.size());
  EXPECT_EQ(book.outline.locate(text.find("Wind.")).chapter_title, "CHAPTER II. The Storm");
  EXPECT_THROW(book.outline.chapter_bytes(6), Error);
  EXPECT_THROW(book.outline.page_bytes(1), Error);
}

TEST(BookText, MarkdownChaptersFromTheTwoOutermostHeadingLevels) {
  lwm::test::TempDir dir;
  const auto path = dir / "guide.md";
  const std::string text =
      "---\ntitle: \"The Keeper's Guide\"\nauthor: Maren Holt\n# not a heading\n---\n\n"
      "Intro text.\n\n"
      "# Part One #\n\nSome text.\n\n"
      "## Lamps\n\n```\n# a comment in code\n```\n\n### Wicks\n\nTrim them.\n\n"
      "#NoSpace is not a heading\n\n"
      "## Lenses\n\nPolish them.\n\n"
      "# Part Two\n\nThe end.\n";
  write_file(path, text);
  const Book book = lwm::load_book(path);
  EXPECT_EQ(book.format, BookFormat::markdown);
  EXPECT_EQ(book.text, text);  // Markdown keeps its text as written
  EXPECT_EQ(book.title, "The Keeper's Guide");
  EXPECT_EQ(book.author, "Maren Holt");
  const std::vector<std::pair<std::string, int>> expected = {
      {"Part One", 1}, {"Lamps", 2}, {"Lenses", 2}, {"Part Two", 1}};
  ASSERT_EQ(book.outline.chapters.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(book.outline.chapters[i].title, expected[i].first);
    EXPECT_EQ(book.outline.chapters[i].level, expected[i].second);
  }
  EXPECT_EQ(book.outline.chapters[1].offset, text.find("## Lamps"));
  EXPECT_EQ(book.outline.locate(text.find("Trim them")).chapter_title, "Lamps");
  EXPECT_EQ(book.outline.locate(text.find("Intro")).chapter, -1);
  const auto part_one = book.outline.chapter_bytes(0);
  EXPECT_EQ(part_one.begin, text.find("# Part One"));
  EXPECT_EQ(part_one.end, text.find("# Part Two"));
}

std::string roman(int value) {
  static const std::vector<std::pair<int, const char*>> symbols = {
      {1000, "M"}, {900, "CM"}, {500, "D"}, {400, "CD"}, {100, "C"}, {90, "XC"}, {50, "L"},
      {40, "XL"},  {10, "X"},   {9, "IX"},  {5, "V"},    {4, "IV"},  {1, "I"}};
  std::string out;
  for (const auto& [amount, symbol] : symbols) {
    for (; value >= amount; value -= amount) out += symbol;
  }
  return out;
}

// A book the size of the King James Bible (66 books, 1,189 chapters, about 4 MB of text): every
// heading is found, in order; the time is printed. Debian's bible-kjv-text ships the Bible
// compressed in its own format, not as text, so the real one is not used.
TEST(BookText, BibleSizedBookFindsEveryBookAndChapter) {
  lwm::test::TempDir dir;
  const auto path = dir / "large.txt";
  constexpr int kBooks = 66, kChapters = 1189, kVerses = 30;
  std::string text = "THE LARGE BOOK\n\n";
  std::vector<std::string> expected;
  int chapter_number = 0;
  for (int b = 1; b <= kBooks; ++b) {
    expected.push_back("BOOK " + roman(b));
    text += expected.back() + "\n\n";
    const int chapters = kChapters / kBooks + (b <= kChapters % kBooks ? 1 : 0);
    for (int c = 1; c <= chapters; ++c, ++chapter_number) {
      expected.push_back("CHAPTER " + std::to_string(c));
      text += expected.back() + "\n\n";
      for (int v = 1; v <= kVerses; ++v) {
        text += std::to_string(c) + ":" + std::to_string(v) +
                " And the keeper went up into the tower, and trimmed the lamp, and the light "
                "shone over the waters.\n";
      }
      text += "\n";
    }
  }
  ASSERT_EQ(chapter_number, kChapters);
  write_file(path, text);
  const auto started = std::chrono::steady_clock::now();
  const Book book = lwm::load_book(path);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("load_book: %.1f MB, %zu anchors in %.3f s\n", text.size() / 1e6,
              book.outline.chapters.size(), seconds);
  ASSERT_EQ(book.outline.chapters.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    ASSERT_EQ(book.outline.chapters[i].title, expected[i]) << i;
    ASSERT_EQ(book.outline.chapters[i].level, expected[i].starts_with("BOOK") ? 1 : 2);
    ASSERT_EQ(
        text.compare(book.outline.chapters[i].offset, expected[i].size() + 1, expected[i] + "\n"),
        0);
  }
}

// ---------------------------------------------------------------------------------------------
// EPUB and PDF, from the fixtures

class BookFixtureTest : public ::testing::TestWithParam<std::string> {};

std::string fixture_test_name(const ::testing::TestParamInfo<std::string>& param) {
  std::string name = param.param;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

TEST_P(BookFixtureTest, MatchesWhatTheWriterPutIn) {
  REQUIRE_FIXTURES();
  const std::string name = GetParam();
  const Book book = lwm::load_book(fixture(name));
  EXPECT_EQ(book.format, name.ends_with(".pdf") ? BookFormat::pdf : BookFormat::epub);
  EXPECT_EQ(book.outline.text_bytes, book.text.size());
  expect_matches(book, fixtures().expected.at(name));
}

INSTANTIATE_TEST_SUITE_P(Books, BookFixtureTest,
                         ::testing::Values("epub3.epub", "epub2.epub", "headings.epub",
                                           "outline.pdf", "plain.pdf"),
                         fixture_test_name);

TEST(BookEpub, NestedTableOfContentsEntriesAreLevelTwo) {
  REQUIRE_FIXTURES();
  const Book book = lwm::load_book(fixture("epub3.epub"));
  ASSERT_EQ(book.outline.chapters.size(), 4u);
  EXPECT_EQ(book.outline.chapters[1].level, 1);
  EXPECT_EQ(book.outline.chapters[2].level, 2);
  // "The Storm" holds its section "The Wreck".
  EXPECT_EQ(book.outline.chapter_bytes(1).end, book.outline.chapters[3].offset);
}

TEST(BookPdf, OutlineEntryMissingFromTheTextIsAWarning) {
  REQUIRE_FIXTURES();
  const Book book = lwm::load_book(fixture("outline.pdf"));
  ASSERT_EQ(book.warnings.size(), 1u);
  EXPECT_NE(book.warnings[0].find("Not In The Text"), std::string::npos) << book.warnings[0];
  EXPECT_NE(book.warnings[0].find(fixture("outline.pdf").string()), std::string::npos);
}

TEST(BookPdf, ProgressCountsPagesAndCancels) {
  REQUIRE_FIXTURES();
  std::vector<std::int64_t> seen;
  lwm::load_book(fixture("outline.pdf"), [&](const lwm::Progress& progress) {
    EXPECT_EQ(progress.total, 5);
    seen.push_back(progress.done);
    return true;
  });
  EXPECT_EQ(seen, (std::vector<std::int64_t>{1, 2, 3, 4, 5}));
  try {
    lwm::load_book(fixture("outline.pdf"),
                   [](const lwm::Progress& progress) { return progress.done < 2; });
    ADD_FAILURE() << "cancelling did not stop the reader";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::cancelled) << error.what();
  }
}

// A real PDF's pages and chapters through the test tokenizer and a source map: each page's tokens
// spell that page's sentence and locate back to the page; each chapter's tokens start with its
// title.
TEST(BookPdf, PagesAndChaptersRoundTripThroughPromptTokens) {
  REQUIRE_FIXTURES();
  const Book book = lwm::load_book(fixture("outline.pdf"));
  const auto& tokenizer = lwm::test::test_tokenizer();
  const auto encoded = tokenizer.encode_with_offsets(book.text);
  lwm::SourceMap map;
  const auto source = map.add_book(book.path.string(), book.outline);
  constexpr std::int64_t kPreamble = 5;  // as if a template put five tokens first
  map.add_book_tokens(source, kPreamble, encoded.begins, book.text.size());
  const auto decode = [&](lwm::TokenRange range) {
    return tokenizer.decode(std::vector<std::int32_t>(encoded.ids.begin() + range.begin - kPreamble,
                                                      encoded.ids.begin() + range.end - kPreamble));
  };
  const auto& pages = fixtures().expected.at("outline.pdf")["pages"];
  for (std::int32_t page = 1; page <= static_cast<std::int32_t>(pages.size()); ++page) {
    const auto range = map.tokens_for_page(source, page);
    ASSERT_TRUE(range.has_value()) << page;
    EXPECT_NE(decode(*range).find(pages[page - 1].get<std::string>()), std::string::npos)
        << "page " << page << ": " << decode(*range);
    EXPECT_EQ(map.locate(range->end - 1)->book.page, page);
  }
  for (std::size_t c = 0; c < book.outline.chapters.size(); ++c) {
    const auto range = map.tokens_for_chapter(source, c);
    ASSERT_TRUE(range.has_value()) << c;
    std::string decoded = decode(*range);
    if (decoded.starts_with(' ')) decoded.erase(0, 1);
    EXPECT_TRUE(decoded.starts_with(book.outline.chapters[c].title)) << decoded;
    const auto location = map.locate(range->begin + 1)->book;
    EXPECT_EQ(location.chapter, static_cast<std::int32_t>(c));
    EXPECT_EQ(location.page, book.outline.chapters[c].page);
  }
  EXPECT_FALSE(map.locate(kPreamble - 1).has_value());
}

TEST(BookBadInput, BrokenEpubsAreClearErrors) {
  REQUIRE_FIXTURES();
  expect_book_error(fixture("truncated.epub"), ErrorKind::file_format,
                    "is not a readable zip archive");
  expect_book_error(fixture("no-container.epub"), ErrorKind::file_format,
                    "without META-INF/container.xml");
  expect_book_error(fixture("plain.zip.epub"), ErrorKind::file_format,
                    "without META-INF/container.xml");
  expect_book_error(fixture("no-package.epub"), ErrorKind::file_format,
                    "package document 'OEBPS/content.opf' is missing");
  expect_book_error(fixture("missing-spine-item.epub"), ErrorKind::file_format,
                    "'OEBPS/text/three.xhtml' is missing");
  expect_book_error(fixture("malformed.epub"), ErrorKind::file_format,
                    "'OEBPS/text/one.xhtml' that is not well-formed XML (line");
  expect_book_error(fixture("malformed-package.epub"), ErrorKind::file_format,
                    "'OEBPS/content.opf' that is not well-formed XML");
  expect_book_error(fixture("empty-spine.epub"), ErrorKind::file_format,
                    "spine lists no documents");
}

TEST(BookBadInput, BrokenPdfsAreClearErrors) {
  REQUIRE_FIXTURES();
  expect_book_error(fixture("encrypted.pdf"), ErrorKind::unsupported, "password-protected");
  expect_book_error(fixture("no-text.pdf"), ErrorKind::unsupported, "has no text layer");
  expect_book_error(fixture("corrupt.pdf"), ErrorKind::file_format, "is not a readable PDF");
}

TEST(BookBadInput, TruncatedPdfIsAnErrorOrWhatPopplerCouldRecover) {
  REQUIRE_FIXTURES();
  // Poppler reconstructs what it can of a truncated file; either outcome is fine, provided it is
  // a book with anchors inside its text or an Error that names the file.
  const fs::path path = fixture("truncated.pdf");
  try {
    const Book book = lwm::load_book(path);
    for (const auto& page : book.outline.pages) EXPECT_LE(page.offset, book.text.size());
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find(path.string()), std::string::npos) << error.what();
  }
}

}  // namespace
