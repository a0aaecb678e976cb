// ChatStore: round trips of random chats, atomic saves that survive a crash mid-write, damaged
// files moved aside and reported, remove/rename, and the app state.
#include <sys/wait.h>
#include <unistd.h>

#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>
#include <algorithm>
#include <csignal>

#include "atomic_save.h"
#include "chat_json.h"
#include "gui_test_support.h"
#include "lwm/gui/chat_store.h"

using namespace lwm::gui;
using lwm::gui::test::first_difference;
using lwm::gui::test::random_chat;
using lwm::gui::test::read_file;
using lwm::gui::test::write_file;

namespace {

// Runs `save` in a child process that is killed between writing and committing, as a crash
// (or a power cut) mid-write would.
void save_and_crash(ChatStore& store, const ChatRecord& record) {
  const pid_t child = fork();
  QVERIFY(child >= 0);
  if (child == 0) {
    set_crash_point_for_tests([] { ::raise(SIGKILL); });
    store.save(record);
    ::_exit(0);  // not reached: the crash point kills the process
  }
  int status = 0;
  QCOMPARE(waitpid(child, &status, 0), child);
  QVERIFY(WIFSIGNALED(status));
  QCOMPARE(WTERMSIG(status), SIGKILL);
}

}  // namespace

class ChatStoreTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    test::log_seed("gui_store_tests");
  }

  void default_directory_is_the_xdg_data_folder() {
    const QString data = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation);
    QVERIFY(!data.isEmpty());
    QCOMPARE(ChatStore::default_directory(), data + "/chats");
    // Test mode keeps tests out of the user's real data.
    QVERIFY(data.contains("qttest"));
  }

  void new_ids_are_valid_and_distinct() {
    const QString a = ChatStore::new_id();
    QVERIFY(is_valid_chat_id(a));
    QVERIFY(a != ChatStore::new_id());
    QVERIFY(!a.contains('{'));
  }

  void random_chats_round_trip() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    ChatStore store(dir.path() + "/chats");  // created on the first save
    QList<ChatRecord> saved;
    for (int i = 0; i < 24; ++i) {
      const int messages =
          i == 0 ? 0 : std::uniform_int_distribution<int>(1, i < 20 ? 30 : 400)(rng);
      saved.append(random_chat(rng, messages));
      QString error;
      QVERIFY2(store.save(saved.back(), &error), qPrintable(error));
    }
    for (const ChatRecord& record : saved) {
      QString error;
      const std::optional<ChatRecord> loaded = store.load(record.id, &error);
      QVERIFY2(loaded, qPrintable(error));
      const QString difference = first_difference(record, *loaded);
      QVERIFY2(difference.isEmpty(), qPrintable(difference));
    }
    ChatStore::LoadResult all = store.load_all();
    QVERIFY(all.problems.isEmpty());
    QCOMPARE(all.chats.size(), saved.size());
    for (const ChatRecord& loaded : all.chats) {
      const auto original = std::find_if(saved.cbegin(), saved.cend(),
                                         [&](const ChatRecord& r) { return r.id == loaded.id; });
      QVERIFY(original != saved.cend());
      QVERIFY(first_difference(*original, loaded).isEmpty());
    }
  }

  void the_file_names_its_format_and_version() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    ChatStore store(dir.path());
    const ChatRecord record = random_chat(rng, 2);
    QVERIFY(store.save(record));
    QCOMPARE(store.file_path(record.id), dir.path() + "/" + record.id + ".chat.json");
    const QJsonObject root =
        QJsonDocument::fromJson(read_file(store.file_path(record.id))).object();
    QCOMPARE(root.value("format").toString(), QString("lwm-studio-chat"));
    QCOMPARE(root.value("version").toInt(), 1);
    QCOMPARE(root.value("messages").toArray().size(), 2);
  }

  void a_crash_mid_write_leaves_the_previous_version() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    ChatStore store(dir.path());
    const ChatRecord before = random_chat(rng, 6);
    QVERIFY(store.save(before));
    ChatRecord after = before;
    after.messages.append(random_chat(rng, 40).messages);  // a big write, killed before commit
    save_and_crash(store, after);

    std::optional<ChatRecord> loaded = store.load(before.id);
    QVERIFY(loaded);
    QVERIFY(first_difference(before, *loaded).isEmpty());
    ChatStore::LoadResult all = store.load_all();
    QCOMPARE(all.chats.size(), 1);
    QVERIFY(all.problems.isEmpty());
    // Whatever temporary file the dead process left is gone after load_all (on Linux QSaveFile
    // writes an unnamed O_TMPFILE, so there is none; the next test plants named ones).
    QCOMPARE(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden),
             QStringList{before.id + ".chat.json"});
    // And the next save works normally.
    QVERIFY(store.save(after));
    QVERIFY(first_difference(after, *store.load(after.id)).isEmpty());
  }

  void leftover_partial_temp_files_are_ignored_and_cleaned() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    ChatStore store(dir.path());
    const ChatRecord record = random_chat(rng, 4);
    QVERIFY(store.save(record));
    const QByteArray bytes = read_file(store.file_path(record.id));
    // The names QSaveFile and core's AtomicFileWriter give their temporary files.
    QVERIFY(write_file(store.file_path(record.id) + ".aB3xYz", bytes.left(bytes.size() / 2)));
    QVERIFY(write_file(store.file_path("other") + ".Q1w2E3", bytes.left(10)));
    QVERIFY(write_file(store.file_path(record.id) + ".tmp-4242", QByteArray()));
    QVERIFY(write_file(store.state_path() + ".zzzzzz", "{"));
    // Not ours: left alone.
    QVERIFY(write_file(dir.path() + "/notes.txt.abcdef", "keep"));

    ChatStore::LoadResult all = store.load_all();
    QVERIFY(all.problems.isEmpty());
    QCOMPARE(all.chats.size(), 1);
    QVERIFY(first_difference(record, all.chats.front()).isEmpty());
    QStringList left = QDir(dir.path()).entryList(QDir::Files | QDir::Hidden);
    left.sort();
    QCOMPARE(left, (QStringList{record.id + ".chat.json", "notes.txt.abcdef"}));
  }

  void damaged_files_are_moved_aside_and_reported() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    ChatStore store(dir.path());
    const ChatRecord good = random_chat(rng, 8);
    QVERIFY(store.save(good));
    const QByteArray bytes = read_file(store.file_path(good.id));

    // A truncated file (cut at a random point), a newer version, not JSON, another format, an
    // empty file, a file whose id disagrees with its name and one with a damaged message.
    const qsizetype cut = std::uniform_int_distribution<qsizetype>(1, bytes.size() - 2)(rng);
    QByteArray newer = bytes;
    newer.replace("\"version\": 1", "\"version\": 7");
    QByteArray other_format = bytes;
    other_format.replace("lwm-studio-chat", "something-else");
    QByteArray bad_message = bytes;
    bad_message.replace("\"role\": \"assistant\"", "\"role\": \"narrator\"");
    const QList<std::pair<QString, QByteArray>> damaged{{"truncated", bytes.left(cut)},
                                                        {"newer", newer},
                                                        {"binary", QByteArray("\x00\xff\x13", 3)},
                                                        {"other-format", other_format},
                                                        {"empty", QByteArray()},
                                                        {"wrong-id", bytes},
                                                        {"bad-message", bad_message}};
    for (const auto& [id, contents] : damaged) QVERIFY(write_file(store.file_path(id), contents));
    // A previous .corrupt of the same name is kept, not overwritten.
    QVERIFY(write_file(store.file_path("truncated") + ".corrupt", "older"));

    ChatStore::LoadResult all = store.load_all();
    QCOMPARE(all.chats.size(), 1);
    QVERIFY(first_difference(good, all.chats.front()).isEmpty());
    QCOMPARE(all.problems.size(), damaged.size());
    for (const auto& [id, contents] : damaged) {
      const QString path = store.file_path(id);
      QVERIFY2(!QFile::exists(path), qPrintable(path));
      const auto problem = std::find_if(all.problems.cbegin(), all.problems.cend(),
                                        [&](const StoreProblem& p) { return p.file == path; });
      QVERIFY2(problem != all.problems.cend(), qPrintable(id));
      // A sentence that names the file and where it went.
      QVERIFY2(problem->message.contains(QDir::toNativeSeparators(path)),
               qPrintable(problem->message));
      QVERIFY2(problem->message.contains(".corrupt"), qPrintable(problem->message));
      QVERIFY(problem->message.endsWith('.'));
      const QString aside = id == "truncated" ? path + ".2.corrupt" : path + ".corrupt";
      QCOMPARE(read_file(aside), contents);
    }
    QCOMPARE(read_file(store.file_path("truncated") + ".corrupt"), QByteArray("older"));
    const auto newer_problem =
        std::find_if(all.problems.cbegin(), all.problems.cend(),
                     [&](const StoreProblem& p) { return p.file == store.file_path("newer"); });
    QVERIFY(newer_problem->message.contains("newer LWM Studio"));
    QVERIFY(newer_problem->message.contains("version 7"));
    // Nothing is reported twice: the next load is clean.
    QVERIFY(store.load_all().problems.isEmpty());
  }

  void an_oversized_file_is_moved_aside_without_reading_it() {
    QTemporaryDir dir;
    ChatStore store(dir.path());
    QFile huge(store.file_path("huge"));
    QVERIFY(huge.open(QIODevice::WriteOnly));
    QVERIFY(huge.resize(qint64(300) << 20));  // sparse: no disk space, and never read
    huge.close();
    QString error;
    QVERIFY(!store.load("huge", &error));
    QVERIFY2(error.contains("300 MiB"), qPrintable(error));
    const ChatStore::LoadResult all = store.load_all();
    QCOMPARE(all.problems.size(), 1);
    QVERIFY(all.problems.front().message.contains("larger than any chat"));
    QVERIFY(QFile::exists(store.file_path("huge") + ".corrupt"));
  }

  void load_reports_a_damaged_file_without_moving_it() {
    QTemporaryDir dir;
    ChatStore store(dir.path());
    QVERIFY(write_file(store.file_path("broken"), "{\"format\": \"lwm-studio-chat\", \"versi"));
    QString error;
    QVERIFY(!store.load("broken", &error));
    QVERIFY2(error.contains("broken.chat.json") && error.contains("not valid JSON"),
             qPrintable(error));
    QVERIFY(QFile::exists(store.file_path("broken")));
    QVERIFY(!store.load("missing", &error));
    QVERIFY(error.contains("missing.chat.json"));
  }

  void ids_that_are_not_file_names_are_refused() {
    QTemporaryDir dir;
    ChatStore store(dir.path());
    ChatRecord record;
    for (const QString& id : {QString(), QString("../escape"), QString("a/b"), QString("x y"),
                              QString("a").repeated(129)}) {
      record.id = id;
      QString error;
      QVERIFY(!store.save(record, &error));
      QVERIFY(error.contains("not a chat id"));
      QVERIFY(!store.load(id));
      QVERIFY(!store.remove(id));
    }
    QVERIFY(QDir(dir.path()).entryList(QDir::AllEntries | QDir::NoDotAndDotDot).isEmpty());
  }

  void remove_deletes_the_chat_and_its_cache() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    ChatStore store(dir.path());
    const ChatRecord a = random_chat(rng, 2);
    const ChatRecord b = random_chat(rng, 2);
    QVERIFY(store.save(a));
    QVERIFY(store.save(b));
    QVERIFY(QDir().mkpath(store.cache_directory(a.id) + "/kv"));
    QVERIFY(write_file(store.cache_directory(a.id) + "/kv/layer0.bin", "cache"));
    QString error;
    QVERIFY2(store.remove(a.id, &error), qPrintable(error));
    QVERIFY(!QFile::exists(store.file_path(a.id)));
    QVERIFY(!QFileInfo::exists(store.cache_directory(a.id)));
    QVERIFY(!store.load(a.id));
    QVERIFY(store.load(b.id));
    QVERIFY(store.remove(a.id));  // already gone: not an error
    ChatStore::LoadResult all = store.load_all();
    QCOMPARE(all.chats.size(), 1);
    QCOMPARE(all.chats.front().id, b.id);
  }

  void rename_changes_only_the_title() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    ChatStore store(dir.path());
    const ChatRecord record = random_chat(rng, 5);
    QVERIFY(store.save(record));
    const QString title = test::random_text(rng, 30) + QString::fromUtf8(" — ünïcødé 🎬");
    QVERIFY(store.rename(record.id, title));
    ChatRecord expected = record;
    expected.title = title;
    QVERIFY(first_difference(expected, *store.load(record.id)).isEmpty());
    QString error;
    QVERIFY(!store.rename("nope", "x", &error));
    QVERIFY(error.contains("nope.chat.json"));
  }

  void a_failed_save_keeps_the_previous_version() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    ChatStore store(dir.path() + "/chats");
    ChatRecord record = random_chat(rng, 3);
    QVERIFY(store.save(record));
    // A folder where the temporary file would go is impossible to fake portably; a store whose
    // folder is a regular file fails the same way for every write.
    QVERIFY(write_file(dir.path() + "/blocked", "a file, not a folder"));
    ChatStore blocked(dir.path() + "/blocked");
    QString error;
    QVERIFY(!blocked.save(record, &error));
    QVERIFY2(error.contains("blocked"), qPrintable(error));
    QVERIFY(!blocked.save_state(AppState{}, &error));
    QCOMPARE(read_file(dir.path() + "/blocked"), QByteArray("a file, not a folder"));
  }

  void one_instance_owns_the_folder() {
    QTemporaryDir dir;
    const QString folder = dir.path() + "/chats";
    ChatStore first(folder);
    QVERIFY(!first.is_locked());
    QString error;
    QVERIFY2(first.try_lock(&error), qPrintable(error));
    QVERIFY(first.try_lock());  // again: still ours
    QVERIFY(first.is_locked());
    // Another instance is another process: the lock is held by a live one.
    const pid_t child = fork();
    QVERIFY(child >= 0);
    if (child == 0) {
      ChatStore second(folder);
      QString message;
      const bool locked = second.try_lock(&message);
      const bool names_holder = message.contains(QString::number(::getppid()));
      ::_exit(!locked && names_holder ? 0 : 1);
    }
    int status = 0;
    QCOMPARE(waitpid(child, &status, 0), child);
    QVERIFY(WIFEXITED(status));
    QCOMPARE(WEXITSTATUS(status), 0);
    // The chats folder is usable as usual, and the lock file is not mistaken for anything.
    QVERIFY(first.load_all().problems.isEmpty());
  }

  void a_lock_left_by_a_dead_process_is_taken_over() {
    QTemporaryDir dir;
    const pid_t child = fork();
    QVERIFY(child >= 0);
    if (child == 0) {
      ChatStore crashed(dir.path());
      ::_exit(crashed.try_lock() ? 0 : 1);  // exits without unlocking, as a crash would
    }
    int status = 0;
    QCOMPARE(waitpid(child, &status, 0), child);
    QCOMPARE(WEXITSTATUS(status), 0);
    QVERIFY(QFile::exists(dir.path() + "/chats.lock"));
    ChatStore next(dir.path());
    QString error;
    QVERIFY2(next.try_lock(&error), qPrintable(error));
  }

  void app_state_round_trips() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    ChatStore store(dir.path());
    StoreProblem problem;
    AppState state = store.load_state(&problem);  // none yet: defaults, no problem
    QVERIFY(state.open_chat_id.isEmpty());
    QVERIFY(!state.running);
    QVERIFY(problem.message.isEmpty());

    state.open_chat_id = ChatStore::new_id();
    state.open_file = "/videos/" + test::random_text(rng, 20) + ".mkv";
    for (int i = 0; i < 300; ++i) state.window_geometry.append(char(rng()));
    for (int i = 0; i < 77; ++i) state.window_state.append(char(rng()));
    state.running = true;
    QString error;
    QVERIFY2(store.save_state(state, &error), qPrintable(error));
    const AppState loaded = store.load_state(&problem);
    QCOMPARE(loaded.open_chat_id, state.open_chat_id);
    QCOMPARE(loaded.open_file, state.open_file);
    QCOMPARE(loaded.window_geometry, state.window_geometry);
    QCOMPARE(loaded.window_state, state.window_state);
    QCOMPARE(loaded.running, true);
    // The state file is not mistaken for a chat.
    QVERIFY(store.load_all().chats.isEmpty());
    QVERIFY(store.load_all().problems.isEmpty());
  }

  void a_damaged_state_file_is_moved_aside() {
    QTemporaryDir dir;
    ChatStore store(dir.path());
    AppState state;
    state.open_chat_id = "abc";
    QVERIFY(store.save_state(state));
    const QByteArray bytes = read_file(store.state_path());
    QVERIFY(write_file(store.state_path(), bytes.left(bytes.size() / 2)));
    StoreProblem problem;
    const AppState loaded = store.load_state(&problem);
    QVERIFY(loaded.open_chat_id.isEmpty());
    QVERIFY2(problem.message.contains("default layout"), qPrintable(problem.message));
    QCOMPARE(read_file(store.state_path() + ".corrupt"), bytes.left(bytes.size() / 2));
    QVERIFY(!QFile::exists(store.state_path()));
  }
};

QTEST_GUILESS_MAIN(ChatStoreTest)
#include "test_chat_store.moc"
