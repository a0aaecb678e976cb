#include "lwm/gui/passage.h"

#include <QHash>
#include <QRegularExpression>
#include <QSet>
#include <algorithm>
#include <cmath>
#include <vector>

namespace lwm::gui {
namespace {

bool closing_mark(QChar c) {
  return c == '"' || c == '\'' || c == ')' || c == ']' || c == QChar(0x201D) ||
         c == QChar(0x2019) || c == QChar(0xBB);
}

// Whether the '.', '!' or '?' at `i` ends a sentence: whitespace (or the end) follows, after any
// closing quotes or brackets, and a '.' does not end a short abbreviation ("p. 12", "ch. 3",
// "Mr. Lowe"): the word before it has three or more letters, or is a number.
bool ends_sentence(const QString& text, qsizetype i, qsizetype end) {
  const QChar c = text[i];
  if (c != '.' && c != '!' && c != '?') return false;
  qsizetype next = i + 1;
  while (next < end && closing_mark(text[next])) ++next;
  if (next < end && !text[next].isSpace()) return false;
  if (c != '.') return true;
  qsizetype word = i;
  while (word > 0 && text[word - 1].isLetterOrNumber()) --word;
  if (i - word >= 3) return true;
  bool digits = i > word;
  for (qsizetype k = word; k < i; ++k) digits = digits && text[k].isDigit();
  return digits || (i > 0 && closing_mark(text[i - 1]));
}

// A blank line (only spaces between two line breaks) starts at the '\n' at `i`; returns the
// position after it, or -1.
qsizetype blank_line_end(const QString& text, qsizetype i, qsizetype end) {
  if (text[i] != '\n') return -1;
  for (qsizetype j = i + 1; j < end; ++j) {
    if (text[j] == '\n') return j + 1;
    if (!text[j].isSpace()) return -1;
  }
  return -1;
}

struct Segment {
  qsizetype begin = 0;
  qsizetype end = 0;
  int paragraph = 0;
};

void trim(const QString& text, qsizetype& begin, qsizetype& end) {
  while (begin < end && text[begin].isSpace()) ++begin;
  while (end > begin && text[end - 1].isSpace()) --end;
}

// The sentences of [begin, end): they end at ends_sentence() and at blank lines, which also end
// paragraphs. A single line break does not end one (plain-text books wrap their lines).
std::vector<Segment> sentences(const QString& text, qsizetype begin, qsizetype end) {
  std::vector<Segment> out;
  int paragraph = 0;
  qsizetype start = begin;
  const auto flush = [&](qsizetype stop) {
    qsizetype b = start;
    qsizetype e = stop;
    trim(text, b, e);
    if (b < e) out.push_back({b, e, paragraph});
  };
  for (qsizetype i = begin; i < end; ++i) {
    if (const qsizetype after = blank_line_end(text, i, end); after >= 0) {
      flush(i);
      if (!out.empty() && out.back().paragraph == paragraph) ++paragraph;
      start = after;
      i = after - 1;
    } else if (ends_sentence(text, i, end)) {
      flush(i + 1);
      start = i + 1;
    }
  }
  flush(end);
  return out;
}

// Words that say what a sentence is about: numbers, and words of three or more letters that are
// not among the commonest English words or the citation's own words.
QSet<QString> telling_words(QStringView text) {
  static const QSet<QString> common = {
      "the",     "and",    "for",      "with",  "that",  "this",  "was",     "were",  "are",
      "what",    "which",  "who",      "whom",  "when",  "where", "how",     "why",   "does",
      "did",     "has",    "have",     "had",   "from",  "into",  "about",   "after", "before",
      "then",    "than",   "there",    "their", "they",  "them",  "his",     "her",   "hers",
      "its",     "not",    "but",      "you",   "your",  "our",   "all",     "any",   "can",
      "could",   "would",  "should",   "will",  "shall", "been",  "being",   "also",  "one",
      "out",     "over",   "some",     "such",  "very",  "upon",  "chapter", "page",  "pages",
      "happens", "happen", "happened", "tell",  "says",  "said"};
  static const QRegularExpression word(QStringLiteral(R"(\w+)"),
                                       QRegularExpression::UseUnicodePropertiesOption);
  QSet<QString> out;
  for (auto it = word.globalMatch(text); it.hasNext();) {
    const QString w = it.next().captured().toLower();
    bool number = true;
    for (const QChar c : w) number = number && c.isDigit();
    if (number || (w.size() >= 3 && !common.contains(w))) out.insert(w);
  }
  return out;
}

}  // namespace

QString citing_sentence(const QString& text, qsizetype at) {
  if (at < 0 || at >= text.size()) return {};
  qsizetype begin = at;
  while (begin > 0 && text[begin - 1] != '\n' && !ends_sentence(text, begin - 1, text.size())) {
    --begin;
  }
  qsizetype end = at;
  while (end < text.size() && text[end] != '\n' && !ends_sentence(text, end, text.size())) ++end;
  if (end < text.size() && text[end] != '\n') ++end;  // keep the full stop
  trim(text, begin, end);
  return text.mid(begin, end - begin);
}

QPair<qsizetype, qsizetype> cited_passage(const QString& text, qsizetype begin, qsizetype end,
                                          const QString& context, bool skip_heading) {
  begin = std::clamp<qsizetype>(begin, 0, text.size());
  end = std::clamp<qsizetype>(end, begin, text.size());
  qsizetype from = begin;
  if (skip_heading) {
    const qsizetype line_end = text.indexOf('\n', begin);
    if (line_end >= 0 && line_end < end &&
        !QStringView(text).sliced(line_end, end - line_end).trimmed().isEmpty()) {
      from = line_end + 1;
    }
  }
  const std::vector<Segment> candidates = sentences(text, from, end);
  if (candidates.empty()) return {begin, begin};

  // Score = sum over the context's telling words found in a sentence of ln(1 + N / df): a word
  // in every sentence of the chapter (its number, its season) says little, a rare one a lot.
  const QSet<QString> wanted = telling_words(context);
  std::vector<QSet<QString>> found(candidates.size());
  QHash<QString, int> frequency;
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    const auto& s = candidates[i];
    for (const QString& w : telling_words(QStringView(text).sliced(s.begin, s.end - s.begin))) {
      if (!wanted.contains(w)) continue;
      found[i].insert(w);
      ++frequency[w];
    }
  }
  const double n = static_cast<double>(candidates.size());
  double best_score = 0.0;
  std::size_t best = candidates.size();
  for (std::size_t i = 0; i < candidates.size(); ++i) {
    double score = 0.0;
    for (const QString& w : found[i]) score += std::log(1.0 + n / frequency.value(w));
    if (score > best_score + 1e-12) {
      best_score = score;
      best = i;
    }
  }
  if (best < candidates.size()) return {candidates[best].begin, candidates[best].end};
  // Nothing shared: the chapter's (or page's) first paragraph.
  qsizetype last = candidates.front().end;
  for (const Segment& s : candidates) {
    if (s.paragraph != candidates.front().paragraph) break;
    last = s.end;
  }
  return {candidates.front().begin, last};
}

}  // namespace lwm::gui
