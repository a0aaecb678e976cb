#include "chat_json.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QRegularExpression>
#include <array>
#include <utility>

namespace lwm::gui {
namespace {

// Frozen spellings; the index in each table is not part of the format.
constexpr std::array<std::pair<SourceKind, const char*>, 3> kSourceKinds{
    {{SourceKind::none, "none"}, {SourceKind::book, "book"}, {SourceKind::video, "video"}}};
constexpr std::array<std::pair<AnswerEnd, const char*>, 5> kAnswerEnds{
    {{AnswerEnd::none, "none"},
     {AnswerEnd::finished, "finished"},
     {AnswerEnd::length, "length"},
     {AnswerEnd::stopped, "stopped"},
     {AnswerEnd::failed, "failed"}}};
constexpr std::array<std::pair<ChatMessage::Role, const char*>, 2> kRoles{
    {{ChatMessage::Role::user, "user"}, {ChatMessage::Role::assistant, "assistant"}}};

template <typename Enum, std::size_t N>
QString name_of(const std::array<std::pair<Enum, const char*>, N>& table, Enum value) {
  for (const auto& [entry, name] : table) {
    if (entry == value) return QString::fromLatin1(name);
  }
  return QString::fromLatin1(table.front().second);
}

template <typename Enum, std::size_t N>
std::optional<Enum> value_of(const std::array<std::pair<Enum, const char*>, N>& table,
                             const QString& name) {
  for (const auto& [entry, entry_name] : table) {
    if (name == QLatin1String(entry_name)) return entry;
  }
  return std::nullopt;
}

QString time_to_json(const QDateTime& time) {
  return time.isValid() ? time.toUTC().toString(Qt::ISODateWithMs) : QString();
}

QDateTime time_from_json(const QJsonValue& value) {
  return QDateTime::fromString(value.toString(), Qt::ISODateWithMs);
}

QJsonObject stats_to_json(const AnswerStats& stats) {
  return QJsonObject{{"prompt_tokens", stats.prompt_tokens},
                     {"reused_tokens", stats.reused_tokens},
                     {"generated_tokens", stats.generated_tokens},
                     {"time_to_first_token_s", stats.time_to_first_token_s},
                     {"prefill_tokens_per_s", stats.prefill_tokens_per_s},
                     {"decode_tokens_per_s", stats.decode_tokens_per_s}};
}

AnswerStats stats_from_json(const QJsonObject& object) {
  AnswerStats stats;
  stats.prompt_tokens = object.value("prompt_tokens").toInteger(stats.prompt_tokens);
  stats.reused_tokens = object.value("reused_tokens").toInteger(stats.reused_tokens);
  stats.generated_tokens = object.value("generated_tokens").toInteger(stats.generated_tokens);
  stats.time_to_first_token_s =
      object.value("time_to_first_token_s").toDouble(stats.time_to_first_token_s);
  stats.prefill_tokens_per_s =
      object.value("prefill_tokens_per_s").toDouble(stats.prefill_tokens_per_s);
  stats.decode_tokens_per_s =
      object.value("decode_tokens_per_s").toDouble(stats.decode_tokens_per_s);
  return stats;
}

QJsonObject message_to_json(const ChatMessage& message) {
  QJsonObject object{{"role", name_of(kRoles, message.role)},
                     {"text", message.text},
                     {"time", time_to_json(message.time)}};
  if (message.role == ChatMessage::Role::assistant) {
    object.insert("end", name_of(kAnswerEnds, message.end));
    object.insert("error", message.error);
    object.insert("stats", stats_to_json(message.stats));
  }
  return object;
}

}  // namespace

QString to_string(SourceKind kind) {
  return name_of(kSourceKinds, kind);
}
QString to_string(AnswerEnd end) {
  return name_of(kAnswerEnds, end);
}

bool is_valid_chat_id(const QString& id) {
  static const QRegularExpression pattern(QStringLiteral("^[A-Za-z0-9_-]{1,128}$"));
  return pattern.match(id).hasMatch();
}

QByteArray chat_to_json_bytes(const ChatRecord& record) {
  QJsonArray messages;
  for (const ChatMessage& message : record.messages) messages.append(message_to_json(message));
  const QJsonObject choices{{"frames", record.choices.frames},
                            {"fps", record.choices.fps},
                            {"devices", record.choices.devices},
                            {"kv_cache", record.choices.kv_cache},
                            {"context", record.choices.context}};
  const QJsonObject source{{"kind", to_string(record.source_kind)},
                           {"path", record.source_path},
                           {"sha256", record.source_sha256}};
  const QJsonObject root{{"format", QString::fromLatin1(kChatFormatName)},
                         {"version", kChatFormatVersion},
                         {"id", record.id},
                         {"title", record.title},
                         {"model_dir", record.model_dir},
                         {"source", source},
                         {"choices", choices},
                         {"created", time_to_json(record.created)},
                         {"updated", time_to_json(record.updated)},
                         {"messages", messages}};
  return QJsonDocument(root).toJson(QJsonDocument::Indented);
}

std::optional<ChatRecord> chat_from_json_bytes(const QByteArray& bytes, QString* error) {
  auto failed = [error](const QString& message) -> std::optional<ChatRecord> {
    if (error) *error = message;
    return std::nullopt;
  };
  if (bytes.trimmed().isEmpty()) return failed(QStringLiteral("is empty"));
  QJsonParseError parse_error;
  const QJsonDocument document = QJsonDocument::fromJson(bytes, &parse_error);
  if (parse_error.error != QJsonParseError::NoError) {
    return failed(QStringLiteral("is not valid JSON (%1 at byte %2; the file may be cut short)")
                      .arg(parse_error.errorString())
                      .arg(parse_error.offset));
  }
  if (!document.isObject()) return failed(QStringLiteral("does not hold a JSON object"));
  const QJsonObject root = document.object();
  if (root.value("format").toString() != QLatin1String(kChatFormatName)) {
    return failed(QStringLiteral("is not an LWM Studio chat (its \"format\" is not \"%1\")")
                      .arg(QLatin1String(kChatFormatName)));
  }
  const int version = root.value("version").toInt(-1);
  if (version < 1) return failed(QStringLiteral("has no valid format version"));
  if (version > kChatFormatVersion) {
    return failed(QStringLiteral("was written by a newer LWM Studio (format version %1; this one "
                                 "reads up to %2); open it with that version")
                      .arg(version)
                      .arg(kChatFormatVersion));
  }
  ChatRecord record;
  record.id = root.value("id").toString();
  if (!is_valid_chat_id(record.id)) {
    return failed(QStringLiteral("has no valid chat id (\"%1\")").arg(record.id.left(40)));
  }
  record.title = root.value("title").toString();
  record.model_dir = root.value("model_dir").toString();
  const QJsonObject source = root.value("source").toObject();
  const auto kind = value_of(kSourceKinds, source.value("kind").toString("none"));
  if (!kind) return failed(QStringLiteral("names an unknown source kind"));
  record.source_kind = *kind;
  record.source_path = source.value("path").toString();
  record.source_sha256 = source.value("sha256").toString();
  const QJsonObject choices = root.value("choices").toObject();
  record.choices.frames = choices.value("frames").toInteger(record.choices.frames);
  record.choices.fps = choices.value("fps").toDouble(record.choices.fps);
  record.choices.devices = choices.value("devices").toString(record.choices.devices);
  record.choices.kv_cache = choices.value("kv_cache").toString(record.choices.kv_cache);
  record.choices.context = choices.value("context").toInteger(record.choices.context);
  record.created = time_from_json(root.value("created"));
  record.updated = time_from_json(root.value("updated"));
  const QJsonValue messages = root.value("messages");
  if (!messages.isArray() && !messages.isUndefined()) {
    return failed(QStringLiteral("has a \"messages\" entry that is not a list"));
  }
  const QJsonArray message_array = messages.toArray();
  for (qsizetype i = 0; i < message_array.size(); ++i) {
    const QJsonObject object = message_array.at(i).toObject();
    ChatMessage message;
    const auto role = value_of(kRoles, object.value("role").toString());
    const auto end = value_of(kAnswerEnds, object.value("end").toString("none"));
    if (!role || !end || !object.value("text").isString()) {
      return failed(QStringLiteral("has a damaged message (number %1)").arg(i + 1));
    }
    message.role = *role;
    message.end = *end;
    message.text = object.value("text").toString();
    message.time = time_from_json(object.value("time"));
    message.error = object.value("error").toString();
    message.stats = stats_from_json(object.value("stats").toObject());
    record.messages.append(std::move(message));
  }
  return record;
}

}  // namespace lwm::gui
