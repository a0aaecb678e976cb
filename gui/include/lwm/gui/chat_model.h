// The messages of one chat as a list model (issue 7, "Ask"): the chat view renders it, the store
// saves record() after every answer. Streaming appends to the last answer in place; regenerate
// and edit-and-resend drop the messages after the question they start from.
#pragma once

#include <QAbstractListModel>

#include "lwm/gui/chat_record.h"

namespace lwm::gui {

class ChatModel : public QAbstractListModel {
  Q_OBJECT

 public:
  enum Roles {
    TextRole = Qt::UserRole + 1,  // the message text (Qt::DisplayRole gives it too)
    RoleRole,                     // "user" or "assistant"
    StatsRole,                    // a one-line summary: tokens/s, time to first token, end
    EndRole,                      // int(AnswerEnd)
    ErrorRole,                    // the failure sentence of a failed answer
    TimeRole,                     // QDateTime
    StreamingRole,                // bool: the answer is still arriving
  };

  explicit ChatModel(QObject* parent = nullptr);

  int rowCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
  QHash<int, QByteArray> roleNames() const override;

  const ChatRecord& record() const noexcept { return record_; }
  // Replaces the whole chat (opening a saved one); resets the model.
  void setRecord(const ChatRecord& record);

  // Records the model and the ingest choices the chat is being asked with (saved with it).
  void setContext(const QString& model_dir, const IngestChoices& choices);

  // Appends a question; returns its row.
  int appendQuestion(const QString& text);
  // Starts an empty answer after the last message; returns its row.
  int beginAnswer();
  // Appends streamed text to the answer being written (ignored when none is).
  void appendToAnswer(const QString& text);
  // Ends the answer being written with its statistics and why it ended.
  void finishAnswer(const AnswerStats& stats, AnswerEnd end, const QString& error = {});
  bool answering() const noexcept { return answering_; }

  // Removes every message after `row` (regenerate keeps the question and drops its answer).
  void truncateAfter(int row);
  // Replaces the text of question `row` and drops everything after it (edit and resend).
  // Returns false when `row` is not a question.
  bool editQuestion(int row, const QString& text);
  // The last question's row, or -1.
  int lastQuestionRow() const;

  // "12.3 tok/s · first token 0.42 s · 57 tokens · stopped" for an answer.
  static QString statsSummary(const ChatMessage& message);

 signals:
  // The record changed in a way worth saving (a question, a finished answer, an edit).
  void changed();

 private:
  ChatRecord record_;
  bool answering_ = false;
};

}  // namespace lwm::gui
