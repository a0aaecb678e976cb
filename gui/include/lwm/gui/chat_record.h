// A chat as the desktop app keeps it: the source it is about, the choices that planned its
// ingest, and every message. Plain data shared by the chat view (ChatModel), the session list and
// the store that saves it after every answer; nothing here knows about widgets or files.
#pragma once

#include <QDateTime>
#include <QList>
#include <QString>

namespace lwm::gui {

// Why an answer ended: the model finished it, hit the token limit, the user pressed Stop, or it
// failed (the error text is then the message's `error`).
enum class AnswerEnd { none, finished, length, stopped, failed };

struct AnswerStats {
  qint64 prompt_tokens = 0;
  qint64 reused_tokens = 0;      // prompt tokens found already in the KV cache
  qint64 generated_tokens = 0;
  double time_to_first_token_s = -1.0;
  double prefill_tokens_per_s = -1.0;
  double decode_tokens_per_s = -1.0;
};

struct ChatMessage {
  enum class Role { user, assistant };
  Role role = Role::user;
  QString text;        // the question, or the answer as Markdown
  QDateTime time;      // when it was asked or when the answer began
  AnswerStats stats;   // assistant messages only
  AnswerEnd end = AnswerEnd::none;
  QString error;       // when end == failed: what happened and what to do
};

enum class SourceKind { none, book, video };

// What the user chose before ingesting (the plan panel); the plan itself is recomputed from these.
struct IngestChoices {
  qint64 frames = 0;            // videos: uniform samples (0: use fps)
  double fps = 0.0;             // videos: samples per second (0: use frames)
  QString devices = "cpu";      // "cpu", "cuda:0", "cuda:0,1"
  QString kv_cache = "auto";    // KV-cache precision: "auto", "f32", "bf16", "int8"
  qint64 context = 0;           // KV-cache capacity in tokens; 0: sized to the source
};

struct ChatRecord {
  QString id;                   // stable identifier (a UUID without braces); the file name
  QString title;                // shown in the session list; the user may rename it
  QString model_dir;            // the model directory the chat was asked with
  SourceKind source_kind = SourceKind::none;
  QString source_path;          // the video or book file
  QString source_sha256;        // content hash: finds cached ingests and notices changed files
  IngestChoices choices;
  QList<ChatMessage> messages;
  QDateTime created;
  QDateTime updated;
};

}  // namespace lwm::gui
