#include "lwm/gui/chat_store.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <QStandardPaths>
#include <QUuid>
#include <utility>

#include "atomic_save.h"
#include "chat_json.h"

namespace lwm::gui {
namespace {

constexpr char kChatSuffix[] = ".chat.json";
constexpr char kStateFileName[] = "app-state.json";
constexpr char kStateFormatName[] = "lwm-studio-state";
constexpr int kStateFormatVersion = 1;

QString native(const QString& path) {
  return QDir::toNativeSeparators(path);
}

// Far beyond any chat the app writes (2,000 long answers take about 2 MB), and small enough to
// read at once: a bigger file is not a chat, and reading it could exhaust memory.
constexpr qint64 kMaxChatFileBytes = qint64(256) << 20;

QString oversize_reason(const QString& path) {
  const qint64 size = QFileInfo(path).size();
  return size > kMaxChatFileBytes
             ? QStringLiteral("is %1 MiB, larger than any chat LWM Studio writes (256 MiB at most)")
                   .arg(size >> 20)
             : QString();
}

bool read_whole_file(const QString& path, QByteArray* bytes, QString* error) {
  QFile file(path);
  if (!file.open(QIODevice::ReadOnly)) {
    return fail(error,
                QStringLiteral("Could not read %1: %2.").arg(native(path), file.errorString()));
  }
  *bytes = file.readAll();
  return true;
}

QString invalid_id_message(const QString& id) {
  return QStringLiteral("\"%1\" is not a chat id (letters, digits, '-' and '_' only).")
      .arg(id.left(80));
}

}  // namespace

QString ChatStore::default_directory() {
  return QStandardPaths::writableLocation(QStandardPaths::AppDataLocation) +
         QStringLiteral("/chats");
}

QString ChatStore::new_id() {
  return QUuid::createUuid().toString(QUuid::WithoutBraces);
}

ChatStore::ChatStore(QString directory) : directory_(std::move(directory)) {}
ChatStore::~ChatStore() = default;
ChatStore::ChatStore(ChatStore&&) noexcept = default;
ChatStore& ChatStore::operator=(ChatStore&&) noexcept = default;

bool ChatStore::try_lock(QString* error) {
  if (is_locked()) return true;
  if (!QDir().mkpath(directory_)) {
    return fail(error, QStringLiteral("Could not create the folder %1; check that it is writable.")
                           .arg(native(directory_)));
  }
  auto lock = std::make_unique<QLockFile>(directory_ + QStringLiteral("/chats.lock"));
  lock->setStaleLockTime(0);  // only a dead holder makes it stale, never its age
  if (lock->tryLock(0)) {
    lock_ = std::move(lock);
    return true;
  }
  qint64 pid = 0;
  QString host;
  QString application;
  if (lock->error() == QLockFile::LockFailedError && lock->getLockInfo(&pid, &host, &application)) {
    return fail(error, QStringLiteral("Another LWM Studio (process %1 on %2) is using the chats in "
                                      "%3; switch to that window, or close it first.")
                           .arg(pid)
                           .arg(host, native(directory_)));
  }
  return fail(error, QStringLiteral("Could not lock the chats folder %1; check that it is "
                                    "writable.")
                         .arg(native(directory_)));
}

bool ChatStore::is_locked() const {
  return lock_ && lock_->isLocked();
}

QString ChatStore::file_path(const QString& id) const {
  return directory_ + QLatin1Char('/') + id + QLatin1String(kChatSuffix);
}

QString ChatStore::cache_directory(const QString& id) const {
  return directory_ + QLatin1Char('/') + id + QStringLiteral(".cache");
}

QString ChatStore::state_path() const {
  return directory_ + QLatin1Char('/') + QLatin1String(kStateFileName);
}

bool ChatStore::save(const ChatRecord& record, QString* error) {
  if (!is_valid_chat_id(record.id)) return fail(error, invalid_id_message(record.id));
  return save_file_atomically(file_path(record.id), chat_to_json_bytes(record), error);
}

std::optional<ChatRecord> ChatStore::load(const QString& id, QString* error) const {
  if (!is_valid_chat_id(id)) {
    fail(error, invalid_id_message(id));
    return std::nullopt;
  }
  const QString path = file_path(id);
  QByteArray bytes;
  QString reason = oversize_reason(path);
  if (!reason.isEmpty()) {
    fail(error, QStringLiteral("The chat file %1 %2.").arg(native(path), reason));
    return std::nullopt;
  }
  if (!read_whole_file(path, &bytes, error)) return std::nullopt;
  std::optional<ChatRecord> record = chat_from_json_bytes(bytes, &reason);
  if (!record) {
    fail(error, QStringLiteral("The chat file %1 %2.").arg(native(path), reason));
    return std::nullopt;
  }
  if (record->id != id) {
    fail(error, QStringLiteral("The chat file %1 holds chat \"%2\", not \"%3\"; it was renamed "
                               "by hand.")
                    .arg(native(path), record->id, id));
    return std::nullopt;
  }
  return record;
}

ChatStore::LoadResult ChatStore::load_all() {
  LoadResult result;
  remove_leftover_temp_files();
  const QDir directory(directory_);
  const QStringList names = directory.entryList({QStringLiteral("*") + QLatin1String(kChatSuffix)},
                                                QDir::Files, QDir::Name);
  for (const QString& name : names) {
    const QString path = directory.filePath(name);
    const QString id = name.chopped(int(qstrlen(kChatSuffix)));
    QByteArray bytes;
    QString reason = oversize_reason(path);
    if (!reason.isEmpty()) {
      result.problems.append(move_aside(path, QStringLiteral("chat file"), reason));
      continue;
    }
    if (!read_whole_file(path, &bytes, &reason)) {
      // Unreadable (permissions): leave it where it is, it is not known to be damaged.
      result.problems.append({path, reason + QStringLiteral(" The chat is not shown.")});
      continue;
    }
    std::optional<ChatRecord> record = chat_from_json_bytes(bytes, &reason);
    if (record && record->id != id) {
      record.reset();
      reason = QStringLiteral("holds another chat's id");
    }
    if (!record) {
      result.problems.append(move_aside(path, QStringLiteral("chat file"), reason));
      continue;
    }
    result.chats.append(std::move(*record));
  }
  return result;
}

bool ChatStore::remove(const QString& id, QString* error) {
  if (!is_valid_chat_id(id)) return fail(error, invalid_id_message(id));
  const QString path = file_path(id);
  QFile file(path);
  if (file.exists() && !file.remove()) {
    return fail(error, QStringLiteral("Could not delete %1: %2. Check that the folder is "
                                      "writable.")
                           .arg(native(path), file.errorString()));
  }
  QDir cache(cache_directory(id));
  if (cache.exists() && !cache.removeRecursively()) {
    return fail(error, QStringLiteral("The chat was deleted but its cache folder %1 could not be; "
                                      "delete it by hand to free the space.")
                           .arg(native(cache.path())));
  }
  return true;
}

bool ChatStore::rename(const QString& id, const QString& title, QString* error) {
  std::optional<ChatRecord> record = load(id, error);
  if (!record) return false;
  record->title = title;
  return save(*record, error);
}

bool ChatStore::save_state(const AppState& state, QString* error) {
  const QJsonObject root{{"format", QString::fromLatin1(kStateFormatName)},
                         {"version", kStateFormatVersion},
                         {"open_chat_id", state.open_chat_id},
                         {"open_file", state.open_file},
                         {"window_geometry", QString::fromLatin1(state.window_geometry.toBase64())},
                         {"window_state", QString::fromLatin1(state.window_state.toBase64())},
                         {"running", state.running}};
  return save_file_atomically(state_path(), QJsonDocument(root).toJson(QJsonDocument::Indented),
                              error);
}

AppState ChatStore::load_state(StoreProblem* problem) {
  AppState state;
  const QString path = state_path();
  if (!QFileInfo::exists(path)) return state;
  QByteArray bytes;
  QString reason;
  if (!read_whole_file(path, &bytes, &reason)) {
    if (problem) *problem = {path, reason};
    return state;
  }
  QJsonParseError parse_error;
  const QJsonObject root = QJsonDocument::fromJson(bytes, &parse_error).object();
  const int version = root.value("version").toInt(-1);
  if (parse_error.error != QJsonParseError::NoError) {
    reason = QStringLiteral("is not valid JSON (%1; the file may be cut short)")
                 .arg(parse_error.errorString());
  } else if (root.value("format").toString() != QLatin1String(kStateFormatName) || version < 1) {
    reason = QStringLiteral("is not an LWM Studio state file");
  } else if (version > kStateFormatVersion) {
    reason = QStringLiteral("was written by a newer LWM Studio (format version %1)").arg(version);
  } else {
    state.open_chat_id = root.value("open_chat_id").toString();
    state.open_file = root.value("open_file").toString();
    state.window_geometry =
        QByteArray::fromBase64(root.value("window_geometry").toString().toLatin1());
    state.window_state = QByteArray::fromBase64(root.value("window_state").toString().toLatin1());
    state.running = root.value("running").toBool(false);
    return state;
  }
  StoreProblem moved = move_aside(path, QStringLiteral("window state file"), reason);
  moved.message += QStringLiteral(" The window opens with its default layout.");
  if (problem) *problem = moved;
  return state;
}

void ChatStore::remove_leftover_temp_files() {
  // One app instance owns the folder and writes from one thread, so no write is in progress
  // while it loads: every temporary file here is from a process that died mid-write.
  const QDir directory(directory_);
  const QStringList names = directory.entryList(QDir::Files | QDir::Hidden);
  for (const QString& name : names) {
    if (is_leftover_temp_name(name, QLatin1String(kChatSuffix)) ||
        is_leftover_temp_name(name, QLatin1String(kStateFileName))) {
      QFile::remove(directory.filePath(name));
    }
  }
}

StoreProblem ChatStore::move_aside(const QString& path, const QString& what,
                                   const QString& reason) {
  // "<name>.corrupt", or "<name>.2.corrupt", … when an older one is already there: nothing the
  // user might want to recover is ever overwritten.
  QString target = path + QStringLiteral(".corrupt");
  for (int n = 2; QFileInfo::exists(target); ++n) {
    target = path + QStringLiteral(".%1.corrupt").arg(n);
  }
  if (QFile::rename(path, target)) {
    return {path, QStringLiteral("The %1 %2 %3; it was moved to %4 and is not shown.")
                      .arg(what, native(path), reason, native(target))};
  }
  return {path, QStringLiteral("The %1 %2 %3 and could not be moved aside; it is not shown.")
                    .arg(what, native(path), reason)};
}

}  // namespace lwm::gui
