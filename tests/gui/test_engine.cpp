// The engine worker in its thread, driven only through Engine and observed through its queued
// signals: load (good and bad model folders), open, plan, ingest, cancel mid-prefill and resume,
// ask with streamed tokens equal to a direct lwm::Session run, stop mid-answer, and videos.
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>
#include <atomic>

#include "gui_test_support.h"
#include "lwm/book.h"
#include "lwm/gui/engine.h"
#include "lwm/model.h"
#include "lwm/session.h"
#include "lwm/tokenizer.h"

using namespace lwm::gui;

namespace {
constexpr int kTimeoutMs = 60000;
}

class EngineTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase();
  void badModelFolderIsAnErrorSignal();
  void badSourceIsAnErrorSignal();
  void planSaysWhatFitsAndWhatWillNot();
  void cancelledIngestResumesFromItsCache();
  void askStreamsTheSessionsAnswer();
  void stopEndsTheAnswerEarly();
  void videoIngestSamplesThumbnailsAndAnswers();

 private:
  void loadAndOpen(Engine& engine, const QString& model, const QString& source);
  QTemporaryDir dir_;
  QString text_model_;
  QString book_;
  quint64 seed_ = 0;
};

void EngineTest::initTestCase() {
  QVERIFY(dir_.isValid());
  seed_ = test::test_seed();
  test::log_seed("EngineTest");
  text_model_ = test::make_tiny_model(dir_, QStringLiteral("text-model"), false, seed_);
  book_ = test::write_book(dir_, 4, 6);
  QVERIFY(!book_.isEmpty());
}

void EngineTest::loadAndOpen(Engine& engine, const QString& model, const QString& source) {
  QSignalSpy loaded(&engine, &Engine::modelLoaded);
  QSignalSpy opened(&engine, &Engine::sourceOpened);
  QSignalSpy failed(&engine, &Engine::failed);
  engine.loadModel(model);
  engine.openSource(source);
  QTRY_VERIFY_WITH_TIMEOUT(opened.size() + failed.size() >= 1, kTimeoutMs);
  QVERIFY2(failed.isEmpty(), qPrintable(failed.value(0).value(1).toString()));
  QCOMPARE(loaded.size(), 1);
}

void EngineTest::badModelFolderIsAnErrorSignal() {
  Engine engine;
  QSignalSpy failed(&engine, &Engine::failed);
  QSignalSpy loaded(&engine, &Engine::modelLoaded);
  engine.loadModel(dir_.filePath(QStringLiteral("no-such-folder")));
  QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 1, kTimeoutMs);
  QVERIFY2(failed[0][1].toString().contains(QStringLiteral("does not exist")),
           qPrintable(failed[0][1].toString()));

  // A folder without config.json is not a model, and the sentence says what one holds.
  QTemporaryDir empty;
  engine.loadModel(empty.path());
  QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 2, kTimeoutMs);
  QVERIFY2(failed[1][1].toString().contains(QStringLiteral("config.json")),
           qPrintable(failed[1][1].toString()));

  // A config.json whose weights are missing: the core's reason reaches the user.
  QFile::copy(text_model_ + QStringLiteral("/config.json"), empty.filePath("config.json"));
  QFile::copy(text_model_ + QStringLiteral("/tokenizer.model"), empty.filePath("tokenizer.model"));
  engine.loadModel(empty.path());
  QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 3, kTimeoutMs);
  QVERIFY(!failed[2][1].toString().isEmpty());
  QCOMPARE(loaded.size(), 0);

  // Asking before anything is loaded is a sentence too, not a crash.
  engine.ask(QStringLiteral("Anyone there?"), IngestChoices{}, GenerationSettings{});
  QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 4, kTimeoutMs);
  QVERIFY(failed[3][1].toString().contains(QStringLiteral("model")));
}

