// ChatModel under QAbstractItemModelTester through a whole conversation: questions, a streamed
// answer, regenerate (truncate after the question), edit and resend.
#include <QAbstractItemModelTester>
#include <QSignalSpy>
#include <QTest>

#include "lwm/gui/chat_model.h"

using namespace lwm::gui;

class ChatModelTest : public QObject {
  Q_OBJECT

 private slots:
  void conversationKeepsTheModelConsistent() {
    ChatModel model;
    QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
    QSignalSpy changed(&model, &ChatModel::changed);

    QCOMPARE(model.appendQuestion(QStringLiteral("Where is the lighthouse?")), 0);
    QCOMPARE(model.record().title, QStringLiteral("Where is the lighthouse?"));
    QCOMPARE(model.beginAnswer(), 1);
    QVERIFY(model.answering());
    QVERIFY(model.index(1).data(ChatModel::StreamingRole).toBool());
    const QStringList pieces = {QStringLiteral("On "), QStringLiteral("Skerry "),
                                QStringLiteral("Point, "), QStringLiteral("see 0:42.")};
    QSignalSpy data_changed(&model, &QAbstractItemModel::dataChanged);
    for (const QString& piece : pieces) model.appendToAnswer(piece);
    QCOMPARE(data_changed.size(), pieces.size());
    QCOMPARE(model.index(1).data().toString(), pieces.join(QString()));
    QCOMPARE(model.index(1).data(ChatModel::RoleRole).toString(), QStringLiteral("assistant"));
    QCOMPARE(model.index(0).data(ChatModel::RoleRole).toString(), QStringLiteral("user"));

    AnswerStats stats;
    stats.generated_tokens = 4;
    stats.decode_tokens_per_s = 12.5;
    stats.time_to_first_token_s = 0.25;
    model.finishAnswer(stats, AnswerEnd::stopped);
    QVERIFY(!model.answering());
    const QString summary = model.index(1).data(ChatModel::StatsRole).toString();
    QVERIFY2(summary.contains(QStringLiteral("12.5 tok/s")) &&
                 summary.contains(QStringLiteral("first token 0.25 s")) &&
                 summary.contains(QStringLiteral("stopped")),
             qPrintable(summary));
    QCOMPARE(model.index(1).data(ChatModel::EndRole).toInt(), static_cast<int>(AnswerEnd::stopped));
    QCOMPARE(model.record().messages[1].stats.generated_tokens, 4);
    // Text after the answer ended is not appended anywhere.
    model.appendToAnswer(QStringLiteral("late"));
    QCOMPARE(model.index(1).data().toString(), pieces.join(QString()));

    // A second exchange, then regenerate: the last question stays, its answer goes.
    model.appendQuestion(QStringLiteral("And the keeper?"));
    model.beginAnswer();
    model.appendToAnswer(QStringLiteral("Maren."));
    model.finishAnswer({}, AnswerEnd::finished);
    QCOMPARE(model.rowCount(), 4);
    QCOMPARE(model.lastQuestionRow(), 2);
    model.truncateAfter(model.lastQuestionRow());
    QCOMPARE(model.rowCount(), 3);
    QCOMPARE(model.index(2).data().toString(), QStringLiteral("And the keeper?"));

    // Edit and resend the first question: everything after it goes.
    QVERIFY(!model.editQuestion(1, QStringLiteral("not a question row")));
    QVERIFY(model.editQuestion(0, QStringLiteral("Where exactly is it?")));
    QCOMPARE(model.rowCount(), 1);
    QCOMPARE(model.index(0).data(ChatModel::TextRole).toString(),
             QStringLiteral("Where exactly is it?"));
    QVERIFY(changed.size() >= 5);

    // A failed answer keeps its sentence.
    model.beginAnswer();
    model.finishAnswer({}, AnswerEnd::failed, QStringLiteral("The model ran out of context."));
    QCOMPARE(model.index(1).data(ChatModel::ErrorRole).toString(),
             QStringLiteral("The model ran out of context."));

    // Replacing the record resets the model.
    ChatRecord other;
    other.title = QStringLiteral("Other");
    other.messages.append(ChatMessage{});
    model.setRecord(other);
    QCOMPARE(model.rowCount(), 1);
    QCOMPARE(model.record().title, QStringLiteral("Other"));
    QVERIFY(!model.index(5).isValid());
  }
};

QTEST_GUILESS_MAIN(ChatModelTest)
#include "test_chat_model.moc"
