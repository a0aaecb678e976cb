// Chat export: the Markdown holds the title, the source and every question and answer with its
// statistics; the JSON is the store's file and reads back to the same chat.
#include <QDir>
#include <QFile>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>

#include "chat_json.h"
#include "gui_test_support.h"
#include "lwm/gui/chat_export.h"
#include "lwm/gui/chat_store.h"

using namespace lwm::gui;
using lwm::gui::test::first_difference;
using lwm::gui::test::random_chat;
using lwm::gui::test::read_file;

namespace {

ChatRecord sample_chat() {
  ChatRecord chat;
  chat.id = "sample";
  chat.title = "Kitchen tour";
  chat.model_dir = "/models/lwm-demo";
  chat.source_kind = SourceKind::video;
  chat.source_path = "/videos/kitchen `tour`.mp4";
  chat.source_sha256 = "ab12";
  chat.choices.frames = 64;
  chat.choices.devices = "cuda:0,1";
  chat.choices.kv_cache = "bf16";
  chat.created = QDateTime(QDate(2026, 11, 23), QTime(9, 30, 5), Qt::UTC);
  chat.updated = QDateTime(QDate(2026, 11, 23), QTime(9, 41, 0), Qt::UTC);
  ChatMessage question;
  question.text = "# What is on the table?\n- list it";
  question.time = chat.created;
  ChatMessage answer;
  answer.role = ChatMessage::Role::assistant;
  answer.text = "A **bowl** at [00:01:05](lwm://seek/65).";
  answer.end = AnswerEnd::stopped;
  answer.stats = {12345, 12000, 87, 0.4567, 2345.67, 21.26};
  ChatMessage second_question = question;
  second_question.text = "And then?";
  ChatMessage failed = answer;
  failed.text.clear();
  failed.end = AnswerEnd::failed;
  failed.error = "The GPU ran out of memory; use an 8-bit KV cache.";
  failed.stats = {};
  chat.messages = {question, answer, second_question, failed};
  return chat;
}

}  // namespace

class ChatExportTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    test::log_seed("gui_export_tests");
  }

  void markdown_holds_title_source_questions_answers_and_stats() {
    const ChatRecord chat = sample_chat();
    const QString markdown = chat_to_markdown(chat);
    QVERIFY(markdown.startsWith("# Kitchen tour\n"));
    QVERIFY(markdown.contains("- Source: video ``/videos/kitchen `tour`.mp4`` (SHA-256 ab12)"));
    QVERIFY(markdown.contains("- Model: `/models/lwm-demo`"));
    QVERIFY(markdown.contains(
        "64 frames, devices cuda:0,1, KV cache bf16, context sized to the source"));
    QVERIFY(markdown.contains("2026-11-23 09:30:05 UTC"));
    // The question's own '#' and '-' stay inside a quote, not headings of the export.
    QVERIFY(markdown.contains(
        "## Question 1\n\n*2026-11-23 09:30:05 UTC*\n\n> # What is on the table?\n> - list it\n"));
    QVERIFY(markdown.contains("## Question 2"));
    QVERIFY(!markdown.contains("## Question 3"));
    QVERIFY(markdown.contains("### Answer\n\nA **bowl** at [00:01:05](lwm://seek/65).\n"));
    QVERIFY2(
        markdown.contains("*12345 prompt tokens (12000 reused from the cache) · 87 generated · "
                          "first token after 0.46 s · prefill 2345.7 tokens/s · "
                          "decode 21.3 tokens/s · stopped by the user*"),
        qPrintable(markdown));
    QVERIFY(markdown.contains("**Error:** The GPU ran out of memory; use an 8-bit KV cache."));
    QVERIFY(markdown.contains("*failed*"));
  }

  void markdown_of_random_chats_has_every_message_in_order() {
    std::mt19937_64 rng(test::test_seed());
    for (int round = 0; round < 10; ++round) {
      const ChatRecord chat = random_chat(rng, std::uniform_int_distribution<int>(0, 40)(rng));
      const QString markdown = chat_to_markdown(chat);
      QCOMPARE(markdown.count("\n## Question "), (chat.messages.size() + 1) / 2);
      QCOMPARE(markdown.count("\n### Answer\n"), chat.messages.size() / 2);
      qsizetype position = 0;
      for (const ChatMessage& message : chat.messages) {
        if (message.role != ChatMessage::Role::assistant || message.text.isEmpty()) continue;
        const qsizetype found = markdown.indexOf(message.text, position);
        QVERIFY2(found >= position, "an answer is missing or out of order");
        position = found + message.text.size();
      }
    }
  }

  void json_export_is_the_store_file_and_reads_back() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    const ChatRecord chat = random_chat(rng, 12);
    ChatStore store(dir.path() + "/chats");
    QVERIFY(store.save(chat));
    const QString path = dir.path() + "/export/" + suggested_export_name(chat, "json");
    QString error;
    QVERIFY2(export_json(chat, path, &error), qPrintable(error));
    QCOMPARE(read_file(path), read_file(store.file_path(chat.id)));
    const std::optional<ChatRecord> back = chat_from_json_bytes(read_file(path), &error);
    QVERIFY2(back, qPrintable(error));
    QVERIFY(first_difference(chat, *back).isEmpty());
  }

  void markdown_export_writes_utf8_atomically() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    const ChatRecord chat = random_chat(rng, 6);
    const QString path = dir.path() + "/chat.md";
    QVERIFY(export_markdown(sample_chat(), path));
    QVERIFY(export_markdown(chat, path));  // over an existing file
    QCOMPARE(QString::fromUtf8(read_file(path)), chat_to_markdown(chat));
    QCOMPARE(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden), QStringList{"chat.md"});
  }

  void an_unwritable_path_is_reported() {
    QTemporaryDir dir;
    QVERIFY(test::write_file(dir.path() + "/file"));
    QString error;
    QVERIFY(!export_markdown(sample_chat(), dir.path() + "/file/chat.md", &error));
    QVERIFY2(error.contains(dir.path() + "/file"), qPrintable(error));
  }

  void suggested_names_are_safe_file_names() {
    ChatRecord chat;
    chat.title = "a/b\\c:d*e?f\"g<h>i|j\tk.";
    QCOMPARE(suggested_export_name(chat, "md"), QString("a_b_c_d_e_f_g_h_i_j k.md"));
    chat.title = "   ";
    QCOMPARE(suggested_export_name(chat, "json"), QString("chat.json"));
    chat.title = QString("ü").repeated(200);
    QCOMPARE(suggested_export_name(chat, "md"), QString("ü").repeated(80) + ".md");
  }
};

QTEST_GUILESS_MAIN(ChatExportTest)
#include "test_chat_export.moc"