void EngineTest::badSourceIsAnErrorSignal() {
  Engine engine;
  QSignalSpy failed(&engine, &Engine::failed);
  QSignalSpy opened(&engine, &Engine::sourceOpened);
  engine.openSource(dir_.filePath(QStringLiteral("missing.txt")));
  QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 1, kTimeoutMs);
  QVERIFY2(failed[0][1].toString().contains(QStringLiteral("does not exist")),
           qPrintable(failed[0][1].toString()));
  // An empty book and a video that is not one: the readers' reasons, as sentences.
  const QString empty = dir_.filePath(QStringLiteral("empty.txt"));
  QVERIFY(test::write_file(empty));
  engine.openSource(empty);
  QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 2, kTimeoutMs);
  const QString fake = dir_.filePath(QStringLiteral("not-a-video.mp4"));
  QVERIFY(test::write_file(fake, QByteArray("this is text, not a video\n")));
  engine.openSource(fake);
  QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 3, kTimeoutMs);
  for (const auto& signal : failed) {
    const QString sentence = signal[1].toString();
    QVERIFY2(!sentence.isEmpty() && sentence[0].isUpper() && sentence.endsWith('.'),
             qPrintable(sentence));
  }
  QVERIFY2(failed[2][1].toString().contains(QStringLiteral("not-a-video.mp4")),
           qPrintable(failed[2][1].toString()));
  QCOMPARE(opened.size(), 0);
}

void EngineTest::planSaysWhatFitsAndWhatWillNot() {
  Engine engine;
  loadAndOpen(engine, text_model_, book_);
  if (QTest::currentTestFailed()) return;
  QSignalSpy planned(&engine, &Engine::planned);
  engine.plan(IngestChoices{});
  QTRY_COMPARE_WITH_TIMEOUT(planned.size(), 1, kTimeoutMs);
  const auto plan = planned[0][0].value<PlanInfo>();
  QVERIFY2(plan.fits, qPrintable(plan.verdict));
  QVERIFY(plan.source_tokens > 512);  // more than two prefill chunks: the cancel test needs it
  QCOMPARE(plan.devices, QStringList{QStringLiteral("cpu")});
  QVERIFY(plan.kv_bytes > 0);
  QVERIFY(plan.verdict.startsWith(QStringLiteral("Fits")));

  // A context smaller than the book: not a failure signal, a plan that says what would fit.
  IngestChoices small;
  small.context = plan.source_tokens / 2;
  engine.plan(small);
  QTRY_COMPARE_WITH_TIMEOUT(planned.size(), 2, kTimeoutMs);
  const auto too_small = planned[1][0].value<PlanInfo>();
  QVERIFY(!too_small.fits);
  QVERIFY2(too_small.verdict.contains(QStringLiteral("larger context")),
           qPrintable(too_small.verdict));

  // A device this build does not have is refused by name, never replaced by the CPU.
  IngestChoices gpu;
  gpu.devices = QStringLiteral("cuda:0");
  engine.plan(gpu);
  QTRY_COMPARE_WITH_TIMEOUT(planned.size(), 3, kTimeoutMs);
  const auto refused = planned[2][0].value<PlanInfo>();
  QVERIFY(!refused.fits);
  QVERIFY2(refused.verdict.contains(QStringLiteral("cuda:0")), qPrintable(refused.verdict));
  QSignalSpy failed(&engine, &Engine::failed);
  engine.ingest(gpu);
  QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 1, kTimeoutMs);
  // The core's sentence: no such GPU here (naming what there is), or one sessions cannot use yet.
  QVERIFY2(failed[0][1].toString().contains(QStringLiteral("cuda:0")),
           qPrintable(failed[0][1].toString()));
}

