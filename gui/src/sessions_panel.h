// The sessions sidebar (issue 7, "Keep"): every saved chat, newest first, with a search box;
// activating one asks the window to reopen it; rename and delete (with confirmation) act on the
// SessionListModel, which writes to the ChatStore first.
#pragma once

#include <QWidget>

class QLineEdit;
class QListView;

namespace lwm::gui {

class SessionListModel;
class SessionFilterModel;

class SessionsPanel : public QWidget {
  Q_OBJECT

 public:
  SessionsPanel(SessionListModel* sessions, QWidget* parent = nullptr);

  // Selects the chat `id` without reopening it (the window already shows it).
  void select(const QString& id);
  // Moves the selection by `step` rows (next/previous session) and reopens that chat.
  void step(int step);
  // Asks for a new name, or for confirmation before deleting; act on the selected chat.
  void renameSelected();
  void deleteSelected();
  QString selectedId() const;

  QLineEdit* searchBox() const { return search_; }
  QListView* list() const { return list_; }

 signals:
  void openRequested(const QString& id);
  void deleted(const QString& id);

 private:
  SessionListModel* sessions_;
  SessionFilterModel* filter_;
  QLineEdit* search_;
  QListView* list_;
};

}  // namespace lwm::gui
