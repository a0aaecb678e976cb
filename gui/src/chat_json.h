// The chat file format, "lwm-studio-chat" version 1: one JSON object per chat, shared by the
// store and the JSON export so an exported chat can be dropped into the chats folder as is.
//
//   { "format": "lwm-studio-chat", "version": 1, "id", "title", "model_dir",
//     "source": { "kind": "none"|"book"|"video", "path", "sha256" },
//     "choices": { "frames", "fps", "devices", "kv_cache", "context" },
//     "created", "updated",                  // ISO 8601 UTC with milliseconds, "" when unknown
//     "messages": [ { "role": "user"|"assistant", "text", "time",
//                     "end": "none"|"finished"|"length"|"stopped"|"failed", "error",
//                     "stats": { "prompt_tokens", "reused_tokens", "generated_tokens",
//                                "time_to_first_token_s", "prefill_tokens_per_s",
//                                "decode_tokens_per_s" } } ] }
//
// Enum values are written as the frozen strings above, never as numbers, so reordering an enum
// cannot change what old files mean. Readers accept versions up to kChatFormatVersion.
#pragma once

#include <QByteArray>
#include <QString>
#include <optional>

#include "lwm/gui/chat_record.h"

namespace lwm::gui {

inline constexpr char kChatFormatName[] = "lwm-studio-chat";
inline constexpr int kChatFormatVersion = 1;

QByteArray chat_to_json_bytes(const ChatRecord& record);

// Parses a chat file. On failure returns nullopt and sets *error to what is wrong with the
// contents ("is not valid JSON: unterminated string at byte 812", "was written by a newer
// LWM Studio (format version 3; this one reads up to 1)"), without the file name.
std::optional<ChatRecord> chat_from_json_bytes(const QByteArray& bytes, QString* error);

// A chat id doubles as a file name: letters, digits, '-' and '_' only, 1..128 characters.
bool is_valid_chat_id(const QString& id);

// The user-facing names of enum values ("video", "finished"), the same strings the file holds.
QString to_string(SourceKind kind);
QString to_string(AnswerEnd end);

}  // namespace lwm::gui
