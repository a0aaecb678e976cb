// Plain-text and Markdown books: encoding (UTF-8, else Windows-1252 with a warning) and chapter
// anchors from headings.
#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "media/book_readers.h"

namespace lwm::book_detail {
namespace {

// ---------------------------------------------------------------------------------------------
// Encoding

std::string hex_byte(unsigned char byte) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%02X", byte);
  return text;
}

// Control characters that text files contain; any other C0 control (NUL above all) or DEL means
// the bytes are not text, whatever encoding we try.
bool is_text_control(unsigned char byte) {
  return byte == '\t' || byte == '\n' || byte == '\v' || byte == '\f' || byte == '\r';
}

void reject_binary(std::string_view bytes, const std::filesystem::path& path) {
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const auto byte = static_cast<unsigned char>(bytes[i]);
    if ((byte < 0x20 && !is_text_control(byte)) || byte == 0x7F) {
      fail(ErrorKind::file_format, path,
           "is not a text file: byte " + hex_byte(byte) + " at offset " + std::to_string(i) +
               " is a control character that text does not contain (binary data?)");
    }
  }
}

// Windows-1252's 0x80..0x9F; 0 where the code page leaves a byte undefined. The other bytes map
// to the same code points as Latin-1, so Latin-1 files read correctly too.
constexpr std::array<char16_t, 32> kWindows1252High = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178};

std::string decode_text(std::string bytes, const std::filesystem::path& path,
                        std::vector<std::string>& warnings) {
  reject_binary(bytes, path);
  const std::size_t bad = first_invalid_utf8(bytes);
  if (bad == std::string::npos) return bytes;

  const std::string not_utf8 = "is not UTF-8 (invalid byte " +
                               hex_byte(static_cast<unsigned char>(bytes[bad])) + " at offset " +
                               std::to_string(bad) + ")";
  std::string text;
  text.reserve(bytes.size() + bytes.size() / 8);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const auto byte = static_cast<unsigned char>(bytes[i]);
    char32_t code = byte;
    if (byte >= 0x80 && byte < 0xA0) {
      code = kWindows1252High[byte - 0x80];
      if (code == 0) {
        fail(ErrorKind::file_format, path,
             not_utf8 + " and not Windows-1252 either (byte " + hex_byte(byte) + " at offset " +
                 std::to_string(i) + " is undefined there); convert it to UTF-8 first");
      }
    }
    append_utf8(text, code);
  }
  warnings.push_back(book_where(path) + " " + not_utf8 +
                     "; it was read as Windows-1252 (Latin-1), check its accents");
  return text;
}

// ---------------------------------------------------------------------------------------------
// Lines

struct Line {
  std::size_t offset = 0;
  std::string_view text;  // without the newline
};

std::vector<Line> split_lines(const std::string& text) {
  std::vector<Line> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back({start, std::string_view(text).substr(start, end - start)});
    start = end + 1;
  }
  return lines;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool is_blank(std::string_view s) {
  return trim(s).empty();
}

// ---------------------------------------------------------------------------------------------
// Markdown: ATX headings ("# Title", "## Section"), outside fenced code blocks.

struct Heading {
  std::size_t offset = 0;
  int depth = 0;  // number of '#', or 1 for BOOK/PART and 2 for CHAPTER in plain text
  std::string title;
};

std::optional<Heading> parse_atx_heading(const Line& line) {
  std::string_view s = line.text;
  std::size_t indent = 0;
  while (indent < s.size() && indent < 4 && s[indent] == ' ') ++indent;
  if (indent > 3) return std::nullopt;  // four spaces make an indented code block
  s.remove_prefix(indent);
  std::size_t hashes = 0;
  while (hashes < s.size() && s[hashes] == '#') ++hashes;
  if (hashes == 0 || hashes > 6) return std::nullopt;
  if (hashes < s.size() && s[hashes] != ' ' && s[hashes] != '\t') return std::nullopt;
  std::string_view title = trim(s.substr(hashes));
  // An optional closing run of '#' after a space is not part of the title.
  std::size_t closing = title.size();
  while (closing > 0 && title[closing - 1] == '#') --closing;
  if (closing < title.size() && (closing == 0 || title[closing - 1] == ' ')) {
    title = trim(title.substr(0, closing));
  }
  if (title.empty()) return std::nullopt;
  return Heading{line.offset, static_cast<int>(hashes), std::string(title)};
}

