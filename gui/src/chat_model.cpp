#include "lwm/gui/chat_model.h"

#include <QStringList>

namespace lwm::gui {

ChatModel::ChatModel(QObject* parent) : QAbstractListModel(parent) {}

int ChatModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(record_.messages.size());
}

QVariant ChatModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return {};
  const ChatMessage& message = record_.messages[index.row()];
  switch (role) {
    case Qt::DisplayRole:
    case TextRole:
      return message.text;
    case RoleRole:
      return message.role == ChatMessage::Role::user ? QStringLiteral("user")
                                                     : QStringLiteral("assistant");
    case StatsRole:
      return statsSummary(message);
    case EndRole:
      return static_cast<int>(message.end);
    case ErrorRole:
      return message.error;
    case TimeRole:
      return message.time;
    case StreamingRole:
      return answering_ && index.row() == rowCount() - 1;
    default:
      return {};
  }
}

QHash<int, QByteArray> ChatModel::roleNames() const {
  return {{TextRole, "text"},           {RoleRole, "role"},
          {StatsRole, "stats"},         {EndRole, "end"},
          {ErrorRole, "error"},         {TimeRole, "time"},
          {StreamingRole, "streaming"}, {Qt::DisplayRole, "display"}};
}

void ChatModel::setRecord(const ChatRecord& record) {
  beginResetModel();
  record_ = record;
  answering_ = false;
  endResetModel();
}

void ChatModel::setContext(const QString& model_dir, const IngestChoices& choices) {
  record_.model_dir = model_dir;
  record_.choices = choices;
}

int ChatModel::appendQuestion(const QString& text) {
  const int row = rowCount();
  beginInsertRows({}, row, row);
  ChatMessage message;
  message.role = ChatMessage::Role::user;
  message.text = text;
  message.time = QDateTime::currentDateTimeUtc();
  record_.messages.append(message);
  record_.updated = message.time;
  if (record_.title.isEmpty()) record_.title = text.left(60);
  endInsertRows();
  emit changed();
  return row;
}

int ChatModel::beginAnswer() {
  const int row = rowCount();
  beginInsertRows({}, row, row);
  ChatMessage message;
  message.role = ChatMessage::Role::assistant;
  message.time = QDateTime::currentDateTimeUtc();
  record_.messages.append(message);
  answering_ = true;
  endInsertRows();
  return row;
}

void ChatModel::appendToAnswer(const QString& text) {
  if (!answering_ || record_.messages.isEmpty() || text.isEmpty()) return;
  record_.messages.last().text += text;
  const QModelIndex last = index(rowCount() - 1);
  emit dataChanged(last, last, {Qt::DisplayRole, TextRole});
}

void ChatModel::finishAnswer(const AnswerStats& stats, AnswerEnd end, const QString& error) {
  if (!answering_ || record_.messages.isEmpty()) return;
  ChatMessage& message = record_.messages.last();
  message.stats = stats;
  message.end = end;
  message.error = error;
  answering_ = false;
  record_.updated = QDateTime::currentDateTimeUtc();
  const QModelIndex last = index(rowCount() - 1);
  emit dataChanged(last, last, {StatsRole, EndRole, ErrorRole, StreamingRole});
  emit changed();
}

void ChatModel::truncateAfter(int row) {
  const int first = std::max(row + 1, 0);
  if (first >= rowCount()) return;
  beginRemoveRows({}, first, rowCount() - 1);
  record_.messages.resize(first);
  answering_ = false;
  endRemoveRows();
  emit changed();
}

bool ChatModel::editQuestion(int row, const QString& text) {
  if (row < 0 || row >= rowCount() || record_.messages[row].role != ChatMessage::Role::user)
    return false;
  truncateAfter(row);
  record_.messages[row].text = text;
  record_.messages[row].time = QDateTime::currentDateTimeUtc();
  emit dataChanged(index(row), index(row), {Qt::DisplayRole, TextRole, TimeRole});
  emit changed();
  return true;
}

int ChatModel::lastQuestionRow() const {
  for (int row = rowCount() - 1; row >= 0; --row) {
    if (record_.messages[row].role == ChatMessage::Role::user) return row;
  }
  return -1;
}

QString ChatModel::statsSummary(const ChatMessage& message) {
  if (message.role != ChatMessage::Role::assistant) return {};
  QStringList parts;
  const AnswerStats& s = message.stats;
  if (s.decode_tokens_per_s > 0) parts << tr("%1 tok/s").arg(s.decode_tokens_per_s, 0, 'f', 1);
  if (s.time_to_first_token_s >= 0)
    parts << tr("first token %1 s").arg(s.time_to_first_token_s, 0, 'f', 2);
  if (s.generated_tokens > 0) parts << tr("%1 tokens").arg(s.generated_tokens);
  if (s.reused_tokens > 0) parts << tr("%1 prompt tokens reused").arg(s.reused_tokens);
  switch (message.end) {
    case AnswerEnd::length:
      parts << tr("stopped at the token limit");
      break;
    case AnswerEnd::stopped:
      parts << tr("stopped");
      break;
    case AnswerEnd::failed:
      parts << tr("failed");
      break;
    case AnswerEnd::none:
    case AnswerEnd::finished:
      break;
  }
  return parts.join(QStringLiteral(" · "));
}

}  // namespace lwm::gui
