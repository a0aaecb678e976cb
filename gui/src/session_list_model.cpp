#include "lwm/gui/session_list_model.h"

#include <QFileInfo>
#include <QRegularExpression>
#include <algorithm>
#include <utility>

namespace lwm::gui {
namespace {

// Newest first; ties by id so the order never depends on insertion history.
bool comes_before(const ChatRecord& a, const ChatRecord& b) {
  if (a.updated != b.updated) return a.updated > b.updated;
  return a.id < b.id;
}

QString last_question(const ChatRecord& record) {
  for (auto it = record.messages.crbegin(); it != record.messages.crend(); ++it) {
    if (it->role == ChatMessage::Role::user) return it->text;
  }
  return {};
}

bool record_contains(const ChatRecord& record, const QString& word) {
  if (record.title.contains(word, Qt::CaseInsensitive)) return true;
  if (QFileInfo(record.source_path).fileName().contains(word, Qt::CaseInsensitive)) return true;
  return std::any_of(
      record.messages.cbegin(), record.messages.cend(),
      [&word](const ChatMessage& m) { return m.text.contains(word, Qt::CaseInsensitive); });
}

}  // namespace

SessionListModel::SessionListModel(ChatStore* store, QObject* parent)
    : QAbstractListModel(parent), store_(store) {}

QList<StoreProblem> SessionListModel::reload() {
  if (!store_) return {};
  ChatStore::LoadResult loaded = store_->load_all();
  set_records(std::move(loaded.chats));
  return loaded.problems;
}

void SessionListModel::set_records(QList<ChatRecord> records) {
  std::sort(records.begin(), records.end(), comes_before);
  beginResetModel();
  records_ = std::move(records);
  endResetModel();
}

int SessionListModel::sorted_row_for(const ChatRecord& record, int ignore_row) const {
  int row = 0;
  for (int i = 0; i < records_.size(); ++i) {
    if (i != ignore_row && comes_before(records_[i], record)) ++row;
  }
  return row;
}

bool SessionListModel::upsert(const ChatRecord& record) {
  QString error;
  if (store_ && !store_->save(record, &error)) {
    emit error_occurred(error);
    return false;
  }
  const int old_row = row_of(record.id);
  if (old_row < 0) {
    const int row = sorted_row_for(record, -1);
    beginInsertRows(QModelIndex(), row, row);
    records_.insert(row, record);
    endInsertRows();
    return true;
  }
  const int row = sorted_row_for(record, old_row);
  if (row != old_row) {
    // Qt's destination is the row *before which* the moved row lands in the old numbering.
    beginMoveRows(QModelIndex(), old_row, old_row, QModelIndex(), row > old_row ? row + 1 : row);
    records_.move(old_row, row);
    endMoveRows();
  }
  records_[row] = record;
  emit dataChanged(index(row), index(row));
  return true;
}

bool SessionListModel::remove(const QString& id) {
  const int row = row_of(id);
  QString error;
  if (store_ && !store_->remove(id, &error)) {
    emit error_occurred(error);
    return false;
  }
  if (row < 0) return true;
  beginRemoveRows(QModelIndex(), row, row);
  records_.removeAt(row);
  endRemoveRows();
  return true;
}

bool SessionListModel::rename(const QString& id, const QString& title) {
  const int row = row_of(id);
  if (row < 0) return false;
  const QString trimmed = title.trimmed();
  if (trimmed.isEmpty()) {
    emit error_occurred(QStringLiteral("A chat needs a title; the name was not changed."));
    return false;
  }
  if (trimmed == records_[row].title) return true;
  ChatRecord renamed = records_[row];
  renamed.title = trimmed;
  QString error;
  if (store_ && !store_->save(renamed, &error)) {
    emit error_occurred(error);
    return false;
  }
  records_[row] = std::move(renamed);  // `updated` is unchanged, so the row stays where it is
  emit dataChanged(index(row), index(row), {Qt::DisplayRole, Qt::EditRole, TitleRole});
  return true;
}

int SessionListModel::row_of(const QString& id) const {
  for (int i = 0; i < records_.size(); ++i) {
    if (records_[i].id == id) return i;
  }
  return -1;
}

const ChatRecord* SessionListModel::record_at(int row) const {
  return row >= 0 && row < records_.size() ? &records_[row] : nullptr;
}

const ChatRecord* SessionListModel::record(const QString& id) const {
  return record_at(row_of(id));
}

bool SessionListModel::matches(int row, const QString& query) const {
  const ChatRecord* chat = record_at(row);
  if (!chat) return false;
  static const QRegularExpression whitespace(QStringLiteral("\\s+"));
  const QStringList words = query.split(whitespace, Qt::SkipEmptyParts);
  return std::all_of(words.cbegin(), words.cend(),
                     [chat](const QString& word) { return record_contains(*chat, word); });
}

int SessionListModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : int(records_.size());
}

QVariant SessionListModel::data(const QModelIndex& index, int role) const {
  const ChatRecord* chat =
      index.isValid() && !index.parent().isValid() ? record_at(index.row()) : nullptr;
  if (!chat) return {};
  switch (role) {
    case Qt::DisplayRole:
    case Qt::EditRole:
    case TitleRole:
      return chat->title;
    case Qt::ToolTipRole:
      return chat->source_path.isEmpty() ? chat->title
                                         : chat->title + QLatin1Char('\n') + chat->source_path;
    case IdRole:
      return chat->id;
    case SourceKindRole:
      return int(chat->source_kind);
    case SourcePathRole:
      return chat->source_path;
    case UpdatedRole:
      return chat->updated;
    case MessageCountRole:
      return int(chat->messages.size());
    case LastQuestionRole:
      return last_question(*chat);
    default:
      return {};
  }
}

bool SessionListModel::setData(const QModelIndex& index, const QVariant& value, int role) {
  if (!index.isValid() || index.parent().isValid() || index.row() >= records_.size()) return false;
  if (role != Qt::EditRole && role != TitleRole) return false;
  return rename(records_[index.row()].id, value.toString());
}

Qt::ItemFlags SessionListModel::flags(const QModelIndex& index) const {
  if (!index.isValid()) return Qt::NoItemFlags;
  return Qt::ItemIsSelectable | Qt::ItemIsEnabled | Qt::ItemIsEditable | Qt::ItemNeverHasChildren;
}

QHash<int, QByteArray> SessionListModel::roleNames() const {
  QHash<int, QByteArray> names = QAbstractListModel::roleNames();
  names.insert(IdRole, "id");
  names.insert(TitleRole, "title");
  names.insert(SourceKindRole, "sourceKind");
  names.insert(SourcePathRole, "sourcePath");
  names.insert(UpdatedRole, "updated");
  names.insert(MessageCountRole, "messageCount");
  names.insert(LastQuestionRole, "lastQuestion");
  return names;
}

SessionFilterModel::SessionFilterModel(QObject* parent) : QSortFilterProxyModel(parent) {}

void SessionFilterModel::set_query(const QString& query) {
  if (query == query_) return;
  query_ = query;
  invalidateFilter();
}

bool SessionFilterModel::filterAcceptsRow(int source_row, const QModelIndex& source_parent) const {
  if (source_parent.isValid()) return false;
  const auto* sessions = qobject_cast<const SessionListModel*>(sourceModel());
  return !sessions || sessions->matches(source_row, query_);
}

}  // namespace lwm::gui
