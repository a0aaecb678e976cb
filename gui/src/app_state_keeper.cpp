#include "lwm/gui/app_state_keeper.h"

namespace lwm::gui {

AppStateKeeper::AppStateKeeper(ChatStore* store, int delay_ms, QObject* parent)
    : QObject(parent), store_(store) {
  timer_.setSingleShot(true);
  timer_.setInterval(delay_ms);
  connect(&timer_, &QTimer::timeout, this, &AppStateKeeper::flush);
}

AppStateKeeper::~AppStateKeeper() {
  if (dirty_) save_now();
}

AppState AppStateKeeper::start() {
  StoreProblem problem;
  const AppState loaded = store_->load_state(&problem);
  if (!problem.message.isEmpty()) emit problem_found(problem);
  last_run_crashed_ = loaded.running;
  state_ = loaded;
  state_.running = true;
  save_now();
  return loaded;
}

void AppStateKeeper::set_open_chat(const QString& id) {
  if (id == state_.open_chat_id) return;
  state_.open_chat_id = id;
  changed();
}

void AppStateKeeper::set_open_file(const QString& path) {
  if (path == state_.open_file) return;
  state_.open_file = path;
  changed();
}

void AppStateKeeper::set_window(const QByteArray& geometry, const QByteArray& window_state) {
  if (geometry == state_.window_geometry && window_state == state_.window_state) return;
  state_.window_geometry = geometry;
  state_.window_state = window_state;
  changed();
}

bool AppStateKeeper::flush() {
  timer_.stop();
  return !dirty_ || save_now();
}

bool AppStateKeeper::finish() {
  state_.running = false;
  timer_.stop();
  return save_now();
}

void AppStateKeeper::changed() {
  dirty_ = true;
  timer_.start();  // restarts: the save waits for a quiet moment
}

bool AppStateKeeper::save_now() {
  QString error;
  ++saves_;
  if (!store_->save_state(state_, &error)) {
    // Stays dirty: the next change or flush tries again.
    dirty_ = true;
    emit error_occurred(error);
    return false;
  }
  dirty_ = false;
  return true;
}

}  // namespace lwm::gui