void EngineTest::cancelledIngestResumesFromItsCache() {
  Engine engine;
  loadAndOpen(engine, text_model_, book_);
  if (QTest::currentTestFailed()) return;
  QSignalSpy progress(&engine, &Engine::ingestProgress);
  QSignalSpy cancelled(&engine, &Engine::ingestCancelled);
  QSignalSpy finished(&engine, &Engine::ingestFinished);
  QSignalSpy planned(&engine, &Engine::planned);
  engine.plan(IngestChoices{});
  QTRY_COMPARE_WITH_TIMEOUT(planned.size(), 1, kTimeoutMs);
  const qint64 source_tokens = planned[0][0].value<PlanInfo>().source_tokens;

  // Press Cancel from inside the worker's first prefill report, as a user would mid-ingest.
  const auto connection = QObject::connect(
      engine.worker(), &EngineWorker::ingestProgress, engine.worker(),
      [&engine](const QString& stage, qint64 done, qint64) {
        if (stage == QLatin1String("prefill") && done > 0) engine.stop();
      },
      Qt::DirectConnection);
  engine.ingest(IngestChoices{});
  QTRY_COMPARE_WITH_TIMEOUT(cancelled.size(), 1, kTimeoutMs);
  QObject::disconnect(connection);
  QCOMPARE(finished.size(), 0);
  QCOMPARE(cancelled[0][0].toString(), QStringLiteral("prefill"));
  const qint64 kept = cancelled[0][1].toLongLong();
  QVERIFY2(kept > 0 && kept < source_tokens, qPrintable(QString::number(kept)));
  QStringList stages;
  for (const auto& signal : progress) {
    if (!stages.contains(signal[0].toString())) stages << signal[0].toString();
  }
  QCOMPARE(stages, (QStringList{QStringLiteral("tokenizing"), QStringLiteral("prefill")}));

  // Ingest again: only the rest is computed, and the cache ends holding the whole source.
  progress.clear();
  engine.ingest(IngestChoices{});
  QTRY_COMPARE_WITH_TIMEOUT(finished.size(), 1, kTimeoutMs);
  QCOMPARE(finished[0][0].toLongLong(), source_tokens);
  qint64 resumed_total = -1;
  for (const auto& signal : progress) {
    QCOMPARE(signal[0].toString(), QStringLiteral("prefill"));  // no re-tokenizing
    resumed_total = signal[2].toLongLong();
  }
  QCOMPARE(resumed_total, source_tokens - kept);
}

void EngineTest::askStreamsTheSessionsAnswer() {
  Engine engine;
  loadAndOpen(engine, text_model_, book_);
  if (QTest::currentTestFailed()) return;
  QSignalSpy text(&engine, &Engine::answerText);
  QSignalSpy finished(&engine, &Engine::answerFinished);
  const QString question = QStringLiteral("What did the keeper write in chapter 2?");
  GenerationSettings settings;
  settings.max_new_tokens = 12;
  engine.ask(question, IngestChoices{}, settings);
  QTRY_COMPARE_WITH_TIMEOUT(finished.size(), 1, kTimeoutMs);
  const auto stats = finished[0][0].value<AnswerStats>();
  const auto end = finished[0][1].value<AnswerEnd>();
  QVERIFY(end == AnswerEnd::finished || end == AnswerEnd::length);
  QVERIFY(stats.generated_tokens > 0);
  QVERIFY(stats.time_to_first_token_s > 0);
  QVERIFY(stats.decode_tokens_per_s > 0);
  QString streamed;
  for (const auto& piece : text) streamed += piece[0].toString();

  // The same question through lwm::Session directly, outside the GUI.
  const std::filesystem::path dir = text_model_.toStdString();
  const auto model = lwm::Model::load(dir);
  const lwm::Tokenizer tokenizer(dir / "tokenizer.model");
  const lwm::Book book = lwm::load_book(book_.toStdString());
  lwm::SessionOptions options;
  options.answer_reserve = 512;
  const auto session = lwm::Session::for_text(*model, tokenizer, book.text, options);
  lwm::GenerationOptions generation;
  generation.max_new_tokens = settings.max_new_tokens;
  const auto direct = session->ask(question.toStdString(), generation);
  QCOMPARE(streamed, QString::fromStdString(direct.generation.text));
  QCOMPARE(stats.generated_tokens, static_cast<qint64>(direct.generation.tokens.size()));

  // A second question reuses the ingested source.
  engine.ask(QStringLiteral("And in chapter 3?"), IngestChoices{}, settings);
  QTRY_COMPARE_WITH_TIMEOUT(finished.size(), 2, kTimeoutMs);
  QVERIFY(finished[1][0].value<AnswerStats>().reused_tokens >= session->plan().source_tokens);
}

