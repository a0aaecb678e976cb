#include "lwm/gui/app_log.h"

#include <QDateTime>
#include <QDir>
#include <QFileInfo>
#include <QStandardPaths>
#include <memory>
#include <utility>

namespace lwm::gui {
namespace {

const char* level_name(QtMsgType type) {
  switch (type) {
    case QtDebugMsg:
      return "debug";
    case QtInfoMsg:
      return "info";
    case QtWarningMsg:
      return "warning";
    case QtCriticalMsg:
      return "critical";
    case QtFatalMsg:
      return "fatal";
  }
  return "unknown";
}

// The installed handler's state. The mutex guards the pointer against install/uninstall while
// another thread logs; the file has its own lock for direct use.
QMutex g_handler_mutex;
std::unique_ptr<RotatingLogFile> g_log;
QtMessageHandler g_previous_handler = nullptr;
// Set while this thread is inside the handler: a message raised by the logging itself (a QFile
// warning, say) goes to the previous handler only, instead of deadlocking on the mutex.
thread_local bool t_in_handler = false;

void handle_message(QtMsgType type, const QMessageLogContext& context, const QString& message) {
  QtMessageHandler previous = nullptr;
  if (!t_in_handler) {
    t_in_handler = true;
    QMutexLocker lock(&g_handler_mutex);
    if (g_log) g_log->write_line(format_log_line(type, context, message));
    previous = g_previous_handler;
    lock.unlock();
    t_in_handler = false;
  } else {
    previous = g_previous_handler;  // already under the lock further up this thread's stack
  }
  if (previous) previous(type, context, message);
}

}  // namespace

RotatingLogFile::RotatingLogFile(QString path, qint64 max_bytes, int keep)
    : path_(std::move(path)), max_bytes_(max_bytes), keep_(keep < 0 ? 0 : keep), file_(path_) {
  QDir().mkpath(QFileInfo(path_).absolutePath());
  if (file_.open(QIODevice::WriteOnly | QIODevice::Append | QIODevice::Unbuffered)) {
    size_ = file_.size();
  }
}

void RotatingLogFile::write_line(const QString& line) {
  const QByteArray bytes = line.toUtf8() + '\n';
  QMutexLocker lock(&mutex_);
  if (size_ > 0 && size_ + bytes.size() > max_bytes_) rotate();
  if (!file_.isOpen()) return;
  const qint64 written = file_.write(bytes);
  if (written > 0) size_ += written;
}

void RotatingLogFile::rotate() {
  file_.close();
  // lwm-studio.log.(keep) falls off; .(n) becomes .(n+1); the current file becomes .1.
  const auto numbered = [this](int n) { return path_ + QLatin1Char('.') + QString::number(n); };
  QFile::remove(keep_ > 0 ? numbered(keep_) : path_);
  for (int n = keep_ - 1; n >= 1; --n) QFile::rename(numbered(n), numbered(n + 1));
  if (keep_ > 0) QFile::rename(path_, numbered(1));
  file_.open(QIODevice::WriteOnly | QIODevice::Truncate | QIODevice::Unbuffered);
  size_ = 0;
}

QString format_log_line(QtMsgType type, const QMessageLogContext& context, const QString& message) {
  QString line = QDateTime::currentDateTimeUtc().toString(Qt::ISODateWithMs) + QLatin1Char(' ') +
                 QLatin1String(level_name(type));
  if (context.category && qstrcmp(context.category, "default") != 0) {
    line += QStringLiteral(" [") + QLatin1String(context.category) + QLatin1Char(']');
  }
  // Continuation lines are indented so every record starts with its timestamp.
  line += QLatin1Char(' ') + QString(message).replace(QLatin1Char('\n'), QStringLiteral("\n    "));
  if (context.file && context.line > 0) {
    line += QStringLiteral(" (%1:%2)")
                .arg(QFileInfo(QString::fromUtf8(context.file)).fileName())
                .arg(context.line);
  }
  return line;
}

QString default_log_path() {
  return QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) +
         QStringLiteral("/logs/lwm-studio.log");
}

bool install_log_handler(const QString& path, QString* error, qint64 max_bytes, int keep) {
  auto log = std::make_unique<RotatingLogFile>(path, max_bytes, keep);
  if (!log->is_open()) {
    if (error) {
      *error = QStringLiteral(
                   "Could not open the log file %1: %2. Messages go to the terminal "
                   "only.")
                   .arg(QDir::toNativeSeparators(path), log->error_string());
    }
    return false;
  }
  QMutexLocker lock(&g_handler_mutex);
  g_log = std::move(log);
  const QtMessageHandler previous = qInstallMessageHandler(handle_message);
  if (previous != handle_message) g_previous_handler = previous;
  return true;
}

void uninstall_log_handler() {
  QMutexLocker lock(&g_handler_mutex);
  if (!g_log) return;
  qInstallMessageHandler(g_previous_handler);
  g_previous_handler = nullptr;
  g_log.reset();
}

QString log_file_path() {
  QMutexLocker lock(&g_handler_mutex);
  return g_log ? g_log->path() : default_log_path();
}

}  // namespace lwm::gui
