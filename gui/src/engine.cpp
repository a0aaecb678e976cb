#include "lwm/gui/engine.h"
#include "lwm/gui/text_format.h"

#include <QElapsedTimer>
#include <QFileInfo>
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
#include "lwm/model.h"
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
  return choices;
}

void register_engine_types() {
  qRegisterMetaType<ModelInfo>();
  qRegisterMetaType<SourceInfo>();
  qRegisterMetaType<PlanInfo>();
  qRegisterMetaType<IngestChoices>();
  qRegisterMetaType<GenerationSettings>();
  qRegisterMetaType<AnswerStats>();
  qRegisterMetaType<AnswerEnd>();
}

namespace {

// Tokens kept free for the question and the answer when the context is sized to the source.
constexpr std::int64_t kAnswerReserve = 512;
// Side of the timeline thumbnails decoded in the "decoding" stage.
constexpr int kThumbnailSide = 96;

struct Cancelled {};

SessionOptions session_options(const IngestChoices& choices) {
  SessionOptions options;
  options.context = choices.context;
  options.answer_reserve = kAnswerReserve;
  options.prefill_chunk = 256;
  return options;
}

FrameSamplingOptions frame_sampling(const IngestChoices& choices) {
  FrameSamplingOptions sampling;
  if (choices.fps > 0) {
    sampling.selection = FrameSelection::rate;
    sampling.frames_per_second = choices.fps;
  } else {
    sampling.max_frames = choices.frames > 0 ? choices.frames : 8;  // LWM's chat default
  }
  return sampling;
}

// Choices that change the tokens of the source (devices and cache precision do not, on the CPU).
bool same_source_tokens(const IngestChoices& a, const IngestChoices& b) {
  return a.frames == b.frames && a.fps == b.fps;
}

// The devices and cache precision this build can honour; anything else is an error, never a
// silent substitution. The core names the devices there are (parse_device_list) and those a
// session cannot run on yet (check_session_devices).
void check_devices(const IngestChoices& choices) {
  check_session_devices(parse_device_list(choices.devices.toStdString(), list_devices()));
  if (choices.kv_cache != "auto" && choices.kv_cache != "f32") {
    throw Error(ErrorKind::unsupported,
                "a " + choices.kv_cache.toStdString() +
                    " KV cache needs a GPU; the CPU backend keeps the cache in f32, so choose "
                    "f32 or auto");
  }
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

// Prefill rate of this model on this machine: the faster of two short forward passes (the
// first one also pays for page faults on the memory-mapped weights).
double measure_prefill_rate(const Model& model) {
  constexpr std::int64_t n = 16;
  std::vector<std::int32_t> tokens(n, model.config().bos_token_id);
  double best = 0.0;
  for (int run = 0; run < 2; ++run) {
    KVCache cache(model.config(), n);
    const auto start = std::chrono::steady_clock::now();
    model.forward(tokens, cache, LogitsFor::none, nullptr);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds > 0) best = std::max(best, static_cast<double>(n) / seconds);
  }
  return best;
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
  // The source.
  SourceKind kind = SourceKind::none;
  fs::path path;
  std::string book_text;
  VideoInfo video;
  // What ingest computed, kept across a cancel.
  std::optional<IngestChoices> tokens_for;  // the choices `video_tokens` were made with
  std::optional<VideoTokens> video_tokens;
  std::unique_ptr<Session> session;
  std::optional<IngestChoices> session_for;

  void forget_source() {
    kind = SourceKind::none;
    book_text.clear();
    video = {};
    session.reset();
    session_for.reset();
    video_tokens.reset();
    tokens_for.reset();
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

  // Dummy codes with the layout the VQGAN will produce, for plans made before decoding.
  VideoCodes planned_codes(std::int64_t frames) const {
    VideoCodes codes;
    codes.codes_per_frame = vqgan->config().tokens_per_frame();
    codes.vocabulary.codebook_size = static_cast<std::int32_t>(vqgan->config().num_embeddings);
    codes.codes.assign(static_cast<std::size_t>(frames * codes.codes_per_frame), 0);
    return codes;
  }

  std::int64_t planned_frames(const IngestChoices& choices) const {
    const std::int64_t in_video = std::max<std::int64_t>(video.frame_count, 1);
    if (choices.fps > 0) {
      return std::clamp<std::int64_t>(
          static_cast<std::int64_t>(std::ceil(video.duration_seconds * choices.fps)), 1, in_video);
    }
    return std::min<std::int64_t>(choices.frames > 0 ? choices.frames : 8, in_video);
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
    info.kv_bytes_per_token = model->config().kv_bytes_per_token(DType::f32);
    info.prefill_tokens_per_s = measure_prefill_rate(*model);

    // The new model replaces the old one only once it loaded completely.
    state_->session.reset();
    state_->session_for.reset();
    state_->video_tokens.reset();
    state_->tokens_for.reset();
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
    const State& s = *state_;
    plan.devices = choices.devices.split(',', Qt::SkipEmptyParts);
    plan.weights_bytes = s.info.weights_bytes;
    plan.available_bytes = available_memory_bytes();
    check_devices(choices);
    const SessionOptions options = session_options(choices);
    SessionPlan session_plan;
    std::int64_t overhead = 0;  // tokens beside the frames
    std::int64_t per_frame = 0;
    if (s.kind == SourceKind::video) {
      plan.frames = s.planned_frames(choices);
      per_frame = s.vqgan->config().tokens_per_frame() + 1;  // codes and a delimiter (§2.3)
      // Far too many frames for the model: say so without building a prompt that large.
      const std::int64_t limit = s.model->config().max_sequence_length;
      if (plan.frames * per_frame >= limit) {
        throw Error(ErrorKind::out_of_memory,
                    std::to_string(plan.frames) + " frames are at least " +
                        std::to_string(plan.frames * per_frame) +
                        " tokens, more than the model's context of " + std::to_string(limit));
      }
      // Counted before the frames are decoded: the prompt of that many frames of zero codes.
      session_plan =
          Session::plan_video(*s.model, *s.tokenizer, s.planned_codes(plan.frames), options);
      overhead = session_plan.source_tokens - plan.frames * per_frame;
    } else {
      session_plan = Session::plan_text(*s.model, *s.tokenizer, s.book_text, options);
    }
    plan.source_tokens = session_plan.source_tokens;
    plan.context = session_plan.context;
    plan.kv_bytes = session_plan.kv_cache_bytes;
    if (s.info.prefill_tokens_per_s > 0) {
      plan.estimated_s = static_cast<double>(plan.source_tokens) / s.info.prefill_tokens_per_s;
    }
    const qint64 needed = plan.kv_bytes + plan.weights_bytes;
    plan.fits = needed <= plan.available_bytes;
    if (plan.fits) {
      // "about" only in front of a real estimate ("prefill under 0.1 s", not "about under").
      const QString prefill = plan.estimated_s < 0 ? tr("prefill time not known yet")
                              : plan.estimated_s < 0.05
                                  ? tr("prefill %1").arg(format_duration(plan.estimated_s))
                                  : tr("prefill about %1").arg(format_duration(plan.estimated_s));
      plan.verdict = tr("Fits on %1: %2 tokens in a context of %3; KV cache %4 + weights %5 of "
                        "%6 free; %7.")
                         .arg(plan.devices.join(", "))
                         .arg(plan.source_tokens)
                         .arg(plan.context)
                         .arg(format_bytes(plan.kv_bytes), format_bytes(plan.weights_bytes),
                              format_bytes(plan.available_bytes), prefill);
    } else {
      const qint64 tokens_in_memory =
          s.info.kv_bytes_per_token > 0
              ? std::max<qint64>(0, plan.available_bytes - plan.weights_bytes) /
                    s.info.kv_bytes_per_token
              : 0;
      QString would = tr("a smaller context");
      if (s.kind == SourceKind::video && per_frame > 0) {
        const qint64 frames = (tokens_in_memory - kAnswerReserve - overhead) / per_frame;
        would = frames > 0 ? tr("at most %1 frames").arg(frames) : tr("a machine with more memory");
      }
      plan.verdict = tr("Will not fit: the KV cache (%1) and the weights (%2) need %3, but %4 is "
                        "free on %5. Choose %6.")
                         .arg(format_bytes(plan.kv_bytes), format_bytes(plan.weights_bytes),
                              format_bytes(needed), format_bytes(plan.available_bytes),
                              plan.devices.join(", "), would);
    }
  } catch (const Error& error) {
    // A source that does not fit the context is a plan, not a failure: say what would.
    plan.fits = false;
    const bool too_large = error.kind() == ErrorKind::out_of_memory ||
                           std::string_view(error.what()).find("context") != std::string_view::npos;
    plan.verdict = too_large ? tr("Will not fit: %1.").arg(QString::fromStdString(error.what()))
                             : describe_current_exception();
    if (state_->kind == SourceKind::video && state_->vqgan && state_->model &&
        error.kind() == ErrorKind::out_of_memory) {
      const qint64 per_frame = state_->vqgan->config().tokens_per_frame() + 1;
      const qint64 limit = state_->model->config().max_sequence_length - kAnswerReserve;
      plan.verdict += tr(" At most about %1 frames fit this model's context.")
                          .arg(std::max<qint64>(limit / per_frame - 1, 0));
    }
  } catch (...) {
    plan.fits = false;
    plan.verdict = describe_current_exception();
  }
  emit planned(plan);
}

bool EngineWorker::run_ingest(const IngestChoices& choices) {
  State& s = *state_;
  s.require_model();
  s.require_source();
  check_devices(choices);
  QString stage;
  const auto reporter = [&](const Progress& progress) {
    emit ingestProgress(stage, progress.done, progress.total, progress.eta_seconds());
    return !stop_.load();
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
          stage = QStringLiteral("decoding");
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
          s.video_tokens = tokenize_video(s.path, *s.vqgan, sampling);
          s.tokens_for = choices;
        }
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
      emit ingestProgress(stage, 1, 1, 0.0);
    }
    stage = QStringLiteral("prefill");
    const std::int64_t before = s.session->cached_tokens();
    const auto start = std::chrono::steady_clock::now();
    s.session->ingest(reporter);
    // Later plans estimate from the rate this machine reached on real chunks.
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::int64_t computed = s.session->cached_tokens() - before;
    if (computed >= 64 && seconds > 0) s.info.prefill_tokens_per_s = computed / seconds;
    return true;
  } catch (const Error& error) {
    if (error.kind() != ErrorKind::cancelled) throw;
    emit ingestCancelled(stage, s.session ? s.session->cached_tokens() : 0);
    return false;
  }
}

void EngineWorker::ingest(const IngestChoices& choices) {
  emit busyChanged(true);
  QElapsedTimer timer;
  timer.start();
  try {
    if (run_ingest(choices)) {
      emit ingestFinished(state_->session->cached_tokens(), timer.elapsed() / 1000.0);
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
    if (!state_->session || !state_->session_for ||
        !same_source_tokens(*state_->session_for, choices) ||
        state_->session_for->context != choices.context ||
        state_->session->cached_tokens() < state_->session->plan().source_tokens) {
      if (!run_ingest(choices)) {
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

void Engine::stop() {
  stop_.store(true);
}

}  // namespace lwm::gui
