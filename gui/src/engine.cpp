#include "lwm/gui/engine.h"

#include <QElapsedTimer>
#include <QFileInfo>
#include <QStandardPaths>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <new>
#include <optional>
#include <string>

#include "engine_text.h"
#include "lwm/book.h"
#include "lwm/devices.h"
#include "lwm/error.h"
#include "lwm/generation.h"
#include "lwm/gui/text_format.h"
#include "lwm/ingest_cache.h"
#include "lwm/model.h"
#include "lwm/planner.h"
#include "lwm/session.h"
#include "lwm/tokenizer.h"
#include "lwm/video.h"
#include "lwm/video_tokens.h"
#include "lwm/vqgan.h"

namespace lwm::gui {
namespace fs = std::filesystem;

QList<DeviceChoice> device_choices(QString* gpu_status) {
  const DeviceList list = list_devices();
  if (gpu_status) *gpu_status = QString::fromStdString(list.cuda_status);
  QList<DeviceChoice> choices;
  for (const DeviceInfo& device : list.devices) {
    const QString id = QString::fromStdString(device.id());
    QString label = id;
    if (device.kind == DeviceKind::cuda)
      label += QStringLiteral(" (%1)").arg(QString::fromStdString(device.name));
    if (device.available_bytes >= 0) {
      label += QStringLiteral(", %1 free").arg(format_bytes(device.available_bytes));
    }
    choices.push_back({id, label});
  }
  // Several GPUs: one long context across all of them (the ring, design.md "Devices").
  const std::vector<DeviceInfo> gpus = list.gpus();
  if (gpus.size() > 1) {
    std::int64_t free = 0;
    for (const DeviceInfo& gpu : gpus) free += std::max<std::int64_t>(gpu.available_bytes, 0);
    choices.push_back(
        {QStringLiteral("cuda"),
         QStringLiteral("cuda (all %1 GPUs, %2 free)").arg(gpus.size()).arg(format_bytes(free))});
  }
  return choices;
}

void register_engine_types() {
  qRegisterMetaType<ModelInfo>();
  qRegisterMetaType<SourceInfo>();
  qRegisterMetaType<PlanInfo>();
  qRegisterMetaType<IngestReport>();
  qRegisterMetaType<IngestChoices>();
  qRegisterMetaType<GenerationSettings>();
  qRegisterMetaType<AnswerStats>();
  qRegisterMetaType<AnswerEnd>();
}

namespace {

// Tokens kept free for the question and the answer when the context is sized to the source.
constexpr std::int64_t kAnswerReserve = 512;
constexpr std::int64_t kPrefillChunk = 256;
constexpr std::int64_t kDefaultFrames = 8;  // LWM's chat default
// Side of the timeline thumbnails decoded in the "decoding" stage.
constexpr int kThumbnailSide = 96;

FrameSamplingOptions frame_sampling(const IngestChoices& choices) {
  FrameSamplingOptions sampling;
  if (choices.fps > 0) {
    sampling.selection = FrameSelection::rate;
    sampling.frames_per_second = choices.fps;
  } else {
    sampling.max_frames = choices.frames > 0 ? choices.frames : kDefaultFrames;
  }
  return sampling;
}

// Choices that change the tokens of the source (devices and cache precision do not, on the CPU).
bool same_source_tokens(const IngestChoices& a, const IngestChoices& b) {
  return a.frames == b.frames && a.fps == b.fps;
}

// "auto" is what lwm plan defaults to: f32 on the CPU, bf16 on GPUs.
KvPrecision kv_precision_for(const IngestChoices& choices, const DeviceSelection& devices) {
  if (choices.kv_cache.isEmpty() || choices.kv_cache == QLatin1String("auto")) {
    return default_kv_precision(devices);
  }
  return parse_kv_precision(choices.kv_cache.toStdString());
}

SessionOptions session_options(const IngestChoices& choices) {
  SessionOptions options;
  options.devices = parse_device_list(choices.devices.toStdString(), list_devices());
  options.kv_precision = kv_precision_for(choices, options.devices);
  options.context = choices.context;
  options.answer_reserve = kAnswerReserve;
  options.prefill_chunk = kPrefillChunk;
  return options;
}

// The devices and cache precision this build can run a session with; anything else is an
// error, never a silent substitution. The core names the devices there are (parse_device_list)
// and what cannot run (check_runnable); the plan still shows what the others would take.
void check_engine_support(const IngestChoices& choices) {
  const DeviceSelection devices = parse_device_list(choices.devices.toStdString(), list_devices());
  check_runnable(devices, kv_precision_for(choices, devices));
}

qint64 safetensors_bytes(const fs::path& dir) {
  qint64 total = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".safetensors" &&
        entry.path().filename() != "vqgan.safetensors")
      total += static_cast<qint64>(entry.file_size(ec));
  }
  return total;
}

