// Citations in answers become links (issue 7, "Ask" and "Look"): video times such as 0:42 or
// 1:02:03 link to "seek:<seconds>", book locations such as "chapter 3" or "page 12" link to
// "chapter:<n>" and "page:<n>". The chat view renders the linked Markdown; a click hands the URL
// back to parse_citation_url(), and the window seeks the player or scrolls the reader.
#pragma once

#include <QString>
#include <QStringView>
#include <QUrl>
#include <optional>

#include "lwm/gui/chat_record.h"

namespace lwm::gui {

// "0:42" → 42, "12:05" → 725, "1:02:03" → 3723; nullopt unless it is m:ss, mm:ss or h:mm:ss
// with seconds (and, after hours, minutes) below 60.
std::optional<double> parse_timestamp(QStringView text);

// Markdown with every citation of a `kind` source turned into a link; text inside code spans
// and existing links is left alone. Timestamps are linked for videos only, chapters and pages
// for books only (a "3:45" in a book is more likely a verse than a time).
QString link_citations(const QString& markdown, SourceKind kind);

struct Citation {
  enum class Kind { time, chapter, page };
  Kind kind = Kind::time;
  double seconds = 0.0;  // time
  int number = 0;        // chapter (1-based) or page
};

// The number a chapter title gives itself ("Chapter 3: Summer" → 3, "CHAPTER IV" → 4), so
// "chapter 3" in an answer finds the chapter called so even after a title page or a prologue;
// nullopt when the title has no such number.
std::optional<int> chapter_title_number(const QString& title);

// The citation a link made by link_citations() points to; nullopt for any other URL.
std::optional<Citation> parse_citation_url(const QUrl& url);

}  // namespace lwm::gui
