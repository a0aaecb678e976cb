#include "sessions_panel.h"

#include <QAction>
#include <QInputDialog>
#include <QLineEdit>
#include <QListView>
#include <QMessageBox>
#include <QVBoxLayout>

#include "lwm/gui/session_list_model.h"

namespace lwm::gui {

SessionsPanel::SessionsPanel(SessionListModel* sessions, QWidget* parent)
    : QWidget(parent), sessions_(sessions), filter_(new SessionFilterModel(this)) {
  filter_->setSourceModel(sessions_);
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  search_ = new QLineEdit;
  search_->setPlaceholderText(tr("Search chats (Ctrl+F)"));
  search_->setAccessibleName(tr("Search chats"));
  search_->setClearButtonEnabled(true);
  list_ = new QListView;
  list_->setModel(filter_);
  list_->setAccessibleName(tr("Saved chats"));
  list_->setEditTriggers(QAbstractItemView::EditKeyPressed);  // F2 renames in place
  list_->setContextMenuPolicy(Qt::ActionsContextMenu);
  layout->addWidget(search_);
  layout->addWidget(list_, 1);
  setTabOrder(search_, list_);

  auto* rename = new QAction(tr("Rename…"), list_);
  auto* remove = new QAction(tr("Delete…"), list_);
  remove->setShortcut(QKeySequence::Delete);
  remove->setShortcutContext(Qt::WidgetShortcut);
  list_->addAction(rename);
  list_->addAction(remove);
  connect(rename, &QAction::triggered, this, &SessionsPanel::renameSelected);
  connect(remove, &QAction::triggered, this, &SessionsPanel::deleteSelected);
  connect(search_, &QLineEdit::textChanged, filter_, &SessionFilterModel::set_query);
  connect(list_, &QListView::activated, this, [this](const QModelIndex& index) {
    emit openRequested(index.data(SessionListModel::IdRole).toString());
  });
}

QString SessionsPanel::selectedId() const {
  return list_->currentIndex().data(SessionListModel::IdRole).toString();
}

void SessionsPanel::select(const QString& id) {
  const int row = sessions_->row_of(id);
  if (row < 0) return;
  const QModelIndex index = filter_->mapFromSource(sessions_->index(row));
  if (index.isValid()) list_->setCurrentIndex(index);
}

void SessionsPanel::step(int step) {
  const int rows = filter_->rowCount();
  if (rows == 0) return;
  const int current = list_->currentIndex().isValid() ? list_->currentIndex().row() : -step;
  const int row = std::clamp(current + step, 0, rows - 1);
  const QModelIndex index = filter_->index(row, 0);
  list_->setCurrentIndex(index);
  emit openRequested(index.data(SessionListModel::IdRole).toString());
}

void SessionsPanel::renameSelected() {
  const QString id = selectedId();
  const ChatRecord* record = sessions_->record(id);
  if (!record) return;
  bool ok = false;
  const QString title = QInputDialog::getText(this, tr("Rename chat"), tr("New name:"),
                                              QLineEdit::Normal, record->title, &ok);
  if (ok && !title.trimmed().isEmpty()) sessions_->rename(id, title.trimmed());
}

void SessionsPanel::deleteSelected() {
  const QString id = selectedId();
  const ChatRecord* record = sessions_->record(id);
  if (!record) return;
  const auto answer =
      QMessageBox::question(this, tr("Delete chat"),
                            tr("Delete the chat \"%1\" and its %2 messages? This cannot be undone.")
                                .arg(record->title)
                                .arg(record->messages.size()),
                            QMessageBox::Yes | QMessageBox::Cancel, QMessageBox::Cancel);
  if (answer == QMessageBox::Yes && sessions_->remove(id)) emit deleted(id);
}

}  // namespace lwm::gui
