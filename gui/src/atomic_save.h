// One way to write a file the app keeps (chats, app state, exports): QSaveFile writes a temporary
// file beside the target, flushes and fsyncs it and renames it over the target, so a crash
// leaves either the old file or the new one, never a half-written one (design.md, "Files we
// write"). After the rename the directory is fsynced too, so the new name itself survives a
// power cut.
#pragma once

#include <QByteArray>
#include <QString>

namespace lwm::gui {

// Writes `bytes` to `path` atomically, creating missing parent directories. On failure returns
// false and sets *error (when given) to a sentence naming the file and the reason.
bool save_file_atomically(const QString& path, const QByteArray& bytes, QString* error);

// True for the temporary names QSaveFile (and core's AtomicFileWriter) leave behind when a
// process dies mid-write: "<name>.XXXXXX" with six letters or digits, or "<name>.tmp-<pid>".
bool is_leftover_temp_name(const QString& file_name, const QString& final_suffix);

// Tests only: a function called after the bytes are written and before the commit, where a
// real crash would hit hardest. Pass nullptr to clear. Not thread-safe; never set in the app.
void set_crash_point_for_tests(void (*crash_point)());

// Sets *error when error is not null; returns false so callers can `return fail(error, ...)`.
bool fail(QString* error, const QString& message);

}  // namespace lwm::gui