// What tells this model's weights apart from another's with the same config.json (two
// fine-tunes): each weight file's name, size and modification time. A copied model misses the
// cache once; two different models never share a KV snapshot.
std::string weights_identity(const fs::path& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".safetensors") continue;
    const auto modified = fs::last_write_time(entry.path(), ec).time_since_epoch().count();
    files.push_back(entry.path().filename().string() + " " + std::to_string(entry.file_size(ec)) +
                    " " + std::to_string(modified));
  }
  std::sort(files.begin(), files.end());
  std::string all;
  for (const std::string& file : files) all += file + "\n";
  return bytes_sha256(all);
}

// The planner's prefill time for `tokens` of text on the CPU (its default throughput).
double planned_prefill_seconds(const ModelConfig& config, std::int64_t tokens) {
  PlanRequest request;
  request.model = config;
  request.text = TextSourceInfo{};
  request.text->source_tokens = tokens;
  request.devices = parse_device_list("cpu", list_devices());
  request.prefill_chunk = kPrefillChunk;
  const IngestPlan plan = plan_ingest(request);
  return plan.seconds ? plan.seconds->prefill : 0.0;
}

// This machine's prefill time over the planner's, from the faster of two short forward passes
// (the first one also pays for page faults on the memory-mapped weights).
double measure_prefill_scale(const Model& model) {
  constexpr std::int64_t n = 16;
  std::vector<std::int32_t> tokens(n, model.config().bos_token_id);
  double best = -1.0;
  for (int run = 0; run < 2; ++run) {
    KVCache cache(model.config(), n);
    const auto start = std::chrono::steady_clock::now();
    model.forward(tokens, cache, LogitsFor::none, nullptr);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (best < 0 || seconds < best) best = seconds;
  }
  const double planned = planned_prefill_seconds(model.config(), n);
  return planned > 0 && best > 0 ? best / planned : 1.0;
}

AnswerEnd answer_end(StopReason reason) {
  switch (reason) {
    case StopReason::end_of_sequence:
      return AnswerEnd::finished;
    case StopReason::stopped_by_caller:
      return AnswerEnd::stopped;
    case StopReason::max_tokens:
    case StopReason::context_full:
      return AnswerEnd::length;
  }
  return AnswerEnd::finished;
}

}  // namespace

struct EngineWorker::State {
  // The model.
  std::unique_ptr<Model> model;
  std::optional<Tokenizer> tokenizer;
  std::unique_ptr<Vqgan> vqgan;
  ModelInfo info;
  std::string weights_id;  // weights_identity(): part of the KV snapshots' key
  // This machine's prefill seconds over the planner's default throughput: measured at load,
  // then from every real ingest, so estimates follow what this machine does.
  double prefill_scale = 1.0;
  // The ingest cache on disk (frame codes and KV snapshots); empty: none.
  fs::path cache_dir;
  double snapshot_every_s = 30.0;
  // The source.
  SourceKind kind = SourceKind::none;
  fs::path path;
  std::string book_text;
  VideoInfo video;
  std::string source_sha256;  // of the file, computed at its first cached ingest
  // The source's part of every plan (prompt layout, a book's exact token count): made once per
  // source and model, since counting a book's tokens tokenizes all of it.
  std::optional<PlanRequest> plan_base;
  // What ingest computed, kept across a cancel.
  std::optional<IngestChoices> tokens_for;  // the choices `video_tokens` were made with
  std::optional<VideoTokens> video_tokens;
  std::string video_codes_key;  // the ingest cache's key of those codes (empty: not cached)
  std::int64_t frames_from_cache = 0;
  std::unique_ptr<Session> session;
  std::optional<IngestChoices> session_for;

