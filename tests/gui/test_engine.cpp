// The engine worker in its thread, driven only through Engine and observed through its queued
// signals: load (good and bad model folders), open, plan, ingest, cancel mid-prefill and resume,
// ask with streamed tokens equal to a direct lwm::Session run, stop mid-answer, and videos.
#include <QElapsedTimer>
#include <QProcess>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>
#include <QThread>
#include <atomic>
#include <cstdio>

#include "gui_test_support.h"
#include "lwm/book.h"
#include "lwm/gui/engine.h"
#include "lwm/model.h"
#include "lwm/model_config.h"
#include "lwm/session.h"
#include "lwm/tokenizer.h"

using namespace lwm::gui;

namespace {
constexpr int kTimeoutMs = 60000;

// The child process of the kill tests: `gui_engine_tests --ingest-child MODEL SOURCE CACHE STAGE
// AT FRAMES` ingests SOURCE (FRAMES uniform frames for a video) through the ingest cache in CACHE,
// with a KV snapshot after every prefill chunk; once STAGE has reported AT or more done it prints
// "HANG <done>" and blocks the worker until the parent kills it.
int run_ingest_child(const QStringList& args) {
  Engine engine;
  engine.setCacheDirectory(args[3], 0.0);
  const QString stage = args[4];
  const qint64 at = args[5].toLongLong();
  QObject::connect(
      engine.worker(), &EngineWorker::ingestProgress, engine.worker(),
      [stage, at](const QString& reported, qint64 done, qint64) {
        if (reported != stage || done < at) return;
        std::printf("HANG %lld\n", static_cast<long long>(done));
        std::fflush(stdout);
        QThread::sleep(600);
      },
      Qt::DirectConnection);
  QObject::connect(&engine, &Engine::failed, [](const QString&, const QString& message) {
    std::fprintf(stderr, "child: %s\n", qPrintable(message));
    QCoreApplication::exit(1);
  });
  QObject::connect(&engine, &Engine::ingestFinished, [] {
    std::printf("FINISHED before the hang\n");
    QCoreApplication::exit(2);
  });
  engine.loadModel(args[1]);
  engine.openSource(args[2]);
  IngestChoices choices;
  choices.frames = args[6].toLongLong();
  engine.ingest(choices);
  return QCoreApplication::exec();
}

// Starts the child and SIGKILLs it once it hangs: no destructor runs, nothing is flushed or
// closed. Returns the done count it hung at, or -1 (with the child's output logged).
qint64 kill_mid_ingest(const QString& model, const QString& source, const QString& cache,
                       const QString& stage, qint64 at, qint64 frames) {
  QProcess child;
  child.start(QCoreApplication::applicationFilePath(),
              {QStringLiteral("--ingest-child"), model, source, cache, stage, QString::number(at),
               QString::number(frames)});
  if (!child.waitForStarted(kTimeoutMs)) return -1;
  QByteArray out;
  QElapsedTimer timer;
  timer.start();
  while (!out.contains('\n') && child.state() == QProcess::Running &&
         timer.elapsed() < kTimeoutMs) {
    child.waitForReadyRead(200);
    out += child.readAllStandardOutput();
  }
  child.kill();  // SIGKILL
  child.waitForFinished(kTimeoutMs);
  out += child.readAllStandardOutput();
  if (!out.startsWith("HANG ")) {
    qWarning("the child did not hang: %s %s", out.constData(),
             child.readAllStandardError().constData());
    return -1;
  }
  return out.mid(5, out.indexOf('\n') - 5).toLongLong();
}

}  // namespace

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
  void killedPrefillResumesFromItsSnapshot();
  void killedVideoIngestResumesFromItsFrameCodes();
  void unwritableCacheStillIngests();

 private:
  void loadAndOpen(Engine& engine, const QString& model, const QString& source);
  void ingestAndAsk(Engine& engine, const IngestChoices& choices, IngestReport& report,
                    QString& answer);
  QString visionModel();
  QString vision_model_;
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
  QVERIFY2(plan.fits && plan.runnable, qPrintable(plan.verdict));
  QVERIFY(plan.source_tokens > 512);  // more than two prefill chunks: the cancel test needs it
  QCOMPARE(plan.devices.size(), 1);
  QCOMPARE(plan.devices[0].device, QStringLiteral("cpu"));
  QVERIFY(plan.devices[0].fits);
  QVERIFY(plan.devices[0].available_bytes > plan.devices[0].total_bytes);
  QVERIFY(plan.verdict.startsWith(QStringLiteral("Fits")));
  QVERIFY(plan.estimated_s > 0);
  // "auto" on the CPU is f32: K and V, every layer and KV head, head_dim floats, per token.
  const auto config = lwm::ModelConfig::load(text_model_.toStdString());
  const qint64 f32_row = 2LL * config.num_layers * config.num_kv_heads * config.head_dim() * 4;
  QCOMPARE(plan.kv_cache, QStringLiteral("f32"));
  QCOMPARE(plan.kv_bytes, plan.context * f32_row);
  // The plan counts the tokens a session over the book holds.
  const std::filesystem::path dir = text_model_.toStdString();
  const auto model = lwm::Model::load(dir);
  const lwm::Tokenizer tokenizer(dir / "tokenizer.model");
  lwm::SessionOptions options;
  options.answer_reserve = 512;
  const auto session =
      lwm::Session::for_text(*model, tokenizer, lwm::load_book(book_.toStdString()).text, options);
  QCOMPARE(plan.source_tokens, session->plan().source_tokens);
  QCOMPARE(plan.context, session->plan().context);

  // bf16 and int8 caches: planned with their sizes, but this build's sessions keep f32, so the
  // plan says ingest is refused, and ingest refuses by name.
  IngestChoices bf16;
  bf16.kv_cache = QStringLiteral("bf16");
  engine.plan(bf16);
  IngestChoices int8;
  int8.kv_cache = QStringLiteral("int8");
  engine.plan(int8);
  QTRY_COMPARE_WITH_TIMEOUT(planned.size(), 3, kTimeoutMs);
  const auto half = planned[1][0].value<PlanInfo>();
  const auto eight = planned[2][0].value<PlanInfo>();
  QCOMPARE(half.kv_cache, QStringLiteral("bf16"));
  QCOMPARE(half.kv_bytes * 2, plan.kv_bytes);
  QCOMPARE(eight.kv_cache, QStringLiteral("int8"));
  // One byte a value plus a float32 scale per token, layer and KV head.
  QCOMPARE(eight.kv_bytes,
           plan.context * 2LL * config.num_layers * config.num_kv_heads * (config.head_dim() + 4));
  for (const PlanInfo& refused : {half, eight}) {
    QVERIFY(refused.fits && !refused.runnable);
    QVERIFY2(refused.verdict.contains(QStringLiteral("Ingest is refused")) &&
                 refused.verdict.contains(refused.kv_cache),
             qPrintable(refused.verdict));
  }
  QSignalSpy failed(&engine, &Engine::failed);
  engine.ingest(int8);
  QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 1, kTimeoutMs);
  QVERIFY2(failed[0][1].toString().contains(QStringLiteral("int8")),
           qPrintable(failed[0][1].toString()));

  // A context smaller than the book: not a failure signal, a plan that says what would fit.
  IngestChoices small;
  small.context = plan.source_tokens / 2;
  engine.plan(small);
  QTRY_COMPARE_WITH_TIMEOUT(planned.size(), 4, kTimeoutMs);
  const auto too_small = planned[3][0].value<PlanInfo>();
  QVERIFY(!too_small.fits && !too_small.runnable);
  QVERIFY2(too_small.problem.contains(QString::number(plan.source_tokens)),
           qPrintable(too_small.problem));
  QVERIFY2(too_small.suggestion.contains(QStringLiteral("context sized automatically")),
           qPrintable(too_small.suggestion));
  QVERIFY(too_small.verdict.contains(too_small.suggestion));

  // A device this build does not have is refused by name, never replaced by the CPU.
  IngestChoices gpu;
  gpu.devices = QStringLiteral("cuda:0");
  engine.plan(gpu);
  QTRY_COMPARE_WITH_TIMEOUT(planned.size(), 5, kTimeoutMs);
  const auto refused = planned[4][0].value<PlanInfo>();
  QVERIFY(!refused.runnable);
  QVERIFY2(refused.verdict.contains(QStringLiteral("cuda:0")), qPrintable(refused.verdict));
  engine.ingest(gpu);
  QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 2, kTimeoutMs);
  // The core's sentence: no such GPU here (naming what there is), or one sessions cannot use yet.
  QVERIFY2(failed[1][1].toString().contains(QStringLiteral("cuda:0")),
           qPrintable(failed[1][1].toString()));
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
  const auto stopped = cancelled[0][0].value<IngestReport>();
  QCOMPARE(stopped.stage, QStringLiteral("prefill"));
  QCOMPARE(stopped.source_tokens, source_tokens);
  const qint64 kept = stopped.cached_tokens;
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
  const auto done = finished[0][0].value<IngestReport>();
  QCOMPARE(done.cached_tokens, source_tokens);
  QCOMPARE(done.prefilled_tokens, source_tokens - kept);
  QCOMPARE(done.restored_tokens, 0);  // no cache directory: nothing on the disk
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

  // Choices this build cannot run are refused even with the source ingested already: the f32
  // session on the CPU does not answer for an int8 cache or a GPU.
  for (const auto& [devices, kv_cache] :
       {std::pair{QStringLiteral("cpu"), QStringLiteral("int8")},
        std::pair{QStringLiteral("cuda:0"), QStringLiteral("auto")}}) {
    IngestChoices refused;
    refused.devices = devices;
    refused.kv_cache = kv_cache;
    const qsizetype before = finished.size();
    engine.ask(QStringLiteral("And in chapter 4?"), refused, settings);
    QTRY_COMPARE_WITH_TIMEOUT(finished.size(), before + 1, kTimeoutMs);
    QCOMPARE(finished.last()[1].value<AnswerEnd>(), AnswerEnd::failed);
    const QString error = finished.last()[2].toString();
    QVERIFY2(error.contains(kv_cache == QLatin1String("int8") ? kv_cache : devices),
             qPrintable(error));
  }
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
  const QString model = visionModel();
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
  QVERIFY2(plan.fits && plan.runnable, qPrintable(plan.verdict));
  QCOMPARE(plan.frames, 4);
  QCOMPARE(plan.frame_times.size(), 4);
  QVERIFY(plan.decoding_s > 0 && plan.tokenizing_s > 0 && plan.prefill_s > 0);
  // Every frame of the video (32) is more than the context holds: a plan that says how many
  // would fit, and that many do while one more does not.
  IngestChoices too_many;
  too_many.frames = 1 << 20;
  engine.plan(too_many);
  QTRY_COMPARE_WITH_TIMEOUT(planned.size(), 2, kTimeoutMs);
  const auto refused = planned[1][0].value<PlanInfo>();
  QVERIFY(!refused.fits && !refused.runnable);
  QCOMPARE(refused.frames, source.video_frames);
  QVERIFY2(refused.max_frames > 4 && refused.max_frames < refused.frames,
           qPrintable(refused.verdict));
  QVERIFY2(refused.verdict.contains(QStringLiteral("at most %1 frames").arg(refused.max_frames)),
           qPrintable(refused.verdict));
  IngestChoices most = too_many;
  most.frames = refused.max_frames;
  engine.plan(most);
  most.frames = refused.max_frames + 1;
  engine.plan(most);
  QTRY_COMPARE_WITH_TIMEOUT(planned.size(), 4, kTimeoutMs);
  QVERIFY(planned[2][0].value<PlanInfo>().fits);
  QVERIFY(!planned[3][0].value<PlanInfo>().fits);

  engine.ingest(choices);
  QTRY_COMPARE_WITH_TIMEOUT(finished.size(), 1, kTimeoutMs);
  const auto report = finished[0][0].value<IngestReport>();
  QCOMPARE(report.cached_tokens, plan.source_tokens);  // the plan counted right
  QCOMPARE(report.frames, plan.frames);
  QCOMPARE(report.frames_from_cache, 0);
  QCOMPARE(thumbnails.size(), 4);
  for (int i = 0; i < thumbnails.size(); ++i) {
    QCOMPARE(thumbnails[i][0].toInt(), i);
    QVERIFY(qAbs(thumbnails[i][1].toDouble() - i) < 0.2);
    // The plan's frame times are the times the ingest sampled.
    QVERIFY(qAbs(thumbnails[i][1].toDouble() - plan.frame_times[i]) < 1e-3);
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

QString EngineTest::visionModel() {
  if (vision_model_.isEmpty()) {
    vision_model_ = test::make_tiny_model(dir_, QStringLiteral("vision-model"), true, seed_);
  }
  return vision_model_;
}

void EngineTest::ingestAndAsk(Engine& engine, const IngestChoices& choices, IngestReport& report,
                              QString& answer) {
  QSignalSpy ingested(&engine, &Engine::ingestFinished);
  QSignalSpy text(&engine, &Engine::answerText);
  QSignalSpy answered(&engine, &Engine::answerFinished);
  QSignalSpy failed(&engine, &Engine::failed);
  engine.ingest(choices);
  GenerationSettings settings;
  settings.max_new_tokens = 12;
  engine.ask(QStringLiteral("What happens in the middle?"), choices, settings);
  QTRY_COMPARE_WITH_TIMEOUT(answered.size(), 1, kTimeoutMs);
  QVERIFY2(failed.isEmpty(), qPrintable(failed.value(0).value(1).toString()));
  QCOMPARE(ingested.size(), 1);
  report = ingested[0][0].value<IngestReport>();
  answer.clear();
  for (const auto& piece : text) answer += piece[0].toString();
}

void EngineTest::killedPrefillResumesFromItsSnapshot() {
  QTemporaryDir cache;
  const qint64 killed_at =
      kill_mid_ingest(text_model_, book_, cache.path(), QStringLiteral("prefill"), 1, 0);
  QVERIFY(killed_at > 0);

  // The app starts again: the snapshot written before the kill holds the chunks computed.
  Engine resumed;
  resumed.setCacheDirectory(cache.path(), 0.0);
  loadAndOpen(resumed, text_model_, book_);
  if (QTest::currentTestFailed()) return;
  IngestReport report;
  QString answer;
  ingestAndAsk(resumed, IngestChoices{}, report, answer);
  if (QTest::currentTestFailed()) return;
  QCOMPARE(report.restored_tokens, killed_at);
  QCOMPARE(report.prefilled_tokens, report.source_tokens - killed_at);
  QCOMPARE(report.cached_tokens, report.source_tokens);

  // The same cache and answer as an ingest never interrupted and never cached.
  Engine fresh;
  loadAndOpen(fresh, text_model_, book_);
  if (QTest::currentTestFailed()) return;
  IngestReport fresh_report;
  QString fresh_answer;
  ingestAndAsk(fresh, IngestChoices{}, fresh_report, fresh_answer);
  QCOMPARE(fresh_report.prefilled_tokens, report.source_tokens);
  QVERIFY(!answer.isEmpty());
  QCOMPARE(answer, fresh_answer);
}

void EngineTest::killedVideoIngestResumesFromItsFrameCodes() {
  const QString video = test::write_video(dir_, 4);
  if (video.isEmpty()) QSKIP("no ffmpeg CLI to write the test video");
  const QString model = visionModel();
  constexpr qint64 frames = 8;
  QTemporaryDir cache;
  // Killed after 6 of 8 frames were read for the VQGAN, which encodes them 4 at a time.
  const qint64 killed_at =
      kill_mid_ingest(model, video, cache.path(), QStringLiteral("tokenizing"), 6, frames);
  QVERIFY(killed_at >= 6);

  IngestChoices choices;
  choices.frames = frames;
  Engine resumed;
  resumed.setCacheDirectory(cache.path(), 0.0);
  loadAndOpen(resumed, model, video);
  if (QTest::currentTestFailed()) return;
  IngestReport report;
  QString answer;
  ingestAndAsk(resumed, choices, report, answer);
  if (QTest::currentTestFailed()) return;
  QCOMPARE(report.frames, frames);
  // The first batch's codes reached the disk before the kill; only the rest was encoded.
  QVERIFY2(report.frames_from_cache >= 4 && report.frames_from_cache < frames,
           qPrintable(QString::number(report.frames_from_cache)));
  QCOMPARE(report.restored_tokens, 0);  // killed before the prefill began

  Engine fresh;
  loadAndOpen(fresh, model, video);
  if (QTest::currentTestFailed()) return;
  IngestReport fresh_report;
  QString fresh_answer;
  ingestAndAsk(fresh, choices, fresh_report, fresh_answer);
  QCOMPARE(fresh_report.source_tokens, report.source_tokens);
  QVERIFY(!answer.isEmpty());
  QCOMPARE(answer, fresh_answer);

  // Reopened once more: every frame's codes and the whole prefill come from the disk.
  Engine reopened;
  reopened.setCacheDirectory(cache.path(), 0.0);
  loadAndOpen(reopened, model, video);
  if (QTest::currentTestFailed()) return;
  IngestReport again;
  QString again_answer;
  ingestAndAsk(reopened, choices, again, again_answer);
  QCOMPARE(again.frames_from_cache, frames);
  QCOMPARE(again.restored_tokens, report.source_tokens);
  QCOMPARE(again.prefilled_tokens, 0);
  QCOMPARE(again_answer, fresh_answer);
}

void EngineTest::unwritableCacheStillIngests() {
  // A file where the cache folder should be: the cache cannot exist, the ingest goes on.
  const QString blocker = dir_.filePath(QStringLiteral("not-a-folder"));
  QVERIFY(test::write_file(blocker, QByteArray("x")));
  Engine engine;
  engine.setCacheDirectory(blocker + QStringLiteral("/cache"), 0.0);
  loadAndOpen(engine, text_model_, book_);
  if (QTest::currentTestFailed()) return;
  QSignalSpy finished(&engine, &Engine::ingestFinished);
  QSignalSpy failed(&engine, &Engine::failed);
  engine.ingest(IngestChoices{});
  QTRY_COMPARE_WITH_TIMEOUT(finished.size() + failed.size(), 1, kTimeoutMs);
  QVERIFY2(failed.isEmpty(), qPrintable(failed.value(0).value(1).toString()));
  const auto report = finished[0][0].value<IngestReport>();
  QCOMPARE(report.cached_tokens, report.source_tokens);
  QCOMPARE(report.restored_tokens, 0);
}

int main(int argc, char** argv) {
  QCoreApplication app(argc, argv);
  const QStringList args = QCoreApplication::arguments();
  if (args.size() == 8 && args[1] == QLatin1String("--ingest-child")) {
    return run_ingest_child(args.mid(1));
  }
  EngineTest test;
  QTEST_SET_MAIN_SOURCE_PATH
  return QTest::qExec(&test, argc, argv);
}
#include "test_engine.moc"
