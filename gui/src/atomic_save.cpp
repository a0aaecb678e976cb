#include "atomic_save.h"

#include <QDir>
#include <QFileInfo>
#include <QRegularExpression>
#include <QSaveFile>

#ifdef Q_OS_UNIX
#include <fcntl.h>
#include <unistd.h>
#endif

namespace lwm::gui {

bool fail(QString* error, const QString& message) {
  if (error) *error = message;
  return false;
}

namespace {

void (*g_crash_point)() = nullptr;

// QSaveFile syncs the file but not the directory entry the rename creates.
void sync_directory(const QString& directory) {
#ifdef Q_OS_UNIX
  const QByteArray native = QFile::encodeName(directory);
  const int fd = ::open(native.constData(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);  // best effort: the data is already safe under one of the two names
    ::close(fd);
  }
#else
  Q_UNUSED(directory);
#endif
}

}  // namespace

void set_crash_point_for_tests(void (*crash_point)()) {
  g_crash_point = crash_point;
}

bool save_file_atomically(const QString& path, const QByteArray& bytes, QString* error) {
  const QFileInfo info(path);
  const QString directory = info.absolutePath();
  if (!QDir().mkpath(directory)) {
    return fail(error, QStringLiteral("Could not create the folder %1; check that it is writable.")
                           .arg(QDir::toNativeSeparators(directory)));
  }
  QSaveFile file(path);
  if (!file.open(QIODevice::WriteOnly)) {
    return fail(error, QStringLiteral("Could not write %1: %2. Check that the folder is writable "
                                      "and the disk is not full.")
                           .arg(QDir::toNativeSeparators(path), file.errorString()));
  }
  const bool written = file.write(bytes) == bytes.size();
  if (g_crash_point) g_crash_point();
  if (!written || !file.commit()) {
    const QString reason = file.errorString();
    file.cancelWriting();
    return fail(error, QStringLiteral("Could not write %1: %2. The previous version is unchanged; "
                                      "check that the disk is not full.")
                           .arg(QDir::toNativeSeparators(path), reason));
  }
  sync_directory(directory);
  return true;
}

bool is_leftover_temp_name(const QString& file_name, const QString& final_suffix) {
  static const QRegularExpression qt_temp(QStringLiteral("\\.[A-Za-z0-9]{6}$"));
  static const QRegularExpression core_temp(QStringLiteral("\\.tmp-[0-9]+$"));
  for (const QRegularExpression* pattern : {&qt_temp, &core_temp}) {
    const QRegularExpressionMatch match = pattern->match(file_name);
    if (match.hasMatch() && file_name.left(match.capturedStart()).endsWith(final_suffix)) {
      return true;
    }
  }
  return false;
}

}  // namespace lwm::gui
