#include "lwm/gui/chat_export.h"

#include <QDir>
#include <QRegularExpression>
#include <QStringList>

#include "atomic_save.h"
#include "chat_json.h"

namespace lwm::gui {
namespace {

QString format_time(const QDateTime& time) {
  return time.isValid() ? time.toUTC().toString(QStringLiteral("yyyy-MM-dd HH:mm:ss 'UTC'"))
                        : QStringLiteral("unknown time");
}

// Inline code that survives backticks in the text (CommonMark: a longer fence around it).
QString code_span(const QString& text) {
  QString fence = QStringLiteral("`");
  while (text.contains(fence)) fence += QLatin1Char('`');
  const bool pad = text.startsWith(QLatin1Char('`')) || text.endsWith(QLatin1Char('`'));
  return pad ? fence + QLatin1Char(' ') + text + QLatin1Char(' ') + fence : fence + text + fence;
}

// The question is what the user typed: a block quote keeps a leading '#' or '-' in it from
// turning into a heading or a list of the export's own structure.
QString block_quote(const QString& text) {
  QStringList lines = text.split(QLatin1Char('\n'));
  for (QString& line : lines)
    line = line.isEmpty() ? QStringLiteral(">") : QStringLiteral("> ") + line;
  return lines.join(QLatin1Char('\n'));
}

QString describe_end(AnswerEnd end) {
  switch (end) {
    case AnswerEnd::length:
      return QStringLiteral("cut at the token limit");
    case AnswerEnd::stopped:
      return QStringLiteral("stopped by the user");
    case AnswerEnd::failed:
      return QStringLiteral("failed");
    case AnswerEnd::finished:
    case AnswerEnd::none:
      break;
  }
  return {};
}

QString stats_line(const ChatMessage& answer) {
  const AnswerStats& s = answer.stats;
  QStringList parts;
  if (s.prompt_tokens > 0) {
    parts << (s.reused_tokens > 0 ? QStringLiteral("%1 prompt tokens (%2 reused from the cache)")
                                        .arg(s.prompt_tokens)
                                        .arg(s.reused_tokens)
                                  : QStringLiteral("%1 prompt tokens").arg(s.prompt_tokens));
  }
  if (s.generated_tokens > 0) parts << QStringLiteral("%1 generated").arg(s.generated_tokens);
  if (s.time_to_first_token_s >= 0) {
    parts << QStringLiteral("first token after %1 s").arg(s.time_to_first_token_s, 0, 'f', 2);
  }
  if (s.prefill_tokens_per_s >= 0) {
    parts << QStringLiteral("prefill %1 tokens/s").arg(s.prefill_tokens_per_s, 0, 'f', 1);
  }
  if (s.decode_tokens_per_s >= 0) {
    parts << QStringLiteral("decode %1 tokens/s").arg(s.decode_tokens_per_s, 0, 'f', 1);
  }
  const QString end = describe_end(answer.end);
  if (!end.isEmpty()) parts << end;
  return parts.isEmpty()
             ? QString()
             : QStringLiteral("*") + parts.join(QStringLiteral(" · ")) + QStringLiteral("*");
}

QString describe_source(const ChatRecord& record) {
  if (record.source_kind == SourceKind::none) return QStringLiteral("none");
  QString text = to_string(record.source_kind) + QLatin1Char(' ') + code_span(record.source_path);
  if (!record.source_sha256.isEmpty())
    text += QStringLiteral(" (SHA-256 %1)").arg(record.source_sha256);
  return text;
}

QString describe_choices(const IngestChoices& choices) {
  QStringList parts;
  if (choices.frames > 0) parts << QStringLiteral("%1 frames").arg(choices.frames);
  if (choices.fps > 0) parts << QStringLiteral("%1 frames per second").arg(choices.fps);
  parts << QStringLiteral("devices %1").arg(choices.devices);
  parts << QStringLiteral("KV cache %1").arg(choices.kv_cache);
  parts << (choices.context > 0 ? QStringLiteral("context %1 tokens").arg(choices.context)
                                : QStringLiteral("context sized to the source"));
  return parts.join(QStringLiteral(", "));
}

}  // namespace

QString chat_to_markdown(const ChatRecord& record) {
  QStringList out;
  out << QStringLiteral("# ") +
             (record.title.isEmpty() ? QStringLiteral("Untitled chat") : record.title.simplified())
      << QString();
  out << QStringLiteral("- Source: ") + describe_source(record);
  if (!record.model_dir.isEmpty()) out << QStringLiteral("- Model: ") + code_span(record.model_dir);
  out << QStringLiteral("- Ingest: ") + describe_choices(record.choices);
  out << QStringLiteral("- Created: %1; last answer: %2")
             .arg(format_time(record.created), format_time(record.updated));
  int question = 0;
  for (const ChatMessage& message : record.messages) {
    out << QString();
    if (message.role == ChatMessage::Role::user) {
      out << QStringLiteral("## Question %1").arg(++question) << QString()
          << QStringLiteral("*%1*").arg(format_time(message.time)) << QString()
          << block_quote(message.text);
      continue;
    }
    out << QStringLiteral("### Answer") << QString() << message.text;
    if (message.end == AnswerEnd::failed && !message.error.isEmpty()) {
      out << QString() << QStringLiteral("**Error:** ") + message.error;
    }
    const QString stats = stats_line(message);
    if (!stats.isEmpty()) out << QString() << stats;
  }
  out << QString();
  return out.join(QLatin1Char('\n'));
}

QByteArray chat_to_json(const ChatRecord& record) {
  return chat_to_json_bytes(record);
}

bool export_markdown(const ChatRecord& record, const QString& path, QString* error) {
  return save_file_atomically(path, chat_to_markdown(record).toUtf8(), error);
}

bool export_json(const ChatRecord& record, const QString& path, QString* error) {
  return save_file_atomically(path, chat_to_json(record), error);
}

QString suggested_export_name(const ChatRecord& record, const QString& extension) {
  static const QRegularExpression unsafe(QStringLiteral("[<>:\"/\\\\|?*\\x00-\\x1f]"));
  QString name = record.title.simplified();
  name.replace(unsafe, QStringLiteral("_"));
  name = name.left(80).trimmed();
  while (name.endsWith(QLatin1Char('.'))) name.chop(1);  // Windows drops trailing dots
  if (name.isEmpty()) name = QStringLiteral("chat");
  return name + QLatin1Char('.') + extension;
}

}  // namespace lwm::gui
