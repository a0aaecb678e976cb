// The engine off the UI thread (issue 7, "Ingest"): an EngineWorker owns the model, tokenizer,
// VQGAN and the lwm::Session of the open source and lives in its own QThread; the Engine, owned
// by the window, starts that thread and forwards requests to it. Requests and results cross
// threads only as queued calls and queued signals; the one shared thing is an atomic stop flag,
// read by the worker's progress and token callbacks, so Cancel and Stop act between chunks and
// between tokens while the worker is busy.
//
// Every failure becomes failed(operation, sentence): what happened and what to do. The worker
// never falls back to the CPU for a device the user chose: a device it cannot use is an error.
#pragma once

#include <QImage>
#include <QObject>
#include <QThread>
#include <atomic>
#include <memory>

#include "lwm/gui/engine_types.h"

namespace lwm::gui {

class EngineWorker : public QObject {
  Q_OBJECT

 public:
  explicit EngineWorker(std::atomic<bool>& stop);
  ~EngineWorker() override;

 public slots:
  // Loads and validates a model directory (config.json, *.safetensors, tokenizer.model and, for
  // vision models, vqgan.safetensors); emits modelLoaded or failed("load model", ...).
  void loadModel(const QString& directory);
  // Reads a book (its text and chapters) or probes a video; emits sourceOpened or failed.
  // Forgets the previous source and its session.
  void openSource(const QString& path);
  // Computes what ingesting with `choices` would take; emits planned (fits or not) or failed.
  void plan(const lwm::gui::IngestChoices& choices);
  // Decodes, tokenizes and prefills the source. A cancelled ingest keeps its video tokens and
  // every prefilled chunk: calling ingest again with the same choices resumes from there. With
  // a cache directory, frame codes (lwm::tokenize_video_cached) and KV snapshots (Session::save,
  // after the ingest, when cancelled and every `snapshot_every_s` of prefill) go to the disk,
  // keyed by content as `lwm ask --cache-dir` keys them, so a killed app resumes there too.
  void ingest(const lwm::gui::IngestChoices& choices);
  // Where the ingest cache lives (empty: nowhere; nothing is written). Takes effect at the next
  // ingest.
  void setCacheDirectory(const QString& directory, double snapshot_every_s = 30.0);
  // Asks about the source (ingesting first when needed) and streams the answer.
  void ask(const QString& question, const lwm::gui::IngestChoices& choices,
           const lwm::gui::GenerationSettings& settings);

 signals:
  void modelLoaded(const lwm::gui::ModelInfo& model);
  void sourceOpened(const lwm::gui::SourceInfo& source);
  void planned(const lwm::gui::PlanInfo& plan);
  // stage: "decoding", "tokenizing" or "prefill"; eta_s < 0 while unknown.
  void ingestProgress(const QString& stage, qint64 done, qint64 total, double eta_s);
  // A sampled frame for the timeline (videos), small and already RGB.
  void thumbnail(int index, double seconds, const QImage& image);
  void ingestFinished(const lwm::gui::IngestReport& report);
  void ingestCancelled(const lwm::gui::IngestReport& report);
  void answerStarted();
  void answerText(const QString& text);
  void answerFinished(const lwm::gui::AnswerStats& stats, lwm::gui::AnswerEnd end,
                      const QString& error);
  void failed(const QString& operation, const QString& message);
  void busyChanged(bool busy);

 private:
  struct State;
  bool run_ingest(const IngestChoices& choices, IngestReport& report);  // false when cancelled
  std::atomic<bool>& stop_;
  std::unique_ptr<State> state_;
};

// The window's handle on the worker. Methods return at once; results arrive as the Engine's
// signals, the worker's own relayed through queued connections, so they are delivered in the
// thread the Engine lives in (the UI thread). Destroying the Engine stops the work in progress
// and joins the thread.
class Engine : public QObject {
  Q_OBJECT

 public:
  explicit Engine(QObject* parent = nullptr);
  ~Engine() override;

  EngineWorker* worker() const noexcept { return worker_; }
  bool busy() const noexcept { return busy_; }

  void loadModel(const QString& directory);
  void openSource(const QString& path);
  void plan(const IngestChoices& choices);
  void ingest(const IngestChoices& choices);
  void ask(const QString& question, const IngestChoices& choices,
           const GenerationSettings& settings);
  void setCacheDirectory(const QString& directory, double snapshot_every_s = 30.0);
  // Cancels an ingest or stops an answer (at the next chunk or token); harmless when idle.
  // Thread-safe: the flag is atomic, so it may be called from a direct connection on worker().
  void stop();

 signals:
  // The worker's signals, delivered in the Engine's thread (see EngineWorker).
  void modelLoaded(const lwm::gui::ModelInfo& model);
  void sourceOpened(const lwm::gui::SourceInfo& source);
  void planned(const lwm::gui::PlanInfo& plan);
  void ingestProgress(const QString& stage, qint64 done, qint64 total, double eta_s);
  void thumbnail(int index, double seconds, const QImage& image);
  void ingestFinished(const lwm::gui::IngestReport& report);
  void ingestCancelled(const lwm::gui::IngestReport& report);
  void answerStarted();
  void answerText(const QString& text);
  void answerFinished(const lwm::gui::AnswerStats& stats, lwm::gui::AnswerEnd end,
                      const QString& error);
  void failed(const QString& operation, const QString& message);
  void busyChanged(bool busy);

 private:
  void arm();  // clears the stop flag before a new request is queued
  std::atomic<bool> stop_{false};
  QThread thread_;
  EngineWorker* worker_ = nullptr;
  bool busy_ = false;
};

// The app's ingest cache: QStandardPaths::CacheLocation/ingest (~/.cache/<org>/<app>/ingest).
QString default_cache_directory();

}  // namespace lwm::gui