  void forget_session() {
    session.reset();
    session_for.reset();
    video_tokens.reset();
    tokens_for.reset();
    video_codes_key.clear();
    frames_from_cache = 0;
    plan_base.reset();
  }
  void forget_source() {
    kind = SourceKind::none;
    book_text.clear();
    video = {};
    source_sha256.clear();
    forget_session();
  }

  void require_model() const {
    if (!model) {
      throw Error(ErrorKind::invalid_argument,
                  "no model is loaded; choose a model folder with File > Open Model");
    }
  }
  void require_source() const {
    if (kind == SourceKind::none) {
      throw Error(ErrorKind::invalid_argument,
                  "no video or book is open; open one with File > Open or drop it on the window");
    }
    if (kind == SourceKind::video && !vqgan) {
      throw Error(ErrorKind::unsupported,
                  "the model '" + info.name.toStdString() +
                      "' cannot read videos (it has no vision vocabulary or no "
                      "vqgan.safetensors); open a book, or load a vision-language model");
    }
  }

  // The session's KV snapshot in the ingest cache, keyed by what its tokens depend on (a book's
  // file; a video's codes key: content, frame choice, VQGAN) and by the weights; empty without
  // a cache or before a video's codes are cached.
  fs::path snapshot_path() {
    if (cache_dir.empty() || !session) return {};
    const std::string source = kind == SourceKind::video ? video_codes_key : source_hash({});
    if (source.empty()) return {};
    return session_snapshot_path(cache_dir, source + "\n" + weights_id, model->config(),
                                 session->chat_template().name);
  }

  const std::string& source_hash(const ProgressCallback& progress) {
    if (source_sha256.empty()) source_sha256 = file_sha256(path, progress);
    return source_sha256;
  }

  PlanRequest request_for(const IngestChoices& choices) {
    if (!plan_base) {
      plan_base = kind == SourceKind::video
                      ? plan_request_for_video(model->config(), vqgan->config(), *tokenizer, video)
                      : plan_request_for_text(model->config(), *tokenizer, book_text);
    }
    PlanRequest request = *plan_base;
    const DeviceList all = list_devices();
    request.devices = parse_device_list(choices.devices.toStdString(), all);
    request.all_devices = all.devices;
    request.kv_precision = kv_precision_for(choices, request.devices);
    // On the CPU the weights are the memory-mapped files; elsewhere the planner counts bf16.
    if (request.devices.kind == DeviceKind::cpu) request.weight_bytes = info.weights_bytes;
    request.frames = choices.frames > 0 ? choices.frames : kDefaultFrames;
    request.fps = choices.fps;
    request.context = choices.context;
    request.answer_reserve = kAnswerReserve;
    request.prefill_chunk = kPrefillChunk;
    return request;
  }

