// The user's defaults, kept with QSettings (on Linux ~/.config/<organization>/<application>.conf;
// the app sets both names at start-up). Values read back are checked: one that is missing, of
// the wrong type or out of range reads as its default, so a hand-edited file cannot break the
// app.
//
// | setting                | key                      | default                               |
// | ---------------------- | ------------------------ | ------------------------------------- |
// | temperature            | sampling/temperature     | 0.0 (greedy: the same answer again)   |
// | top-k                  | sampling/top_k           | 0 (no limit)                          |
// | top-p                  | sampling/top_p           | 1.0 (no limit)                        |
// | max tokens             | sampling/max_tokens      | 512                                   |
// | seed                   | sampling/seed            | 0                                     |
// | devices                | engine/devices           | "cpu" ("cuda:0", "cuda:0,1", …)       |
// | KV-cache precision     | engine/kv_cache          | "auto" ("f32", "bf16", "int8")        |
// | theme                  | appearance/theme         | system (follow the desktop)           |
// | font size              | appearance/font_size     | 0 (the desktop's size), else 6..48 pt |
// | recent files           | files/recent             | empty; newest first, at most 10       |
// | last model directory   | files/last_model_dir     | empty (the app uses the bundled model)|
//
// The sampling defaults are the engine's (lwm/generation.h) except max tokens, which is larger
// because answers about a video or a book are longer than the engine's 256-token default.
#pragma once

#include <QSettings>
#include <QString>
#include <QStringList>
#include <memory>

namespace lwm::gui {

struct SamplingSettings {
  double temperature = 0.0;  // 0 … 2
  int top_k = 0;             // 0 … 1000
  double top_p = 1.0;        // (0, 1]
  int max_tokens = 512;      // 1 … 1,000,000
  quint64 seed = 0;
};

enum class Theme { system, light, dark };

class AppSettings {
 public:
  static constexpr int kMaxRecentFiles = 10;

  // The application's settings (QSettings with the organisation and application names).
  AppSettings();
  // Settings kept in an INI file at `path` (tests, portable installs).
  explicit AppSettings(const QString& ini_path);
  ~AppSettings();
  AppSettings(const AppSettings&) = delete;
  AppSettings& operator=(const AppSettings&) = delete;

  SamplingSettings sampling() const;
  void set_sampling(const SamplingSettings& sampling);  // values are clamped to the ranges above

  QString devices() const;
  void set_devices(const QString& devices);
  QString kv_cache() const;
  void set_kv_cache(const QString& precision);  // an unknown precision is stored as "auto"

  Theme theme() const;
  void set_theme(Theme theme);
  int font_size() const;  // 0: the desktop's size
  void set_font_size(int points);

  // Newest first, without files that no longer exist (those are pruned from the settings too).
  QStringList recent_files();
  // Moves `path` to the front (as an absolute, clean path), dropping duplicates and the oldest
  // entries beyond kMaxRecentFiles.
  void add_recent_file(const QString& path);
  void remove_recent_file(const QString& path);
  void clear_recent_files();

  QString last_model_directory() const;
  void set_last_model_directory(const QString& directory);

  // Writes pending changes to disk now (QSettings also does it on its own).
  void sync();
  QSettings& settings() { return *settings_; }

 private:
  void write_recent_files(const QStringList& files);

  std::unique_ptr<QSettings> settings_;
};

QString to_string(Theme theme);  // "system", "light", "dark": the stored spelling

}  // namespace lwm::gui