void EngineTest::stopEndsTheAnswerEarly() {
  Engine engine;
  loadAndOpen(engine, text_model_, book_);
  if (QTest::currentTestFailed()) return;
  QSignalSpy text(&engine, &Engine::answerText);
  QSignalSpy finished(&engine, &Engine::answerFinished);
  const auto connection = QObject::connect(
      engine.worker(), &EngineWorker::answerText, engine.worker(), [&engine] { engine.stop(); },
      Qt::DirectConnection);
  GenerationSettings settings;
  settings.max_new_tokens = 200;
  engine.ask(QStringLiteral("Tell me everything."), IngestChoices{}, settings);
  QTRY_COMPARE_WITH_TIMEOUT(finished.size(), 1, kTimeoutMs);
  QObject::disconnect(connection);
  QCOMPARE(finished[0][1].value<AnswerEnd>(), AnswerEnd::stopped);
  QVERIFY(finished[0][0].value<AnswerStats>().generated_tokens < 10);
}

void EngineTest::videoIngestSamplesThumbnailsAndAnswers() {
  const QString video = test::write_video(dir_, 4);
  if (video.isEmpty()) QSKIP("no ffmpeg CLI to write the test video");
  const QString model = test::make_tiny_model(dir_, QStringLiteral("vision-model"), true, seed_);
  Engine engine;
  QSignalSpy opened(&engine, &Engine::sourceOpened);
  loadAndOpen(engine, model, video);
  if (QTest::currentTestFailed()) return;
  const auto source = opened[0][0].value<SourceInfo>();
  QCOMPARE(source.kind, SourceKind::video);
  QVERIFY(qAbs(source.duration_s - 4.0) < 0.5);

  QSignalSpy planned(&engine, &Engine::planned);
  QSignalSpy thumbnails(&engine, &Engine::thumbnail);
  QSignalSpy progress(&engine, &Engine::ingestProgress);
  QSignalSpy finished(&engine, &Engine::ingestFinished);
  IngestChoices choices;
  choices.frames = 0;
  choices.fps = 1.0;  // one frame a second: 4 frames
  engine.plan(choices);
  QTRY_COMPARE_WITH_TIMEOUT(planned.size(), 1, kTimeoutMs);
  const auto plan = planned[0][0].value<PlanInfo>();
  QVERIFY2(plan.fits, qPrintable(plan.verdict));
  QCOMPARE(plan.frames, 4);
  // Far more frames than the context holds: a plan that says how many would fit.
  IngestChoices too_many;
  too_many.frames = 1 << 20;
  engine.plan(too_many);
  QTRY_COMPARE_WITH_TIMEOUT(planned.size(), 2, kTimeoutMs);
  const auto refused = planned[1][0].value<PlanInfo>();
  QVERIFY(!refused.fits);
  QVERIFY2(refused.verdict.contains(QStringLiteral("At most about")), qPrintable(refused.verdict));

  engine.ingest(choices);
  QTRY_COMPARE_WITH_TIMEOUT(finished.size(), 1, kTimeoutMs);
  QCOMPARE(finished[0][0].toLongLong(), plan.source_tokens);  // the plan counted right
  QCOMPARE(thumbnails.size(), 4);
  for (int i = 0; i < thumbnails.size(); ++i) {
    QCOMPARE(thumbnails[i][0].toInt(), i);
    QVERIFY(qAbs(thumbnails[i][1].toDouble() - i) < 0.2);
    QVERIFY(!thumbnails[i][2].value<QImage>().isNull());
  }
  QStringList stages;
  for (const auto& signal : progress) {
    if (!stages.contains(signal[0].toString())) stages << signal[0].toString();
  }
  QCOMPARE(stages, (QStringList{QStringLiteral("decoding"), QStringLiteral("tokenizing"),
                                QStringLiteral("prefill")}));

  QSignalSpy answered(&engine, &Engine::answerFinished);
  GenerationSettings settings;
  settings.max_new_tokens = 6;
  engine.ask(QStringLiteral("What happens at 0:02?"), choices, settings);
  QTRY_COMPARE_WITH_TIMEOUT(answered.size(), 1, kTimeoutMs);
  QVERIFY(answered[0][0].value<AnswerStats>().reused_tokens >= plan.source_tokens);

  // A text-only model refuses a video with a sentence that says what would work.
  QSignalSpy failed(&engine, &Engine::failed);
  engine.loadModel(text_model_);
  engine.ingest(choices);
  QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 1, kTimeoutMs);
  QVERIFY2(failed[0][1].toString().contains(QStringLiteral("cannot read videos")),
           qPrintable(failed[0][1].toString()));
}

QTEST_GUILESS_MAIN(EngineTest)
#include "test_engine.moc"