  PlanInfo make_plan(const IngestChoices& choices) {
    const PlanRequest request = request_for(choices);
    const IngestPlan planned = plan_ingest(request);
    PlanInfo plan;
    plan.frames = static_cast<qint64>(planned.frames.size());
    for (const PlannedFrame& frame : planned.frames) plan.frame_times << frame.time_seconds;
    plan.source_tokens = planned.source_tokens;
    plan.tokens_exact = planned.tokens_exact;
    plan.context = planned.context;
    plan.kv_cache = QString::fromLatin1(to_string(request.kv_precision));
    for (const DevicePlan& device : planned.devices) {
      DevicePlanInfo use;
      use.device = QString::fromStdString(device.device);
      use.ranks = device.ranks;
      use.context_tokens = device.context_tokens;
      use.weights_bytes = device.weight_bytes;
      use.kv_bytes = device.kv_cache_bytes;
      use.workspace_bytes = device.workspace_bytes;
      use.total_bytes = device.total_bytes;
      use.available_bytes = device.available_bytes;
      use.fits = device.fits;
      plan.kv_bytes += use.kv_bytes;
      plan.devices << use;
    }
    if (planned.seconds) {
      plan.decoding_s = planned.seconds->decoding;
      plan.tokenizing_s = planned.seconds->tokenizing;
      plan.prefill_s = planned.seconds->prefill * prefill_scale;
      plan.estimated_s = plan.decoding_s + plan.tokenizing_s + plan.prefill_s;
    }
    plan.fits = planned.fits;
    plan.problem = QString::fromStdString(planned.problem);
    plan.suggestion = QString::fromStdString(planned.suggestion);
    plan.max_frames = planned.max_frames;
    plan.max_fps = planned.max_fps;
    QString cannot_run;
    try {
      check_engine_support(choices);
    } catch (...) {
      cannot_run = describe_current_exception();
    }
    plan.runnable = plan.fits && cannot_run.isEmpty();
    plan.verdict = plan_verdict(plan, cannot_run);
    return plan;
  }
};

EngineWorker::EngineWorker(std::atomic<bool>& stop) : stop_(stop), state_(new State) {}
EngineWorker::~EngineWorker() = default;

void EngineWorker::loadModel(const QString& directory) {
  emit busyChanged(true);
  try {
    const fs::path dir = fs::path(directory.toStdString());
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      throw Error(ErrorKind::io, "the folder '" + dir.string() +
                                     "' does not exist; choose a model folder holding "
                                     "config.json, *.safetensors and tokenizer.model");
    }
    if (!fs::is_regular_file(dir / "config.json", ec)) {
      throw Error(ErrorKind::file_format,
                  "'" + dir.string() +
                      "' is not a model folder: it has no config.json; choose the folder that "
                      "holds config.json, *.safetensors and tokenizer.model (lwm make-model or "
                      "lwm convert make one)");
    }
    if (!fs::is_regular_file(dir / "tokenizer.model", ec)) {
      throw Error(ErrorKind::file_format,
                  "the model folder '" + dir.string() +
                      "' has no tokenizer.model; put the model's SentencePiece tokenizer there");
    }
    auto model = Model::load(dir);
    Tokenizer tokenizer(dir / "tokenizer.model");
    std::unique_ptr<Vqgan> vqgan;
    if (model->config().has_vision() && fs::is_regular_file(dir / "vqgan.safetensors", ec)) {
      vqgan = Vqgan::load(dir);
    }
    ModelInfo info;
    info.directory = QString::fromStdString(dir.string());
    fs::path normal = fs::absolute(dir).lexically_normal();
    if (normal.filename().empty()) normal = normal.parent_path();  // "models/demo/"
    info.name = QString::fromStdString(normal.filename().string());
    info.vision = vqgan != nullptr;
    info.context_window = model->config().max_sequence_length;
    info.parameters = model->config().parameter_count();
    info.weights_bytes = safetensors_bytes(dir);
    const double prefill_scale = measure_prefill_scale(*model);

    // The new model replaces the old one only once it loaded completely.
    state_->forget_session();
    state_->prefill_scale = prefill_scale;
    state_->weights_id = weights_identity(dir);
    state_->model = std::move(model);
    state_->tokenizer.emplace(std::move(tokenizer));
    state_->vqgan = std::move(vqgan);
    state_->info = info;
    emit modelLoaded(info);
  } catch (...) {
    emit failed(tr("Loading the model"), describe_current_exception());
  }
  emit busyChanged(false);
}

