#include "lwm/gui/app_settings.h"

#include <QDir>
#include <QFileInfo>
#include <algorithm>
#include <cmath>

namespace lwm::gui {
namespace {

// A stored value of the right type within [low, high], or the fallback.
double read_double(const QSettings& settings, const QString& key, double fallback, double low,
                   double high) {
  bool ok = false;
  const double value = settings.value(key).toDouble(&ok);
  return ok && std::isfinite(value) && value >= low && value <= high ? value : fallback;
}

int read_int(const QSettings& settings, const QString& key, int fallback, int low, int high) {
  bool ok = false;
  const int value = settings.value(key).toInt(&ok);
  return ok && value >= low && value <= high ? value : fallback;
}

const SamplingSettings kDefaultSampling;
constexpr double kMaxTemperature = 2.0;
constexpr int kMaxTopK = 1000;
constexpr int kMaxTokens = 1'000'000;
constexpr int kMinFontSize = 6;
constexpr int kMaxFontSize = 48;
const QStringList kKvCachePrecisions{"auto", "f32", "bf16", "int8"};

QString clean_absolute(const QString& path) {
  return QDir::cleanPath(QFileInfo(path).absoluteFilePath());
}

}  // namespace

QString to_string(Theme theme) {
  switch (theme) {
    case Theme::light:
      return QStringLiteral("light");
    case Theme::dark:
      return QStringLiteral("dark");
    case Theme::system:
      break;
  }
  return QStringLiteral("system");
}

AppSettings::AppSettings() : settings_(std::make_unique<QSettings>()) {}

AppSettings::AppSettings(const QString& ini_path)
    : settings_(std::make_unique<QSettings>(ini_path, QSettings::IniFormat)) {}

AppSettings::~AppSettings() = default;

SamplingSettings AppSettings::sampling() const {
  const QSettings& s = *settings_;
  SamplingSettings out;
  out.temperature =
      read_double(s, "sampling/temperature", kDefaultSampling.temperature, 0.0, kMaxTemperature);
  out.top_k = read_int(s, "sampling/top_k", kDefaultSampling.top_k, 0, kMaxTopK);
  out.top_p = read_double(s, "sampling/top_p", kDefaultSampling.top_p, 1e-6, 1.0);
  out.max_tokens = read_int(s, "sampling/max_tokens", kDefaultSampling.max_tokens, 1, kMaxTokens);
  bool ok = false;
  const quint64 seed = s.value("sampling/seed").toULongLong(&ok);
  out.seed = ok ? seed : kDefaultSampling.seed;
  return out;
}

void AppSettings::set_sampling(const SamplingSettings& sampling) {
  settings_->setValue("sampling/temperature",
                      std::clamp(sampling.temperature, 0.0, kMaxTemperature));
  settings_->setValue("sampling/top_k", std::clamp(sampling.top_k, 0, kMaxTopK));
  settings_->setValue("sampling/top_p", std::clamp(sampling.top_p, 1e-6, 1.0));
  settings_->setValue("sampling/max_tokens", std::clamp(sampling.max_tokens, 1, kMaxTokens));
  settings_->setValue("sampling/seed", sampling.seed);
}

QString AppSettings::devices() const {
  const QString devices = settings_->value("engine/devices").toString().trimmed();
  return devices.isEmpty() ? QStringLiteral("cpu") : devices;
}

void AppSettings::set_devices(const QString& devices) {
  settings_->setValue("engine/devices", devices.trimmed());
}

QString AppSettings::kv_cache() const {
  const QString precision = settings_->value("engine/kv_cache").toString();
  return kKvCachePrecisions.contains(precision) ? precision : QStringLiteral("auto");
}

void AppSettings::set_kv_cache(const QString& precision) {
  settings_->setValue("engine/kv_cache",
                      kKvCachePrecisions.contains(precision) ? precision : QStringLiteral("auto"));
}

Theme AppSettings::theme() const {
  const QString name = settings_->value("appearance/theme").toString();
  for (Theme theme : {Theme::light, Theme::dark}) {
    if (name == to_string(theme)) return theme;
  }
  return Theme::system;
}

void AppSettings::set_theme(Theme theme) {
  settings_->setValue("appearance/theme", to_string(theme));
}

int AppSettings::font_size() const {
  return read_int(*settings_, "appearance/font_size", 0, kMinFontSize, kMaxFontSize);
}

void AppSettings::set_font_size(int points) {
  settings_->setValue("appearance/font_size",
                      points <= 0 ? 0 : std::clamp(points, kMinFontSize, kMaxFontSize));
}

QStringList AppSettings::recent_files() {
  const QStringList stored = settings_->value("files/recent").toStringList();
  QStringList kept;
  for (const QString& path : stored) {
    if (QFileInfo(path).isFile() && !kept.contains(path) && kept.size() < kMaxRecentFiles) {
      kept << path;
    }
  }
  if (kept != stored) write_recent_files(kept);
  return kept;
}

void AppSettings::add_recent_file(const QString& path) {
  if (path.isEmpty()) return;
  const QString clean = clean_absolute(path);
  QStringList files = settings_->value("files/recent").toStringList();
  files.removeAll(clean);
  files.prepend(clean);
  while (files.size() > kMaxRecentFiles) files.removeLast();
  write_recent_files(files);
}

void AppSettings::remove_recent_file(const QString& path) {
  QStringList files = settings_->value("files/recent").toStringList();
  if (files.removeAll(clean_absolute(path)) > 0) write_recent_files(files);
}

void AppSettings::clear_recent_files() {
  settings_->remove("files/recent");
}

void AppSettings::write_recent_files(const QStringList& files) {
  settings_->setValue("files/recent", files);
}

QString AppSettings::last_model_directory() const {
  return settings_->value("files/last_model_dir").toString();
}

void AppSettings::set_last_model_directory(const QString& directory) {
  settings_->setValue("files/last_model_dir",
                      directory.isEmpty() ? QString() : clean_absolute(directory));
}

void AppSettings::sync() {
  settings_->sync();
}

}  // namespace lwm::gui
