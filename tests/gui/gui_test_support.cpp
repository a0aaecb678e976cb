#include "gui_test_support.h"

#include <QDebug>
#include <QFile>
#include <QProcess>
#include <QTextStream>
#include <QUuid>
#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "lwm/model_maker.h"
#include "lwm/tokenizer.h"
#include "lwm/vqgan.h"

namespace lwm::gui::test {

quint64 test_seed() {
  static const quint64 seed = [] {
    if (const char* env = std::getenv("LWM_TEST_SEED"))
      return quint64(std::strtoull(env, nullptr, 10));
    return quint64(std::chrono::system_clock::now().time_since_epoch().count());
  }();
  return seed;
}

void log_seed(const char* suite) {
  qInfo("%s: LWM_TEST_SEED=%llu replays this run", suite,
        static_cast<unsigned long long>(test_seed()));
}

QByteArray read_file(const QString& path) {
  QFile file(path);
  return file.open(QIODevice::ReadOnly) ? file.readAll() : QByteArray();
}

bool write_file(const QString& path, const QByteArray& bytes) {
  QFile file(path);
  return file.open(QIODevice::WriteOnly | QIODevice::Truncate) && file.write(bytes) == bytes.size();
}

QString random_text(std::mt19937_64& rng, int max_length) {
  // [first, last] code point ranges; a mix that exercises UTF-8 of 1 to 4 bytes and JSON escapes.
  static constexpr char32_t kRanges[][2] = {
      {0x20, 0x7e},       {0x20, 0x7e},       {0x20, 0x7e},   {0xa0, 0xff},     {0x391, 0x3c9},
      {0x410, 0x44f},     {0x5d0, 0x5ea},     {0x627, 0x64a}, {0x4e00, 0x9fff}, {0x300, 0x36f},
      {0x1f300, 0x1f64f}, {0x1f900, 0x1f9ff}, {'\n', '\n'},   {'\t', '\t'},     {'"', '"'},
      {'\\', '\\'},       {0x1, 0x1f}};
  std::uniform_int_distribution<int> length_dist(0, max_length);
  std::uniform_int_distribution<std::size_t> range_dist(0, std::size(kRanges) - 1);
  const int length = length_dist(rng);
  QString text;
  for (int i = 0; i < length; ++i) {
    const auto& range = kRanges[range_dist(rng)];
    const char32_t code = char32_t(std::uniform_int_distribution<quint32>(range[0], range[1])(rng));
    text += QString::fromUcs4(&code, 1);
  }
  return text;
}

namespace {

QDateTime random_time(std::mt19937_64& rng) {
  // 2001 … 2040, millisecond resolution, as the files keep it.
  const qint64 ms = std::uniform_int_distribution<qint64>(978'307'200'000, 2'208'988'800'000)(rng);
  return QDateTime::fromMSecsSinceEpoch(ms, Qt::UTC);
}

double random_rate(std::mt19937_64& rng) {
  return std::bernoulli_distribution(0.2)(rng)
             ? -1.0
             : std::uniform_real_distribution<double>(0, 5e4)(rng);
}

}  // namespace

ChatRecord random_chat(std::mt19937_64& rng, int messages) {
  ChatRecord chat;
  chat.id = QUuid::createUuid().toString(QUuid::WithoutBraces);
  chat.title = random_text(rng, 40);
  chat.model_dir = QStringLiteral("/models/") + random_text(rng, 12);
  chat.source_kind = SourceKind(std::uniform_int_distribution<int>(0, 2)(rng));
  chat.source_path = QStringLiteral("/media/") + random_text(rng, 20) + QStringLiteral(".mp4");
  chat.source_sha256 = QString::number(rng(), 16).repeated(4).left(64);
  chat.choices.frames = std::uniform_int_distribution<qint64>(0, 4096)(rng);
  chat.choices.fps = std::uniform_real_distribution<double>(0, 30)(rng);
  chat.choices.devices = std::bernoulli_distribution(0.5)(rng) ? "cpu" : "cuda:0,1";
  chat.choices.kv_cache = std::bernoulli_distribution(0.5)(rng) ? "bf16" : "int8";
  chat.choices.context = std::uniform_int_distribution<qint64>(0, qint64(1) << 40)(rng);
  chat.created = random_time(rng);
  chat.updated = random_time(rng);
  for (int i = 0; i < messages; ++i) {
    ChatMessage message;
    message.role = i % 2 == 0 ? ChatMessage::Role::user : ChatMessage::Role::assistant;
    message.text = random_text(rng, i % 2 == 0 ? 200 : 1200);
    message.time = random_time(rng);
    if (message.role == ChatMessage::Role::assistant) {
      message.end = AnswerEnd(std::uniform_int_distribution<int>(1, 4)(rng));
      if (message.end == AnswerEnd::failed) message.error = random_text(rng, 80);
      message.stats.prompt_tokens = std::uniform_int_distribution<qint64>(0, 2'000'000)(rng);
      message.stats.reused_tokens =
          std::uniform_int_distribution<qint64>(0, message.stats.prompt_tokens)(rng);
      message.stats.generated_tokens = std::uniform_int_distribution<qint64>(0, 4096)(rng);
      message.stats.time_to_first_token_s = random_rate(rng);
      message.stats.prefill_tokens_per_s = random_rate(rng);
      message.stats.decode_tokens_per_s = random_rate(rng);
    }
    chat.messages.append(message);
  }
  return chat;
}

namespace {

template <typename T>
QString describe(const T& value) {
  QString text;
  QDebug(&text).nospace() << value;
  return text;
}

}  // namespace

QString first_difference(const ChatRecord& a, const ChatRecord& b) {
#define LWM_COMPARE(field)                                                            \
  if (!(a.field == b.field))                                                          \
    return QStringLiteral(#field ": ") + describe(a.field) + QStringLiteral(" != ") + \
           describe(b.field);
  LWM_COMPARE(id)
  LWM_COMPARE(title)
  LWM_COMPARE(model_dir)
  LWM_COMPARE(source_path) LWM_COMPARE(source_sha256) LWM_COMPARE(choices.frames)
      LWM_COMPARE(choices.fps) LWM_COMPARE(choices.devices) LWM_COMPARE(choices.kv_cache)
          LWM_COMPARE(choices.context) LWM_COMPARE(created) LWM_COMPARE(updated)
              LWM_COMPARE(messages.size()) if (a.source_kind !=
                                               b.source_kind) return QStringLiteral("source_kind");
#undef LWM_COMPARE
  for (qsizetype i = 0; i < a.messages.size(); ++i) {
    const ChatMessage& x = a.messages[i];
    const ChatMessage& y = b.messages[i];
    const QString at = QStringLiteral("messages[%1].").arg(i);
#define LWM_COMPARE(field)                                                                 \
  if (!(x.field == y.field))                                                               \
    return at + QStringLiteral(#field ": ") + describe(x.field) + QStringLiteral(" != ") + \
           describe(y.field);
    LWM_COMPARE(text)
    LWM_COMPARE(time)
    LWM_COMPARE(error)
        LWM_COMPARE(stats.prompt_tokens) LWM_COMPARE(stats.reused_tokens)
            LWM_COMPARE(stats.generated_tokens) LWM_COMPARE(stats.time_to_first_token_s)
                LWM_COMPARE(stats.prefill_tokens_per_s) LWM_COMPARE(stats.decode_tokens_per_s)
#undef LWM_COMPARE
                    if (x.role != y.role) return at +
        QStringLiteral("role");
    if (x.end != y.end) return at + QStringLiteral("end");
  }
  return {};
}

QString make_tiny_model(const QTemporaryDir& dir, const QString& name, bool vision, quint64 seed) {
  const std::filesystem::path model = (dir.path() + '/' + name).toStdString();
  const std::filesystem::path tokenizer =
      (dir.path() + '/' + name + QStringLiteral("-tokenizer.model")).toStdString();
  train_tokenizer(
      {std::filesystem::path(LWM_SOURCE_DIR) / "resources/samples/lighthouse-keeper.txt"},
      tokenizer, TokenizerTrainingOptions{.vocab_size = 512});
  ModelMakerOptions options;
  options.config = ModelConfig::preset(vision ? "tiny-vision" : "tiny");
  options.config.convention = WeightConvention::jax;
  options.config.convention_known = true;
  options.config.torch_dtype = DType::f32;
  options.dtype = DType::f32;
  options.seed = seed;
  options.tokenizer_model = tokenizer;
  make_random_model(model, options);
  if (vision) {
    VqganMakerOptions vqgan;
    vqgan.config = VqganConfig::preset("tiny");
    vqgan.seed = seed + 1;
    make_random_vqgan(model, vqgan);
  }
  return QString::fromStdString(model.string());
}

QString write_book(const QTemporaryDir& dir, int chapters, int paragraphs) {
  const char* seasons[] = {"winter", "spring", "summer", "autumn", "the long night"};
  QString text = QStringLiteral("# The Keeper's Year\n\n");
  for (int c = 1; c <= chapters; ++c) {
    const QString season = QString::fromLatin1(seasons[(c - 1) % 5]);
    text += QStringLiteral("# Chapter %1: %2\n\n").arg(c).arg(season);
    for (int p = 1; p <= paragraphs; ++p) {
      text += QStringLiteral(
                  "In %1 the keeper climbed the ninety-four steps, trimmed the wick and "
                  "wrote the weather in the logbook, paragraph %2 of chapter %3.\n\n")
                  .arg(season)
                  .arg(p)
                  .arg(c);
    }
  }
  const QString path = dir.filePath(QStringLiteral("generated-book.md"));
  return write_file(path, text.toUtf8()) ? path : QString();
}

QString write_video(const QTemporaryDir& dir, int seconds) {
  const QString path = dir.filePath(QStringLiteral("generated-video.mp4"));
  QProcess ffmpeg;
  ffmpeg.start(QStringLiteral("ffmpeg"),
               {"-loglevel", "error", "-y", "-f", "lavfi", "-i",
                QStringLiteral("testsrc2=size=64x48:rate=8:duration=%1").arg(seconds), "-pix_fmt",
                "yuv420p", "-c:v", "libx264", path});
  if (!ffmpeg.waitForFinished(60000) || ffmpeg.exitStatus() != QProcess::NormalExit ||
      ffmpeg.exitCode() != 0) {
    return {};
  }
  return path;
}

}  // namespace lwm::gui::test