void EngineWorker::openSource(const QString& path) {
  emit busyChanged(true);
  try {
    const fs::path file = fs::path(path.toStdString());
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) {
      throw Error(ErrorKind::io, "the file '" + file.string() +
                                     "' does not exist or is not a file; choose another one");
    }
    SourceInfo source;
    source.path = path;
    if (looks_like_video(path)) {
      const VideoInfo video = probe_video(file);
      state_->forget_source();
      state_->kind = SourceKind::video;
      state_->video = video;
      source.kind = SourceKind::video;
      source.title = QFileInfo(path).completeBaseName();
      source.duration_s = video.duration_seconds;
      source.video_frames = video.frame_count;
      source.frame_rate = video.average_frame_rate;
      source.summary = tr("%1 video, %2×%3, %4 frames at %5 fps, %6")
                           .arg(QString::fromStdString(video.codec))
                           .arg(video.display_width)
                           .arg(video.display_height)
                           .arg(video.frame_count)
                           .arg(video.average_frame_rate, 0, 'f', 2)
                           .arg(format_timestamp(video.duration_seconds));
    } else {
      Book book = load_book(file);
      state_->forget_source();
      state_->kind = SourceKind::book;
      fill_book_source(book, source);
      state_->book_text = std::move(book.text);
    }
    state_->path = file;
    emit sourceOpened(source);
  } catch (...) {
    emit failed(tr("Opening %1").arg(QFileInfo(path).fileName()), describe_current_exception());
  }
  emit busyChanged(false);
}

void EngineWorker::plan(const IngestChoices& choices) {
  PlanInfo plan;
  try {
    state_->require_model();
    state_->require_source();
    plan = state_->make_plan(choices);
  } catch (...) {
    // An impossible choice (a device that is not there, no source) is a plan that says why.
    plan.fits = false;
    plan.runnable = false;
    plan.problem = describe_current_exception();
    plan.verdict = plan.problem;
  }
  emit planned(plan);
}

void EngineWorker::setCacheDirectory(const QString& directory, double snapshot_every_s) {
  state_->cache_dir = fs::path(directory.toStdString());
  state_->snapshot_every_s = snapshot_every_s;
}

