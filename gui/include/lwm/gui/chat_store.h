// Where the desktop app keeps its chats: one JSON file per chat ("<id>.chat.json", format
// "lwm-studio-chat" version 1, see gui/README.md) in one folder, by default the XDG data folder
// (QStandardPaths::AppDataLocation + "/chats"), plus the app state that lets it reopen where it
// was after a crash ("app-state.json", format "lwm-studio-state" version 1).
//
// Every write is atomic (a temporary file, fsynced, renamed over the target), so a crash
// mid-write leaves the previous version. Reading never fails as a whole because of one bad file:
// load_all() moves a damaged, truncated or newer-version file aside to "<name>.corrupt" and
// reports it in plain words; leftover temporary files of an interrupted write are deleted.
//
// Fallible calls return false (or nullopt) and set *error, when given, to a sentence for the
// user that names the file and says what to do. Nothing here throws. Not thread-safe: use one
// ChatStore per folder from one thread (the UI thread). One app instance owns the folder:
// try_lock() at start-up says whether another one already does.
#pragma once

#include <QByteArray>
#include <QList>
#include <QLockFile>
#include <QString>
#include <memory>
#include <optional>

#include "lwm/gui/chat_record.h"

namespace lwm::gui {

// A file that could not be read, and what happened to it.
struct StoreProblem {
  QString file;     // the file as it was found
  QString message;  // e.g. "The chat file … is damaged (…); it was moved to ….corrupt."
};

// What the app needs to reopen where it was. Saved whenever it changes, not only at quit.
struct AppState {
  QString open_chat_id;        // the chat shown last; empty when none
  QString open_file;           // a video or book opened but not yet asked about; may be empty
  QByteArray window_geometry;  // QWidget::saveGeometry()
  QByteArray window_state;     // QMainWindow::saveState(): docks and toolbars
  // True from start-up until a clean quit; still true when the app starts means the last run
  // crashed, so the app can reopen the chat but skip re-ingesting what may have caused it.
  bool running = false;
};

class ChatStore {
 public:
  // The XDG data folder for chats: QStandardPaths::AppDataLocation + "/chats".
  static QString default_directory();
  // A new chat id: a random UUID without braces.
  static QString new_id();

  // The folder need not exist; it is created on the first save.
  explicit ChatStore(QString directory = default_directory());

  ~ChatStore();
  ChatStore(ChatStore&&) noexcept;
  ChatStore& operator=(ChatStore&&) noexcept;

  const QString& directory() const { return directory_; }

  // Takes the folder for this process until the store is destroyed ("chats.lock", a QLockFile:
  // a lock left by a process that died is taken over). False, with a sentence naming the
  // process that holds it, when another running instance does: that instance is writing the
  // same chats, so this one should not (show the message, or bring the other window up).
  bool try_lock(QString* error = nullptr);
  bool is_locked() const;
  QString file_path(const QString& id) const;
  // A folder beside the chat file for what may be kept with it (KV cache, thumbnails); removed
  // with the chat. Not created here.
  QString cache_directory(const QString& id) const;

  // Writes the chat atomically under its id; the previous version stays intact on failure.
  bool save(const ChatRecord& record, QString* error = nullptr);
  // Reads one chat. A damaged file is reported but left in place (load_all moves it aside).
  std::optional<ChatRecord> load(const QString& id, QString* error = nullptr) const;

  struct LoadResult {
    QList<ChatRecord> chats;       // in no particular order
    QList<StoreProblem> problems;  // files moved aside, one sentence each
  };
  // Reads every chat; never fails as a whole. Deletes leftover temporary files first.
  LoadResult load_all();

  // Deletes the chat file and its cache folder. Removing a chat that is not there is not an
  // error (it may have been deleted from another window or by hand).
  bool remove(const QString& id, QString* error = nullptr);
  // Sets the title and saves; `updated` is kept so renaming does not reorder the session list.
  bool rename(const QString& id, const QString& title, QString* error = nullptr);

  bool save_state(const AppState& state, QString* error = nullptr);
  // The saved state, or a default one when there is none. A damaged state file is moved aside
  // and reported in *problem (when given); losing it only loses the window layout.
  AppState load_state(StoreProblem* problem = nullptr);
  QString state_path() const;

 private:
  void remove_leftover_temp_files();
  StoreProblem move_aside(const QString& path, const QString& what, const QString& reason);

  QString directory_;
  std::unique_ptr<QLockFile> lock_;
};

}  // namespace lwm::gui
