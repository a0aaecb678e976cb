#include "lwm/gui/citations.h"

#include <QRegularExpression>

namespace lwm::gui {
namespace {

// Roman numerals as books number chapters ("Chapter IV"); 0 when `text` is not one.
int roman_value(const QString& text) {
  static const QString digits = QStringLiteral("IVXLCDM");
  static const int values[] = {1, 5, 10, 50, 100, 500, 1000};
  int total = 0;
  for (qsizetype i = 0; i < text.size(); ++i) {
    const qsizetype d = digits.indexOf(text[i].toUpper());
    if (d < 0) return 0;
    const qsizetype next = i + 1 < text.size() ? digits.indexOf(text[i + 1].toUpper()) : -1;
    total += (next > d) ? -values[d] : values[d];
  }
  return total;
}

int citation_number(const QString& text) {
  bool ok = false;
  const int value = text.toInt(&ok);
  return ok ? value : roman_value(text);
}

// Links the citations in a stretch of plain Markdown text.
QString link_plain(const QString& text, SourceKind kind) {
  static const QRegularExpression time_pattern(
      QStringLiteral(R"((?<![\d:.])(?:\d{1,2}:)?\d{1,2}:\d{2}(?![\d:]))"));
  static const QRegularExpression place_pattern(
      QStringLiteral(R"(\b(chapter|ch\.|page|p\.)\s*(\d{1,5}|(?-i:[IVXLCDM]{1,8}))\b)"),
      QRegularExpression::CaseInsensitiveOption);
  QString out;
  qsizetype last = 0;
  if (kind == SourceKind::video) {
    for (auto it = time_pattern.globalMatch(text); it.hasNext();) {
      const auto match = it.next();
      const auto seconds = parse_timestamp(match.capturedView());
      if (!seconds) continue;
      out += text.mid(last, match.capturedStart() - last);
      out += QStringLiteral("[%1](seek:%2)").arg(match.captured(), QString::number(*seconds));
      last = match.capturedEnd();
    }
  } else if (kind == SourceKind::book) {
    for (auto it = place_pattern.globalMatch(text); it.hasNext();) {
      const auto match = it.next();
      const int number = citation_number(match.captured(2));
      if (number <= 0) continue;
      const QString word = match.captured(1).toLower();
      const QString scheme =
          word.startsWith('c') ? QStringLiteral("chapter") : QStringLiteral("page");
      out += text.mid(last, match.capturedStart() - last);
      out += QStringLiteral("[%1](%2:%3)").arg(match.captured(), scheme).arg(number);
      last = match.capturedEnd();
    }
  }
  out += text.mid(last);
  return out;
}

}  // namespace

std::optional<double> parse_timestamp(QStringView text) {
  const auto parts = text.split(u':');
  if (parts.size() < 2 || parts.size() > 3) return std::nullopt;
  int values[3] = {0, 0, 0};
  for (qsizetype i = 0; i < parts.size(); ++i) {
    const QStringView part = parts[i];
    if (part.isEmpty() || part.size() > 2) return std::nullopt;
    for (QChar c : part) {
      if (!c.isDigit()) return std::nullopt;
    }
    if (i > 0 && part.size() != 2) return std::nullopt;  // "1:2" is not a time
    values[i] = part.toInt();
  }
  const int seconds = values[parts.size() - 1];
  if (seconds >= 60) return std::nullopt;
  if (parts.size() == 3) {
    if (values[1] >= 60) return std::nullopt;
    return values[0] * 3600.0 + values[1] * 60.0 + seconds;
  }
  return values[0] * 60.0 + seconds;
}

QString link_citations(const QString& markdown, SourceKind kind) {
  // Code spans, existing links and HTML tags pass through untouched.
  static const QRegularExpression protected_pattern(
      QStringLiteral(R"(`[^`]*`|\[[^\]]*\]\([^)]*\)|<[^>]*>)"));
  QString out;
  qsizetype last = 0;
  for (auto it = protected_pattern.globalMatch(markdown); it.hasNext();) {
    const auto match = it.next();
    out += link_plain(markdown.mid(last, match.capturedStart() - last), kind);
    out += match.captured();
    last = match.capturedEnd();
  }
  out += link_plain(markdown.mid(last), kind);
  return out;
}

std::optional<int> chapter_title_number(const QString& title) {
  static const QRegularExpression pattern(
      QStringLiteral(R"(\b(?:chapter|ch\.|book|part)\s*(\d{1,5}|(?-i:[IVXLCDM]{1,8}))\b)"),
      QRegularExpression::CaseInsensitiveOption);
  const auto match = pattern.match(title);
  if (!match.hasMatch()) return std::nullopt;
  const int number = citation_number(match.captured(1));
  if (number <= 0) return std::nullopt;
  return number;
}

std::optional<Citation> parse_citation_url(const QUrl& url) {
  const QString scheme = url.scheme();
  const QString value = url.path();
  bool ok = false;
  if (scheme == QLatin1String("seek")) {
    const double seconds = value.toDouble(&ok);
    if (!ok || seconds < 0) return std::nullopt;
    return Citation{Citation::Kind::time, seconds, 0};
  }
  if (scheme == QLatin1String("chapter") || scheme == QLatin1String("page")) {
    const int number = value.toInt(&ok);
    if (!ok || number <= 0) return std::nullopt;
    return Citation{
        scheme == QLatin1String("chapter") ? Citation::Kind::chapter : Citation::Kind::page, 0.0,
        number};
  }
  return std::nullopt;
}

}  // namespace lwm::gui