bool EngineWorker::run_ingest(const IngestChoices& choices, IngestReport& report) {
  State& s = *state_;
  s.require_model();
  s.require_source();
  check_engine_support(choices);
  bool cached = !s.cache_dir.empty();
  if (std::error_code ec; cached && !fs::create_directories(s.cache_dir, ec) && ec) {
    // A cache that cannot be written costs the resume, not the ingest.
    qWarning("lwm-studio: the ingest cache '%s' cannot be created (%s); ingesting without it",
             s.cache_dir.c_str(), ec.message().c_str());
    cached = false;
  }
  QString stage;
  const auto reporter = [&](const Progress& progress) {
    emit ingestProgress(stage, progress.done, progress.total, progress.eta_seconds());
    return !stop_.load();
  };
  fs::path snapshot;  // the session's KV snapshot in the ingest cache
  bool snapshot_failed = false;
  double snapshot_seconds = 0.0;  // how long the last save took
  const auto save_snapshot = [&] {
    if (snapshot.empty() || snapshot_failed) return;
    try {
      const auto start = std::chrono::steady_clock::now();
      s.session->save(snapshot);
      snapshot_seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    } catch (const Error& error) {
      // The ingest goes on without a snapshot: a full disk costs the resume, not the answer.
      snapshot_failed = true;
      qWarning("lwm-studio: the KV snapshot '%s' could not be written: %s", snapshot.c_str(),
               error.what());
    }
  };
  try {
    const bool reuse = s.session && s.session_for && same_source_tokens(*s.session_for, choices) &&
                       s.session_for->context == choices.context;
    if (!reuse) {
      s.session.reset();
      s.session_for.reset();
      if (s.kind == SourceKind::video) {
        if (!s.video_tokens || !s.tokens_for || !same_source_tokens(*s.tokens_for, choices)) {
          s.video_tokens.reset();
          s.video_codes_key.clear();
          stage = QStringLiteral("decoding");
          if (cached) s.source_hash(reporter);
          FrameSamplingOptions thumbs = frame_sampling(choices);
          thumbs.resolution = kThumbnailSide;
          thumbs.progress = reporter;
          std::vector<std::uint8_t> bytes;
          sample_video_frames(s.path, thumbs, [&](const VideoFrame& frame) {
            const std::size_t n = static_cast<std::size_t>(frame.resolution) * frame.resolution * 3;
            bytes.resize(n);
            frames_to_uint8(std::span(frame.pixels, n), bytes);
            QImage image(bytes.data(), frame.resolution, frame.resolution, frame.resolution * 3,
                         QImage::Format_RGB888);
            emit thumbnail(static_cast<int>(frame.sample_index), frame.time_seconds, image.copy());
            return !stop_.load();
          });
          if (stop_.load()) throw Error(ErrorKind::cancelled, "decoding cancelled");
          stage = QStringLiteral("tokenizing");
          FrameSamplingOptions sampling = frame_sampling(choices);
          sampling.progress = reporter;
          if (cached) {
            // Frame codes go to the disk as they are computed: a cancel or a kill keeps them.
            CachedVideoTokens tokens =
                tokenize_video_cached(s.path, *s.vqgan, sampling, s.cache_dir, s.source_sha256);
            s.video_tokens = std::move(tokens.tokens);
            s.frames_from_cache = tokens.frames_from_cache;
            s.video_codes_key = tokens.cache_file.stem().string();
          } else {
            s.video_tokens = tokenize_video(s.path, *s.vqgan, sampling);
            s.frames_from_cache = 0;
          }
          s.tokens_for = choices;
        }
        report.frames = s.video_tokens->codes.frames();
        report.frames_from_cache = s.frames_from_cache;
        stage = QStringLiteral("tokenizing");
        emit ingestProgress(stage, 0, 1, -1.0);
        s.session = Session::for_video(*s.model, *s.tokenizer, s.video_tokens->codes,
                                       session_options(choices));
      } else {
        stage = QStringLiteral("tokenizing");
        emit ingestProgress(stage, 0, 1, -1.0);
        s.session =
            Session::for_text(*s.model, *s.tokenizer, s.book_text, session_options(choices));
      }
      s.session_for = choices;
      if (cached) snapshot = s.snapshot_path();
      if (!snapshot.empty()) {
        std::error_code ec;
        if (fs::exists(snapshot, ec)) {
          try {
            report.restored_tokens = s.session->restore(snapshot);
          } catch (const Error& error) {
            // Damaged, another model's, or more than this context holds: computed again.
            qWarning("lwm-studio: the KV snapshot '%s' is not used: %s", snapshot.c_str(),
                     error.what());
          }
        }
      }
      emit ingestProgress(stage, 1, 1, 0.0);
    } else {
      if (cached) snapshot = s.snapshot_path();
      report.frames = s.video_tokens ? s.video_tokens->codes.frames() : 0;
      report.frames_from_cache = s.frames_from_cache;
    }
    stage = QStringLiteral("prefill");
    const std::int64_t before = s.session->cached_tokens();
    const auto start = std::chrono::steady_clock::now();
    auto last_snapshot = start;
    s.session->ingest([&](const Progress& progress) {
      // Every `snapshot_every_s` the cache so far goes to the disk, before the UI hears of it: a
      // kill loses at most that much prefill. Each save writes the whole cache, so saves are
      // also kept 4 × their own duration apart: at most a fifth of the time goes to them.
      const auto now = std::chrono::steady_clock::now();
      if (std::chrono::duration<double>(now - last_snapshot).count() >=
          std::max(s.snapshot_every_s, 4.0 * snapshot_seconds)) {
        save_snapshot();
        last_snapshot = now;
      }
      return reporter(progress);
    });
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::int64_t computed = s.session->cached_tokens() - before;
    report.prefilled_tokens = computed;
    if (computed > 0) save_snapshot();
    // Later plans estimate from what this machine did on real chunks.
    if (computed >= 64 && seconds > 0) {
      const double planned = planned_prefill_seconds(s.model->config(), computed);
      if (planned > 0) s.prefill_scale = seconds / planned;
    }
    report.source_tokens = s.session->plan().source_tokens;
    report.cached_tokens = s.session->cached_tokens();
    return true;
  } catch (const Error& error) {
    if (error.kind() != ErrorKind::cancelled) throw;
    if (s.session) {
      report.source_tokens = s.session->plan().source_tokens;
      report.cached_tokens = s.session->cached_tokens();
      if (stage == QLatin1String("prefill")) save_snapshot();
    }
    report.stage = stage;
    emit ingestCancelled(report);
    return false;
  }
}