bool is_fence(std::string_view line, std::string_view& fence) {
  std::string_view s = line;
  std::size_t indent = 0;
  while (indent < s.size() && indent < 4 && s[indent] == ' ') ++indent;
  if (indent > 3) return false;
  s.remove_prefix(indent);
  const char c = s.empty() ? '\0' : s[0];
  if (c != '`' && c != '~') return false;
  std::size_t run = 0;
  while (run < s.size() && s[run] == c) ++run;
  if (run < 3) return false;
  fence = s.substr(0, run);
  return true;
}

// "title: ..." and "author: ..." from a YAML front matter block ("---" lines) at the very top;
// returns the index of the first line after it (0 without one).
std::size_t read_front_matter(const std::vector<Line>& lines, Book& book) {
  if (lines.empty() || trim(lines[0].text) != "---") return 0;
  std::size_t close = 1;
  while (close < lines.size() && trim(lines[close].text) != "---") ++close;
  if (close == lines.size()) return 0;  // a thematic break, not front matter
  for (std::size_t i = 1; i < close; ++i) {
    const std::string_view s = lines[i].text;
    const std::size_t colon = s.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = trim(s.substr(0, colon));
    std::string_view value = trim(s.substr(colon + 1));
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    if (key == "title") book.title = value;
    if (key == "author") book.author = value;
  }
  return close + 1;
}

std::vector<Heading> markdown_headings(const std::vector<Line>& lines, std::size_t first_line) {
  std::vector<Heading> headings;
  std::string open_fence;  // the fence of the code block we are in, empty outside
  for (std::size_t i = first_line; i < lines.size(); ++i) {
    const Line& line = lines[i];
    std::string_view fence;
    if (is_fence(line.text, fence)) {
      if (open_fence.empty()) {
        open_fence = fence;
      } else if (fence[0] == open_fence[0] && fence.size() >= open_fence.size()) {
        open_fence.clear();
      }
      continue;
    }
    if (!open_fence.empty()) continue;
    if (auto heading = parse_atx_heading(line)) headings.push_back(std::move(*heading));
  }
  return headings;
}

// Chapters are the two outermost heading depths the document uses ("#" and "##" usually): deeper
// sections would split the book into pieces too small to navigate by.
void add_markdown_chapters(const std::vector<Heading>& headings, Book& book) {
  std::vector<int> depths;
  for (const auto& heading : headings) depths.push_back(heading.depth);
  std::sort(depths.begin(), depths.end());
  depths.erase(std::unique(depths.begin(), depths.end()), depths.end());
  if (depths.size() > 2) depths.resize(2);
  for (const auto& heading : headings) {
    const auto level = std::find(depths.begin(), depths.end(), heading.depth);
    if (level == depths.end()) continue;
    book.outline.chapters.push_back(
        {heading.title, heading.offset, static_cast<std::int32_t>(level - depths.begin()) + 1, 0});
  }
  // A lone outermost heading at the top names the book.
  if (book.title.empty() && !headings.empty()) {
    const int outermost = depths.front();
    const auto count = std::count_if(headings.begin(), headings.end(),
                                     [&](const Heading& h) { return h.depth == outermost; });
    if (count == 1 && headings.front().depth == outermost) book.title = headings.front().title;
  }
}

// ---------------------------------------------------------------------------------------------
// Plain text: "CHAPTER I", "Chapter 12: The Storm", "BOOK II", "Part Three" lines.

bool is_upper_word(std::string_view word) {
  return std::all_of(word.begin(), word.end(),
                     [](char c) { return std::isupper(static_cast<unsigned char>(c)); });
}

bool is_capitalised_word(std::string_view word) {
  return !word.empty() && std::isupper(static_cast<unsigned char>(word[0])) &&
         std::all_of(word.begin() + 1, word.end(),
                     [](char c) { return std::islower(static_cast<unsigned char>(c)); });
}

