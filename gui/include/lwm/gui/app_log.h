// The app's log: every qDebug/qInfo/qWarning/qCritical/qFatal line goes, with a UTC timestamp
// and its level, to a log file the user can attach to a bug report (Help > Show log file), and
// still to stderr. The file rotates at about 1 MiB keeping 3 older files ("lwm-studio.log.1" is
// the newest of them), so it never grows without bound. Each line is written straight through
// (no buffering), so the lines before a crash are on disk.
#pragma once

#include <QFile>
#include <QMutex>
#include <QString>
#include <QtGlobal>

namespace lwm::gui {

// A log file that rotates by size. Thread-safe: lines from several threads never interleave.
class RotatingLogFile {
 public:
  static constexpr qint64 kDefaultMaxBytes = 1 << 20;
  static constexpr int kDefaultKeep = 3;

  // Opens (appends to) `path`, creating its folder. is_open() says whether that worked.
  explicit RotatingLogFile(QString path, qint64 max_bytes = kDefaultMaxBytes,
                           int keep = kDefaultKeep);
  bool is_open() const { return file_.isOpen(); }
  QString error_string() const { return file_.errorString(); }
  const QString& path() const { return path_; }

  // Appends `line` and a newline; first rotates when the line would take the file past
  // max_bytes (a single longer line still goes into a file of its own).
  void write_line(const QString& line);

 private:
  void rotate();

  QString path_;
  qint64 max_bytes_;
  int keep_;
  QFile file_;
  qint64 size_ = 0;
  QMutex mutex_;
};

// "2026-11-23T14:15:43.123Z warning [category] message (file.cpp:42)"; the category only when
// it is not "default", the location only when Qt provides it (debug builds).
QString format_log_line(QtMsgType type, const QMessageLogContext& context, const QString& message);

// AppDataLocation + "/logs/lwm-studio.log" (~/.local/share/<org>/<app>/logs on Linux).
QString default_log_path();

// Sends Qt's messages to a RotatingLogFile at `path` (and on to the previous handler, stderr).
// Returns false and sets *error when the file cannot be opened; messages then go to stderr only.
bool install_log_handler(const QString& path = default_log_path(), QString* error = nullptr,
                         qint64 max_bytes = RotatingLogFile::kDefaultMaxBytes,
                         int keep = RotatingLogFile::kDefaultKeep);
// Restores the previous handler and closes the file.
void uninstall_log_handler();
// The file the installed handler writes to, for the Help menu; default_log_path() when none.
QString log_file_path();

}  // namespace lwm::gui