void EngineWorker::ingest(const IngestChoices& choices) {
  emit busyChanged(true);
  QElapsedTimer timer;
  timer.start();
  try {
    IngestReport report;
    if (run_ingest(choices, report)) {
      report.seconds = timer.elapsed() / 1000.0;
      emit ingestFinished(report);
    }
  } catch (...) {
    emit failed(tr("Ingesting"), describe_current_exception());
  }
  emit busyChanged(false);
}

void EngineWorker::ask(const QString& question, const IngestChoices& choices,
                       const GenerationSettings& settings) {
  emit busyChanged(true);
  emit answerStarted();
  QElapsedTimer timer;
  timer.start();
  AnswerStats stats;
  try {
    // Also when the source is ingested already: a session made on the CPU with an f32 cache
    // never answers for choices that now say a GPU or another precision.
    check_engine_support(choices);
    if (!state_->session || !state_->session_for ||
        !same_source_tokens(*state_->session_for, choices) ||
        state_->session_for->context != choices.context ||
        state_->session->cached_tokens() < state_->session->plan().source_tokens) {
      IngestReport report;
      if (!run_ingest(choices, report)) {
        emit answerFinished(stats, AnswerEnd::stopped, QString());
        emit busyChanged(false);
        return;
      }
    }
    GenerationOptions options;
    options.max_new_tokens = settings.max_new_tokens;
    options.sampling.temperature = static_cast<float>(settings.temperature);
    options.sampling.top_k = settings.top_k;
    options.sampling.top_p = static_cast<float>(settings.top_p);
    options.sampling.seed = settings.seed;
    std::string streamed;
    const auto emit_text = [&](std::string_view text) {
      streamed += text;
      emit answerText(QString::fromUtf8(text.data(), static_cast<qsizetype>(text.size())));
    };
    const auto on_token = [&](std::int32_t, std::string_view text) {
      if (stats.time_to_first_token_s < 0) stats.time_to_first_token_s = timer.elapsed() / 1000.0;
      if (!text.empty()) emit_text(text);
      return !stop_.load();
    };
    const auto on_prefill = [&](const Progress&) { return !stop_.load(); };
    const AskResult result =
        state_->session->ask(question.toStdString(), options, on_token, on_prefill);
    const GenerationResult& g = result.generation;
    // The streamer holds back an incomplete UTF-8 character; the result has it at the end.
    if (g.text.size() > streamed.size() && std::string_view(g.text).starts_with(streamed)) {
      emit_text(std::string_view(g.text).substr(streamed.size()));
    }
    stats.reused_tokens = result.reused_tokens;
    stats.prompt_tokens = result.reused_tokens + g.prompt_tokens;
    stats.generated_tokens = static_cast<qint64>(g.tokens.size());
    stats.prefill_tokens_per_s =
        g.prefill_seconds > 0 ? static_cast<double>(g.prompt_tokens) / g.prefill_seconds : -1.0;
    stats.decode_tokens_per_s = g.decode_tokens_per_second();
    emit answerFinished(stats, answer_end(g.stop_reason), QString());
  } catch (const Error& error) {
    if (error.kind() == ErrorKind::cancelled) {
      emit answerFinished(stats, AnswerEnd::stopped, QString());
    } else {
      const QString message = describe_current_exception();
      emit answerFinished(stats, AnswerEnd::failed, message);
      emit failed(tr("Answering"), message);
    }
  } catch (...) {
    const QString message = describe_current_exception();
    emit answerFinished(stats, AnswerEnd::failed, message);
    emit failed(tr("Answering"), message);
  }
  emit busyChanged(false);
}

