// Export a chat for reading or sharing: Markdown (title, source, each question and answer with
// its statistics) or JSON (exactly the store's "lwm-studio-chat" file, so it can be copied back
// into the chats folder). Files are written atomically to the path the user chose.
#pragma once

#include <QByteArray>
#include <QString>

#include "lwm/gui/chat_record.h"

namespace lwm::gui {

QString chat_to_markdown(const ChatRecord& record);
QByteArray chat_to_json(const ChatRecord& record);

// Return false and set *error (when given) to a sentence naming the file when writing fails.
bool export_markdown(const ChatRecord& record, const QString& path, QString* error = nullptr);
bool export_json(const ChatRecord& record, const QString& path, QString* error = nullptr);

// A file name for the save dialog: the title with characters that are unsafe in file names on
// Linux, macOS or Windows replaced by '_', at most 80 characters, plus `extension` ("md").
QString suggested_export_name(const ChatRecord& record, const QString& extension);

}  // namespace lwm::gui
