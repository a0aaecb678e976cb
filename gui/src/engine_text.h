// Internal helpers of the engine worker: the sentences users see for failures, and book data
// turned into what the reader pane shows.
#pragma once

#include <QString>

#include "lwm/book.h"
#include "lwm/gui/engine_types.h"
#include "lwm/gui/text_format.h"

namespace lwm::gui {

// The exception in flight as one sentence for a dialog or banner: what happened and what to do.
// Call only inside a catch block.
QString describe_current_exception();

// Whether a file is opened as a video (by its extension; everything else is read as a book).
bool looks_like_video(const QString& path);

// Fills the book fields of `source` (title, summary, text, chapter and page anchors in QString
// positions) from `book`.
void fill_book_source(const Book& book, SourceInfo& source);

}  // namespace lwm::gui
