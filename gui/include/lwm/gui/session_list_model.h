// The session list: every saved chat, newest first, as a Qt item model for the sidebar, with a
// search proxy. Plain logic (no widgets), tested with QAbstractItemModelTester.
//
// When a ChatStore is attached, every change is written to it first and the model changes only
// when the write succeeded, so the list always shows what is on disk; a failed write leaves the
// model as it was and emits error_occurred with a sentence for the user.
#pragma once

#include <QAbstractListModel>
#include <QList>
#include <QSortFilterProxyModel>
#include <QStringList>

#include "lwm/gui/chat_record.h"
#include "lwm/gui/chat_store.h"

namespace lwm::gui {

class SessionListModel : public QAbstractListModel {
  Q_OBJECT

 public:
  enum Role {
    IdRole = Qt::UserRole + 1,
    TitleRole,         // QString; also Qt::DisplayRole and Qt::EditRole
    SourceKindRole,    // int, a SourceKind
    SourcePathRole,    // QString
    UpdatedRole,       // QDateTime
    MessageCountRole,  // int
    LastQuestionRole,  // QString: the text of the last user message
  };

  // `store` may be null (nothing is saved) and must outlive the model.
  explicit SessionListModel(ChatStore* store = nullptr, QObject* parent = nullptr);

  // Replaces every row with the store's chats; returns the files it had to move aside.
  QList<StoreProblem> reload();
  // Replaces every row without touching the store.
  void set_records(QList<ChatRecord> records);

  // Adds a chat or replaces the one with the same id (call after every answer); saves it first.
  // The row moves to keep the list sorted by `updated`, newest first.
  bool upsert(const ChatRecord& record);
  bool remove(const QString& id);
  bool rename(const QString& id, const QString& title);

  int row_of(const QString& id) const;         // -1 when absent
  const ChatRecord* record_at(int row) const;  // null when out of range
  const ChatRecord* record(const QString& id) const;

  // True when every whitespace-separated word of `query` occurs, ignoring case, in the title,
  // the source file's name or the text of a message. An empty query matches everything.
  bool matches(int row, const QString& query) const;

  int rowCount(const QModelIndex& parent = QModelIndex()) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
  // Editing Qt::EditRole (or TitleRole) renames the chat; an empty title is refused.
  bool setData(const QModelIndex& index, const QVariant& value, int role = Qt::EditRole) override;
  Qt::ItemFlags flags(const QModelIndex& index) const override;
  QHash<int, QByteArray> roleNames() const override;

 signals:
  void error_occurred(const QString& message);

 private:
  int sorted_row_for(const ChatRecord& record, int ignore_row) const;

  ChatStore* store_;
  QList<ChatRecord> records_;  // sorted by updated, newest first; ties by id
};

// The search box's filter over a SessionListModel (see SessionListModel::matches).
class SessionFilterModel : public QSortFilterProxyModel {
  Q_OBJECT

 public:
  explicit SessionFilterModel(QObject* parent = nullptr);
  void set_query(const QString& query);
  const QString& query() const { return query_; }

 protected:
  bool filterAcceptsRow(int source_row, const QModelIndex& source_parent) const override;

 private:
  QString query_;
};

}  // namespace lwm::gui