int roman_value(char c) {
  switch (std::toupper(static_cast<unsigned char>(c))) {
    case 'I':
      return 1;
    case 'V':
      return 5;
    case 'X':
      return 10;
    case 'L':
      return 50;
    case 'C':
      return 100;
    case 'D':
      return 500;
    case 'M':
      return 1000;
    default:
      return 0;
  }
}

// True for a canonical Roman numeral written in one case ("XIV", "xiv"; not "IIII" or "Xiv").
bool is_roman_numeral(std::string_view word) {
  if (word.empty() || word.size() > 12) return false;
  const bool upper = std::isupper(static_cast<unsigned char>(word[0]));
  int value = 0;
  for (std::size_t i = 0; i < word.size(); ++i) {
    const int v = roman_value(word[i]);
    if (v == 0 || (std::isupper(static_cast<unsigned char>(word[i])) != 0) != upper) return false;
    const int next = i + 1 < word.size() ? roman_value(word[i + 1]) : 0;
    value += v < next ? -v : v;
  }
  if (value <= 0 || value >= 4000) return false;
  static constexpr std::array<std::pair<int, const char*>, 13> kSymbols = {{{1000, "M"},
                                                                            {900, "CM"},
                                                                            {500, "D"},
                                                                            {400, "CD"},
                                                                            {100, "C"},
                                                                            {90, "XC"},
                                                                            {50, "L"},
                                                                            {40, "XL"},
                                                                            {10, "X"},
                                                                            {9, "IX"},
                                                                            {5, "V"},
                                                                            {4, "IV"},
                                                                            {1, "I"}}};
  std::string canonical;
  for (const auto& [amount, symbol] : kSymbols) {
    while (value >= amount) {
      canonical += symbol;
      value -= amount;
    }
  }
  if (canonical.size() != word.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(word[i])) != canonical[i]) return false;
  }
  return true;
}

bool is_number_word(std::string_view word) {
  static const std::vector<std::string_view> kWords = {
      "one",     "two",     "three",     "four",     "five",     "six",      "seven",
      "eight",   "nine",    "ten",       "eleven",   "twelve",   "thirteen", "fourteen",
      "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty",   "thirty",
      "forty",   "fifty",   "sixty",     "seventy",  "eighty",   "ninety"};
  std::size_t start = 0;
  while (start <= word.size()) {
    std::size_t end = word.find('-', start);
    if (end == std::string_view::npos) end = word.size();
    std::string part(word.substr(start, end - start));
    for (char& c : part) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (std::find(kWords.begin(), kWords.end(), part) == kWords.end()) return false;
    start = end + 1;
  }
  return true;
}

bool is_chapter_number(std::string_view word) {
  if (!word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c));
      })) {
    return word.size() <= 4;
  }
  return is_roman_numeral(word) || is_number_word(word);
}

struct ChapterLine {
  std::size_t line = 0;
  std::string keyword;  // "CHAPTER", "BOOK" or "PART", whatever the case in the text
  bool bare = false;    // nothing but the keyword and number (and punctuation)
};

// Longest line we take for a heading: longer lines are prose that happens to start with "Book 2".
constexpr std::size_t kLongestHeading = 100;