// ---------------------------------------------------------------------------------------------

Engine::Engine(QObject* parent) : QObject(parent) {
  register_engine_types();
  worker_ = new EngineWorker(stop_);
  worker_->moveToThread(&thread_);
  // Each worker signal is relayed as an Engine signal (a queued signal-to-signal connection)
  // rather than connected by the window straight to the worker: receivers that connect directly
  // (QSignalSpy always does) would then run in the worker's thread. Through the relay every
  // receiver of Engine's signals runs in the UI thread, whatever connection type it asks for.
  const auto relay = [this](auto from, auto to) {
    connect(worker_, from, this, to, Qt::QueuedConnection);
  };
  relay(&EngineWorker::modelLoaded, &Engine::modelLoaded);
  relay(&EngineWorker::sourceOpened, &Engine::sourceOpened);
  relay(&EngineWorker::planned, &Engine::planned);
  relay(&EngineWorker::ingestProgress, &Engine::ingestProgress);
  relay(&EngineWorker::thumbnail, &Engine::thumbnail);
  relay(&EngineWorker::ingestFinished, &Engine::ingestFinished);
  relay(&EngineWorker::ingestCancelled, &Engine::ingestCancelled);
  relay(&EngineWorker::answerStarted, &Engine::answerStarted);
  relay(&EngineWorker::answerText, &Engine::answerText);
  relay(&EngineWorker::answerFinished, &Engine::answerFinished);
  relay(&EngineWorker::failed, &Engine::failed);
  relay(&EngineWorker::busyChanged, &Engine::busyChanged);
  connect(this, &Engine::busyChanged, this, [this](bool busy) { busy_ = busy; });
  thread_.setObjectName(QStringLiteral("lwm-engine"));
  thread_.start();
}

Engine::~Engine() {
  stop_.store(true);
  thread_.quit();
  thread_.wait();
  delete worker_;  // the thread has finished: nothing else can touch it now
}

void Engine::arm() {
  stop_.store(false);
}

void Engine::loadModel(const QString& directory) {
  QMetaObject::invokeMethod(
      worker_, [w = worker_, directory] { w->loadModel(directory); }, Qt::QueuedConnection);
}

void Engine::openSource(const QString& path) {
  QMetaObject::invokeMethod(
      worker_, [w = worker_, path] { w->openSource(path); }, Qt::QueuedConnection);
}

void Engine::plan(const IngestChoices& choices) {
  QMetaObject::invokeMethod(
      worker_, [w = worker_, choices] { w->plan(choices); }, Qt::QueuedConnection);
}

void Engine::ingest(const IngestChoices& choices) {
  arm();
  QMetaObject::invokeMethod(
      worker_, [w = worker_, choices] { w->ingest(choices); }, Qt::QueuedConnection);
}

void Engine::ask(const QString& question, const IngestChoices& choices,
                 const GenerationSettings& settings) {
  arm();
  QMetaObject::invokeMethod(
      worker_, [w = worker_, question, choices, settings] { w->ask(question, choices, settings); },
      Qt::QueuedConnection);
}

void Engine::setCacheDirectory(const QString& directory, double snapshot_every_s) {
  QMetaObject::invokeMethod(
      worker_,
      [w = worker_, directory, snapshot_every_s] {
        w->setCacheDirectory(directory, snapshot_every_s);
      },
      Qt::QueuedConnection);
}

QString default_cache_directory() {
  return QStandardPaths::writableLocation(QStandardPaths::CacheLocation) +
         QStringLiteral("/ingest");
}

void Engine::stop() {
  stop_.store(true);
}

}  // namespace lwm::gui
