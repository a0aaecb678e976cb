// The sessions sidebar over a real ChatStore: search narrows the list, next/previous walk it in
// order (newest first), delete asks first and removes the file only when confirmed.
#include <QAbstractButton>
#include <QApplication>
#include <QLineEdit>
#include <QListView>
#include <QMessageBox>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>
#include <QTimer>

#include "gui_test_support.h"
#include "lwm/gui/chat_store.h"
#include "lwm/gui/session_list_model.h"
#include "sessions_panel.h"

using namespace lwm::gui;

namespace {

ChatRecord chat(const QString& title, const QString& question, int minutes_ago) {
  ChatRecord record;
  record.id = ChatStore::new_id();
  record.title = title;
  record.source_kind = SourceKind::book;
  record.source_path = QStringLiteral("/books/") + title + QStringLiteral(".md");
  ChatMessage message;
  message.text = question;
  message.time = QDateTime::currentDateTimeUtc().addSecs(-60 * minutes_ago);
  record.messages.append(message);
  record.created = record.updated = message.time;
  return record;
}

// Answers the next message box with `button` once it is shown.
void answer_next_message_box(QMessageBox::StandardButton button) {
  QTimer::singleShot(0, [button] {
    for (QWidget* widget : QApplication::topLevelWidgets()) {
      if (auto* box = qobject_cast<QMessageBox*>(widget); box && box->isVisible()) {
        box->button(button)->click();
        return;
      }
    }
    answer_next_message_box(button);  // not shown yet: try again on the next turn
  });
}

}  // namespace

class SessionsPanelTest : public QObject {
  Q_OBJECT

 private slots:
  void searchStepAndDelete() {
    QTemporaryDir dir;
    ChatStore store(dir.path());
    SessionListModel sessions(&store);
    const ChatRecord lighthouse = chat("Lighthouse", "Who kept the light?", 30);
    const ChatRecord harbour = chat("Harbour", "When did the boat come?", 20);
    const ChatRecord storm = chat("Storm", "What broke in the storm?", 10);
    for (const ChatRecord& record : {lighthouse, harbour, storm}) QVERIFY(sessions.upsert(record));

    SessionsPanel panel(&sessions);
    panel.show();
    QSignalSpy opened(&panel, &SessionsPanel::openRequested);
    // Newest first: storm, harbour, lighthouse.
    panel.step(1);
    panel.step(1);
    panel.step(1);
    panel.step(1);  // stays on the last one
    panel.step(-1);
    QCOMPARE(opened.size(), 5);
    const QStringList expected = {storm.id, harbour.id, lighthouse.id, lighthouse.id, harbour.id};
    for (int i = 0; i < opened.size(); ++i) QCOMPARE(opened[i][0].toString(), expected[i]);

    // A word from a question finds its chat only.
    panel.searchBox()->setText(QStringLiteral("boat"));
    QCOMPARE(panel.list()->model()->rowCount(), 1);
    QCOMPARE(panel.list()->model()->index(0, 0).data().toString(), QStringLiteral("Harbour"));
    panel.searchBox()->clear();
    QCOMPARE(panel.list()->model()->rowCount(), 3);

    // Delete asks first: Cancel keeps the chat, Yes removes it and its file.
    QSignalSpy deleted(&panel, &SessionsPanel::deleted);
    panel.select(storm.id);
    QCOMPARE(panel.selectedId(), storm.id);
    answer_next_message_box(QMessageBox::Cancel);
    panel.deleteSelected();
    QCOMPARE(deleted.size(), 0);
    QVERIFY(QFileInfo::exists(store.file_path(storm.id)));
    answer_next_message_box(QMessageBox::Yes);
    panel.deleteSelected();
    QCOMPARE(deleted.size(), 1);
    QCOMPARE(deleted[0][0].toString(), storm.id);
    QVERIFY(!QFileInfo::exists(store.file_path(storm.id)));
    QCOMPARE(sessions.rowCount(), 2);
  }
};

QTEST_MAIN(SessionsPanelTest)
#include "test_sessions_panel.moc"
