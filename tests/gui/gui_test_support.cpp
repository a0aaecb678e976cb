#include "gui_test_support.h"

#include <QDateTime>
#include <QDir>
#include <QFile>
#include <QProcess>
#include <QTextStream>

#include "lwm/model_maker.h"
#include "lwm/tokenizer.h"
#include "lwm/vqgan.h"

namespace lwm::gui::test {

quint64 test_seed() {
  const QByteArray fixed = qgetenv("LWM_TEST_SEED");
  if (!fixed.isEmpty()) return fixed.toULongLong();
  return static_cast<quint64>(QDateTime::currentMSecsSinceEpoch());
}

QString make_tiny_model(const QTemporaryDir& dir, const QString& name, bool vision, quint64 seed) {
  const std::filesystem::path model = (dir.path() + '/' + name).toStdString();
  const std::filesystem::path tokenizer = (dir.path() + "/" + name + "-tokenizer.model").toStdString();
  train_tokenizer({std::filesystem::path(LWM_SOURCE_DIR) / "resources/samples/lighthouse-keeper.txt"},
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
  const QString path = dir.filePath(QStringLiteral("generated-book.md"));
  QFile file(path);
  if (!file.open(QIODevice::WriteOnly | QIODevice::Truncate)) return {};
  QTextStream out(&file);
  out << "# The Keeper's Year\n\n";
  const char* seasons[] = {"winter", "spring", "summer", "autumn", "the long night"};
  for (int c = 1; c <= chapters; ++c) {
    out << "# Chapter " << c << ": " << seasons[(c - 1) % 5] << "\n\n";
    for (int p = 0; p < paragraphs; ++p) {
      out << "In " << seasons[(c - 1) % 5] << " the keeper climbed the ninety-four steps, "
          << "trimmed the wick and wrote the weather in the logbook, paragraph " << p + 1
          << " of chapter " << c << ".\n\n";
    }
  }
  return path;
}

QString write_video(const QTemporaryDir& dir, int seconds) {
  const QString path = dir.filePath(QStringLiteral("generated-video.mp4"));
  QProcess ffmpeg;
  ffmpeg.start(QStringLiteral("ffmpeg"),
               {"-loglevel", "error", "-y", "-f", "lavfi", "-i",
                QStringLiteral("testsrc2=size=64x48:rate=8:duration=%1").arg(seconds), "-pix_fmt",
                "yuv420p", "-c:v", "libx264", path});
  if (!ffmpeg.waitForFinished(60000) || ffmpeg.exitCode() != 0) return {};
  return path;
}

}  // namespace lwm::gui::test