std::optional<ChapterLine> parse_chapter_line(std::string_view raw, std::size_t index) {
  const std::string_view s = trim(raw);
  if (s.size() > kLongestHeading) return std::nullopt;
  std::size_t end = 0;
  while (end < s.size() && std::isalpha(static_cast<unsigned char>(s[end]))) ++end;
  const std::string_view keyword = s.substr(0, end);
  std::string upper(keyword);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (upper != "CHAPTER" && upper != "BOOK" && upper != "PART") return std::nullopt;
  if (!is_upper_word(keyword) && !is_capitalised_word(keyword)) return std::nullopt;
  if (end >= s.size() || (s[end] != ' ' && s[end] != '\t')) return std::nullopt;
  std::string_view rest = trim(s.substr(end));
  std::size_t number_end = 0;
  while (number_end < rest.size() &&
         (std::isalnum(static_cast<unsigned char>(rest[number_end])) || rest[number_end] == '-')) {
    ++number_end;
  }
  if (!is_chapter_number(rest.substr(0, number_end))) return std::nullopt;
  rest = rest.substr(number_end);
  // What follows the number: nothing, punctuation, or a title that starts like one ("Chapter 1
  // was long" is a sentence, "Chapter 1 The Storm" a heading).
  const std::string_view after = trim(rest);
  if (!rest.empty()) {
    const auto first = static_cast<unsigned char>(rest[0]);
    const bool punctuation =
        std::string_view(".:;,)]-").find(static_cast<char>(first)) != std::string_view::npos ||
        first >= 0x80;  // em dash and other non-ASCII separators
    const bool titled = (first == ' ' || first == '\t') && !after.empty() &&
                        (std::isupper(static_cast<unsigned char>(after[0])) ||
                         std::isdigit(static_cast<unsigned char>(after[0])) ||
                         std::string_view("\"'(-[").find(after[0]) != std::string_view::npos ||
                         static_cast<unsigned char>(after[0]) >= 0x80);
    if (!punctuation && !titled) return std::nullopt;
  }
  const bool bare = std::all_of(after.begin(), after.end(), [](char c) {
    return std::ispunct(static_cast<unsigned char>(c)) ||
           std::isspace(static_cast<unsigned char>(c));
  });
  return ChapterLine{index, upper, bare};
}

// A table of contents lists the same kind of heading line after line (perhaps each with a
// subtitle line); its entries are not chapters. So a heading line is dropped when the next one of
// its keyword follows with fewer than this many non-blank lines in between.
constexpr int kTableOfContentsWindow = 2;

void add_plain_text_chapters(const std::vector<Line>& lines, Book& book) {
  std::vector<ChapterLine> candidates;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (auto candidate = parse_chapter_line(lines[i].text, i)) candidates.push_back(*candidate);
  }
  std::vector<std::size_t> non_blank_before(lines.size() + 1, 0);  // prefix counts
  for (std::size_t i = 0; i < lines.size(); ++i) {
    non_blank_before[i + 1] = non_blank_before[i] + (is_blank(lines[i].text) ? 0 : 1);
  }
  std::vector<Heading> headings;
  bool has_outer = false;
  for (std::size_t c = 0; c < candidates.size(); ++c) {
    const auto& candidate = candidates[c];
    const std::size_t line = candidate.line;
    if (line > 0 && !is_blank(lines[line - 1].text)) continue;  // headings stand apart
    bool in_contents = false;
    for (std::size_t d = c + 1; d < candidates.size(); ++d) {
      if (candidates[d].keyword != candidate.keyword) continue;
      in_contents = non_blank_before[candidates[d].line] - non_blank_before[line + 1] <
                    static_cast<std::size_t>(kTableOfContentsWindow);
      break;
    }
    if (in_contents) continue;
    std::string title(trim(lines[line].text));
    // "CHAPTER I." over "Down the Rabbit-Hole" and a blank line: the second line is the title.
    if (candidate.bare && line + 1 < lines.size()) {
      const std::string_view next = trim(lines[line + 1].text);
      const bool next_ends_paragraph = line + 2 >= lines.size() || is_blank(lines[line + 2].text);
      if (!next.empty() && next.size() <= 80 && next_ends_paragraph &&
          !parse_chapter_line(next, line + 1)) {
        title += std::ispunct(static_cast<unsigned char>(title.back())) ? " " : ": ";
        title += next;
      }
    }
    const bool outer = candidate.keyword != "CHAPTER";
    has_outer = has_outer || outer;
    headings.push_back({lines[line].offset, outer ? 1 : 2, std::move(title)});
  }
  for (auto& heading : headings) {
    book.outline.chapters.push_back(
        {std::move(heading.title), heading.offset, has_outer ? heading.depth : 1, 0});
  }
}

}  // namespace

Book read_text_book(const std::filesystem::path& path, std::string bytes, bool markdown) {
  Book book;
  book.text = normalise_newlines(decode_text(std::move(bytes), path, book.warnings));
  require_some_text(book.text, path);
  const std::vector<Line> lines = split_lines(book.text);
  if (markdown) {
    const std::size_t body = read_front_matter(lines, book);
    add_markdown_chapters(markdown_headings(lines, body), book);
  } else {
    add_plain_text_chapters(lines, book);
  }
  return book;
}

}  // namespace lwm::book_detail
