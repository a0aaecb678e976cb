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

// The plan as one paragraph for the plan panel: what it takes and how long ("Fits on cpu: ..."),
// or why it will not fit and what would (the planner's sentences), and, when this build cannot
// run it (`cannot_run`, a sentence), that ingest will refuse and why.
QString plan_verdict(const PlanInfo& plan, const QString& cannot_run);

// One line per device: what it will hold against its free memory.
QString device_plan_line(const DevicePlanInfo& device, const QString& kv_cache);

// How an ingest ended, for the line under the progress bar: tokens cached, and what came from the
// ingest cache on disk.
QString ingest_summary(const IngestReport& report, bool cancelled);

}  // namespace lwm::gui
