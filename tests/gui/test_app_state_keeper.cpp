// AppStateKeeper: a crash is told from a clean quit, the place to reopen survives both, bursts
// of changes are saved once after a quiet moment, and failed writes are reported and retried.
#include <QDir>
#include <QFile>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>

#include "gui_test_support.h"
#include "lwm/gui/app_state_keeper.h"

using namespace lwm::gui;

class AppStateKeeperTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    test::log_seed("gui_state_keeper_tests");
  }

  void a_crash_is_told_from_a_clean_quit() {
    QTemporaryDir dir;
    ChatStore store(dir.path());
    {
      AppStateKeeper first_run(&store, 50);
      QVERIFY(first_run.start().open_chat_id.isEmpty());
      QVERIFY(!first_run.last_run_crashed());  // no state at all: a first start
      QVERIFY(store.load_state().running);     // written at once, before any change
      first_run.set_open_chat("chat-1");
      first_run.set_open_file("/videos/a.mp4");
      QVERIFY(first_run.finish());
    }
    QVERIFY(!store.load_state().running);
    {
      AppStateKeeper second_run(&store, 50);
      const AppState reopened = second_run.start();
      QVERIFY(!second_run.last_run_crashed());
      QCOMPARE(reopened.open_chat_id, QString("chat-1"));
      QCOMPARE(reopened.open_file, QString("/videos/a.mp4"));
      second_run.set_open_chat("chat-2");
      // The process dies here: no finish(). The pending change was flushed by the destructor
      // in this test; a real crash may lose at most the last delay_ms of changes.
    }
    AppStateKeeper third_run(&store, 50);
    const AppState reopened = third_run.start();
    QVERIFY(third_run.last_run_crashed());
    QCOMPARE(reopened.open_chat_id, QString("chat-2"));
    QVERIFY(third_run.state().running);
  }

  void a_burst_of_changes_is_saved_once_after_a_quiet_moment() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    ChatStore store(dir.path());
    AppStateKeeper keeper(&store, 200);
    keeper.start();
    QCOMPARE(keeper.saves(), 1);
    QByteArray geometry;
    for (int i = 0; i < 50; ++i) {  // a window being resized
      geometry = QByteArray::number(quint64(rng()));
      keeper.set_window(geometry, "docks");
    }
    QCOMPARE(keeper.saves(), 1);  // nothing written yet
    QVERIFY(store.load_state().window_geometry.isEmpty());
    QTRY_COMPARE(keeper.saves(), 2);
    QCOMPARE(store.load_state().window_geometry, geometry);
    QCOMPARE(store.load_state().window_state, QByteArray("docks"));
    // The same values again are no change at all.
    keeper.set_window(geometry, "docks");
    QTest::qWait(300);
    QCOMPARE(keeper.saves(), 2);
    // flush() writes at once.
    keeper.set_open_chat("now");
    QVERIFY(keeper.flush());
    QCOMPARE(keeper.saves(), 3);
    QCOMPARE(store.load_state().open_chat_id, QString("now"));
    QVERIFY(keeper.flush());  // nothing pending: no write
    QCOMPARE(keeper.saves(), 3);
  }

  void a_failed_write_is_reported_and_retried() {
    QTemporaryDir dir;
    QVERIFY(test::write_file(dir.path() + "/chats"));  // a file where the folder should be
    ChatStore store(dir.path() + "/chats");
    AppStateKeeper keeper(&store, 20);
    QSignalSpy errors(&keeper, &AppStateKeeper::error_occurred);
    keeper.start();
    QCOMPARE(errors.count(), 1);
    QVERIFY(errors.front().front().toString().contains("chats"));
    keeper.set_open_chat("x");
    QVERIFY(!keeper.flush());
    QCOMPARE(errors.count(), 2);
    QVERIFY(QFile::remove(dir.path() + "/chats"));  // the disk is writable again
    QVERIFY(keeper.flush());                        // still dirty: it writes now
    QCOMPARE(store.load_state().open_chat_id, QString("x"));
    QVERIFY(store.load_state().running);
  }

  void a_damaged_state_file_is_reported_and_the_app_starts_fresh() {
    QTemporaryDir dir;
    ChatStore store(dir.path());
    QVERIFY(test::write_file(store.state_path(),
                             "{\"format\": \"lwm-studio-state\", \"version\": 1, \"open_chat"));
    AppStateKeeper keeper(&store);
    QSignalSpy problems(&keeper, &AppStateKeeper::problem_found);
    const AppState state = keeper.start();
    QCOMPARE(problems.count(), 1);
    QVERIFY(!keeper.last_run_crashed());
    QVERIFY(state.open_chat_id.isEmpty());
    QVERIFY(QFile::exists(store.state_path() + ".corrupt"));
    QVERIFY(store.load_state().running);
  }
};

QTEST_GUILESS_MAIN(AppStateKeeperTest)
#include "test_app_state_keeper.moc"
