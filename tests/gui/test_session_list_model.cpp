// SessionListModel and SessionFilterModel under QAbstractItemModelTester while chats are added,
// updated, renamed and removed at random; the order, the filter and the store are checked
// against independent references after every step.
#include <QAbstractItemModelTester>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>
#include <algorithm>

#include "gui_test_support.h"
#include "lwm/gui/session_list_model.h"

using namespace lwm::gui;
using lwm::gui::test::first_difference;
using lwm::gui::test::random_chat;

namespace {

using Tester = QAbstractItemModelTester;

// The expected order, computed independently of the model: by `updated` descending, then id.
QStringList expected_order(QList<ChatRecord> chats) {
  std::stable_sort(chats.begin(), chats.end(), [](const ChatRecord& a, const ChatRecord& b) {
    return a.updated.toMSecsSinceEpoch() != b.updated.toMSecsSinceEpoch()
               ? a.updated.toMSecsSinceEpoch() > b.updated.toMSecsSinceEpoch()
               : a.id < b.id;
  });
  QStringList ids;
  for (const ChatRecord& chat : chats) ids << chat.id;
  return ids;
}

// A reference search: case-folded substring tests, words split on spaces.
bool reference_match(const ChatRecord& chat, const QString& query) {
  QStringList haystack{chat.title.toCaseFolded(),
                       chat.source_path.mid(chat.source_path.lastIndexOf('/') + 1).toCaseFolded()};
  for (const ChatMessage& message : chat.messages) haystack << message.text.toCaseFolded();
  for (const QString& word : query.toCaseFolded().split(' ', Qt::SkipEmptyParts)) {
    if (std::none_of(haystack.cbegin(), haystack.cend(),
                     [&](const QString& text) { return text.contains(word); })) {
      return false;
    }
  }
  return true;
}

QStringList ids_of(const QAbstractItemModel& model) {
  QStringList ids;
  for (int row = 0; row < model.rowCount(); ++row) {
    ids << model.index(row, 0).data(SessionListModel::IdRole).toString();
  }
  return ids;
}

// A word from a random field of a random chat, so queries hit as often as they miss.
QString random_query(std::mt19937_64& rng, const QList<ChatRecord>& chats) {
  if (chats.isEmpty() || std::bernoulli_distribution(0.2)(rng)) return "zzqx";
  const ChatRecord& chat =
      chats[std::uniform_int_distribution<qsizetype>(0, chats.size() - 1)(rng)];
  QString text = chat.title;
  if (!chat.messages.isEmpty() && std::bernoulli_distribution(0.5)(rng)) {
    text = chat.messages[std::uniform_int_distribution<qsizetype>(0, chat.messages.size() - 1)(rng)]
               .text;
  }
  text = text.simplified();
  if (text.isEmpty()) return {};
  // Three code points, not UTF-16 units: nobody types half a surrogate pair.
  const QList<uint> code_points = text.toUcs4();
  const qsizetype start = std::uniform_int_distribution<qsizetype>(0, code_points.size() - 1)(rng);
  const QList<uint> part = code_points.mid(start, 3);
  QString word =
      QString::fromUcs4(reinterpret_cast<const char32_t*>(part.data()), part.size()).trimmed();
  // Random case: the search ignores it.
  return std::bernoulli_distribution(0.5)(rng) ? word.toUpper() : word;
}

}  // namespace

class SessionListModelTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    test::log_seed("gui_session_list_tests");
  }

  void random_edits_keep_model_proxy_and_store_consistent() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    ChatStore store(dir.path());
    SessionListModel model(&store);
    SessionFilterModel filter;
    filter.setSourceModel(&model);
    Tester model_tester(&model, Tester::FailureReportingMode::QtTest);
    Tester filter_tester(&filter, Tester::FailureReportingMode::QtTest);
    QSignalSpy errors(&model, &SessionListModel::error_occurred);

    QList<ChatRecord> reference;
    const QDateTime base = QDateTime::currentDateTimeUtc();
    // Few distinct times, so ties (ordered by id) happen.
    auto random_updated = [&] {
      return base.addSecs(std::uniform_int_distribution<int>(0, 40)(rng));
    };
    for (int step = 0; step < 300; ++step) {
      const int action = std::uniform_int_distribution<int>(0, 9)(rng);
      if (reference.isEmpty() || action < 3) {  // a new chat
        ChatRecord chat = random_chat(rng, std::uniform_int_distribution<int>(0, 6)(rng));
        chat.updated = random_updated();
        QVERIFY(model.upsert(chat));
        reference.append(chat);
      } else {
        const qsizetype i = std::uniform_int_distribution<qsizetype>(0, reference.size() - 1)(rng);
        ChatRecord& chat = reference[i];
        if (action < 6) {  // an answer arrived: more messages, newer time
          chat.messages.append(random_chat(rng, 2).messages);
          chat.updated = random_updated();
          QVERIFY(model.upsert(chat));
        } else if (action < 8) {  // renamed, through setData as the view's editor does
          const QString title = "Chat " + test::random_text(rng, 16) + "x";
          QVERIFY(model.setData(model.index(model.row_of(chat.id)), title, Qt::EditRole));
          chat.title = title.trimmed();
        } else {
          QVERIFY(model.remove(chat.id));
          reference.removeAt(i);
        }
      }
      if (step % 10 == 0) filter.set_query(random_query(rng, reference));

      QCOMPARE(ids_of(model), expected_order(reference));
      QStringList expected_filtered;
      for (const QString& id : expected_order(reference)) {
        const auto chat = std::find_if(reference.cbegin(), reference.cend(),
                                       [&](const ChatRecord& c) { return c.id == id; });
        if (reference_match(*chat, filter.query())) expected_filtered << id;
      }
      QVERIFY2(ids_of(filter) == expected_filtered,
               qPrintable(QString("step %1, query \"%2\" (%3): %4 rows, expected %5")
                              .arg(step)
                              .arg(filter.query(), QString::number(filter.query().size()))
                              .arg(ids_of(filter).size())
                              .arg(expected_filtered.size())));
    }
    QCOMPARE(errors.count(), 0);

    // Every change reached the disk: a fresh model over the same folder shows the same list.
    SessionListModel reloaded(&store);
    Tester reloaded_tester(&reloaded, Tester::FailureReportingMode::QtTest);
    QVERIFY(reloaded.reload().isEmpty());
    QCOMPARE(ids_of(reloaded), ids_of(model));
    for (const ChatRecord& chat : reference) {
      QVERIFY2(first_difference(chat, *reloaded.record(chat.id)).isEmpty(),
               qPrintable(first_difference(chat, *reloaded.record(chat.id))));
    }
  }

  void roles_show_the_summary() {
    std::mt19937_64 rng(test::test_seed());
    SessionListModel model;
    ChatRecord chat = random_chat(rng, 5);  // user, assistant, user, assistant, user
    chat.source_kind = SourceKind::book;
    chat.source_path = "/books/War and Peace.epub";
    model.upsert(chat);
    const QModelIndex index = model.index(0);
    QCOMPARE(index.data(Qt::DisplayRole).toString(), chat.title);
    QCOMPARE(index.data(SessionListModel::TitleRole).toString(), chat.title);
    QCOMPARE(index.data(SessionListModel::IdRole).toString(), chat.id);
    QCOMPARE(index.data(SessionListModel::SourceKindRole).toInt(), int(SourceKind::book));
    QCOMPARE(index.data(SessionListModel::SourcePathRole).toString(), chat.source_path);
    QCOMPARE(index.data(SessionListModel::UpdatedRole).toDateTime(), chat.updated);
    QCOMPARE(index.data(SessionListModel::MessageCountRole).toInt(), 5);
    QCOMPARE(index.data(SessionListModel::LastQuestionRole).toString(), chat.messages[4].text);
    QVERIFY(model.flags(index) & Qt::ItemIsEditable);
    QVERIFY(model.roleNames().value(SessionListModel::LastQuestionRole) == "lastQuestion");
  }

  void search_matches_title_file_name_and_messages_ignoring_case() {
    SessionListModel model;
    SessionFilterModel filter;
    filter.setSourceModel(&model);
    Tester tester(&filter, Tester::FailureReportingMode::QtTest);
    ChatRecord a;
    a.id = "a";
    a.title = "Cooking show";
    a.source_path = "/videos/Kitchen Tour.MP4";
    a.messages = {
        ChatMessage{ChatMessage::Role::user, "Where is the Ümlaut knife?", {}, {}, {}, {}}};
    ChatRecord b;
    b.id = "b";
    b.title = "Novel";
    b.source_path = "/books/kitchen/moby.epub";  // a folder name is not the file name
    model.set_records({a, b});
    const QList<std::pair<QString, QStringList>> cases{
        {"", {"a", "b"}}, {"COOKING", {"a"}},    {"kitchen", {"a"}},    {"ümlaut", {"a"}},
        {"MOBY", {"b"}},  {"novel moby", {"b"}}, {"novel cooking", {}}, {"  show   knife ", {"a"}}};
    for (const auto& [query, expected] : cases) {
      filter.set_query(query);
      QCOMPARE(ids_of(filter), expected);
    }
    // A rename that makes a chat match shows it without touching the filter.
    filter.set_query("whale");
    QCOMPARE(ids_of(filter), QStringList{});
    QVERIFY(model.rename("b", "Whale story"));
    QCOMPARE(ids_of(filter), QStringList{"b"});
  }

  void empty_titles_and_failed_writes_leave_the_model_unchanged() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    ChatStore store(dir.path() + "/chats");
    SessionListModel model(&store);
    Tester tester(&model, Tester::FailureReportingMode::QtTest);
    QSignalSpy errors(&model, &SessionListModel::error_occurred);
    const ChatRecord chat = random_chat(rng, 2);
    QVERIFY(model.upsert(chat));

    QVERIFY(!model.setData(model.index(0), "   ", Qt::EditRole));
    QCOMPARE(errors.count(), 1);
    QCOMPARE(model.index(0).data().toString(), chat.title);
    QVERIFY(!model.setData(model.index(0), "x", SessionListModel::UpdatedRole));

    // The folder becomes unwritable: it is replaced by a file.
    QVERIFY(QDir(dir.path() + "/chats").removeRecursively());
    QVERIFY(test::write_file(dir.path() + "/chats"));
    ChatRecord newer = chat;
    newer.title = "newer";
    QVERIFY(!model.upsert(newer));
    QVERIFY(!model.rename(chat.id, "renamed"));
    QVERIFY(!model.upsert(random_chat(rng, 1)));
    QCOMPARE(errors.count(), 4);
    QVERIFY(errors.last().front().toString().contains("chats"));
    QCOMPARE(model.rowCount(), 1);
    QCOMPARE(model.index(0).data().toString(), chat.title);
  }

  void reload_reports_damaged_files() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    ChatStore store(dir.path());
    QVERIFY(store.save(random_chat(rng, 3)));
    QVERIFY(test::write_file(store.file_path("bad"), "{\"format\":"));
    SessionListModel model(&store);
    Tester tester(&model, Tester::FailureReportingMode::QtTest);
    const QList<StoreProblem> problems = model.reload();
    QCOMPARE(problems.size(), 1);
    QCOMPARE(problems.front().file, store.file_path("bad"));
    QCOMPARE(model.rowCount(), 1);
  }
};

QTEST_GUILESS_MAIN(SessionListModelTest)
#include "test_session_list_model.moc"
