// Keeps the app state (open chat, open file, window layout) on disk while the app runs, so after
// a crash the app reopens where it was, and tells whether the last run ended in a crash.
//
// Changes are coalesced: a window being resized changes its geometry many times a second, and
// each save is an fsync, so the state is written once `delay_ms` after the last change (and at
// once by flush() and finish()). Use from the UI thread; needs an event loop for the delayed
// save.
#pragma once

#include <QObject>
#include <QTimer>

#include "lwm/gui/chat_store.h"

namespace lwm::gui {

class AppStateKeeper : public QObject {
  Q_OBJECT

 public:
  static constexpr int kDefaultDelayMs = 500;

  // `store` must outlive the keeper.
  explicit AppStateKeeper(ChatStore* store, int delay_ms = kDefaultDelayMs,
                          QObject* parent = nullptr);
  // Saves pending changes (not finish(): a keeper destroyed without finish() is a crash, as far
  // as the next start can tell).
  ~AppStateKeeper() override;

  // Loads the saved state, remembers whether the last run crashed (its state still says
  // running) and marks this run as running, saved at once. Returns the loaded state, the place
  // to reopen. A damaged state file is reported through problem_found and reads as defaults.
  AppState start();
  bool last_run_crashed() const { return last_run_crashed_; }
  const AppState& state() const { return state_; }

  void set_open_chat(const QString& id);
  void set_open_file(const QString& path);
  void set_window(const QByteArray& geometry, const QByteArray& window_state);

  // Writes pending changes now; false (and error_occurred) when the write failed.
  bool flush();
  // A clean quit: running = false, written now.
  bool finish();

  int saves() const { return saves_; }  // how many times the state was written (tests, logs)

 signals:
  void error_occurred(const QString& message);
  void problem_found(const StoreProblem& problem);

 private:
  void changed();
  bool save_now();

  ChatStore* store_;
  AppState state_;
  QTimer timer_;
  bool dirty_ = false;
  bool last_run_crashed_ = false;
  int saves_ = 0;
};

}  // namespace lwm::gui
