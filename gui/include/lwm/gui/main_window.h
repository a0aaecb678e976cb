// LWM Studio's main window (issue 7): open a video or a book, see and change the plan, ingest
// with progress and cancel, ask with streamed answers whose citations link into the player or
// the reader. Holds no engine logic: the Engine worker does the work, ChatModel keeps the chat.
#pragma once

#include <QMainWindow>
#include <QStringList>
#include <memory>
#include <optional>

#include "lwm/gui/app_theme.h"
#include "lwm/gui/chat_record.h"
#include "lwm/gui/engine_types.h"

class QAction;
class QLabel;
class QMenu;
class QPlainTextEdit;
class QPushButton;
class QTextBrowser;
class QTimer;
class QFrame;

namespace lwm::gui {

class AppSettings;
class AppStateKeeper;
class ChatModel;
class ChatStore;
class Engine;
class MediaPane;
class PlanPanel;
class SessionListModel;
class SessionsPanel;

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  // Chats are kept in `chats_directory` (empty: ChatStore::default_directory(), the XDG data
  // folder), settings in QSettings.
  explicit MainWindow(const QString& chats_directory = {}, QWidget* parent = nullptr);
  ~MainWindow() override;

  // Marks this run as running (so a crash is noticed next time) and restores the window; with
  // `reopen`, also reopens the chat or file that was open when the app last ended, crash or not.
  // Says so in the banner when the last run crashed.
  void restoreLastSession(bool reopen);
  // Reopens a saved chat: its source (and its model, when another one) and its messages.
  bool openChat(const QString& id);

  // Loads a model folder in the worker; errors show in the banner.
  void loadModel(const QString& directory);
  // Opens a video or a book (a folder with config.json is loaded as a model instead).
  void openFile(const QString& path);
  // Asks `question` about the open source, as if typed and sent.
  void ask(const QString& question);

  // The parts tests drive and check.
  Engine* engine() const { return engine_; }
  ChatModel* chatModel() const { return chat_; }
  QTextBrowser* transcript() const { return transcript_; }
  QPlainTextEdit* questionEdit() const { return question_; }
  PlanPanel* planPanel() const { return plan_; }
  MediaPane* mediaPane() const { return media_; }
  QLabel* bannerLabel() const { return banner_text_; }
  QLabel* statsLabel() const { return stats_; }
  QLabel* modelLabel() const { return model_label_; }
  // The GPUs the window can use ("2 GPUs"), or "CPU only" with the reason in its tooltip.
  QLabel* gpuLabel() const { return gpu_label_; }
  bool bannerVisible() const;
  const ModelInfo& model() const noexcept { return model_; }
  const SourceInfo& source() const noexcept { return source_; }
  QStringList recentFiles() const;
  QAction* action(const QString& object_name) const;
  SessionListModel* sessions() const { return sessions_; }
  SessionsPanel* sessionsPanel() const { return sessions_panel_; }
  ChatStore* store() const { return store_.get(); }

 signals:
  void citationFollowed(const QString& url);

 protected:
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;
  void closeEvent(QCloseEvent* event) override;

 private:
  void buildMenus();
  void showGpuStatus();
  void buildWidgets();
  void connectEngine();
  void showBanner(const QString& text);
  void requestPlan();
  void startIngest();
  void sendQuestion();
  void startAnswer(const QString& question);
  void stop();
  void regenerate();
  void editAndResend();
  void copyAnswer();
  void followLink(const QUrl& url);
  void scheduleRender();
  void renderTranscript();
  void rememberRecent(const QString& path);
  void rebuildRecentMenu();
  void updateActions();
  void updateTitle();
  void applyAppearance();
  void saveChat();
  void exportChat(bool markdown);
  void showSettings();
  GenerationSettings generationSettings() const;

  std::unique_ptr<AppSettings> settings_;
  std::unique_ptr<ChatStore> store_;
  SystemAppearance system_appearance_;
  SessionListModel* sessions_ = nullptr;
  SessionsPanel* sessions_panel_ = nullptr;
  AppStateKeeper* keeper_ = nullptr;        // null when another instance owns the chats folder
  std::optional<ChatRecord> pending_chat_;  // reopened when its source has opened
  Engine* engine_ = nullptr;
  ChatModel* chat_ = nullptr;
  PlanPanel* plan_ = nullptr;
  MediaPane* media_ = nullptr;
  QTextBrowser* transcript_ = nullptr;
  QPlainTextEdit* question_ = nullptr;
  QPushButton* ask_button_ = nullptr;
  QPushButton* stop_button_ = nullptr;
  QPushButton* regenerate_button_ = nullptr;
  QPushButton* edit_button_ = nullptr;
  QPushButton* copy_button_ = nullptr;
  QLabel* stats_ = nullptr;
  QLabel* model_label_ = nullptr;  // the loaded model, always in the status bar
  QLabel* gpu_label_ = nullptr;    // the GPUs it can use, or why none
  QFrame* banner_ = nullptr;
  QLabel* banner_text_ = nullptr;
  QMenu* recent_menu_ = nullptr;
  QTimer* render_timer_ = nullptr;
  ModelInfo model_;
  SourceInfo source_;
  bool busy_ = false;
  bool ingesting_ = false;
  int editing_row_ = -1;  // the question being edited for Edit & Resend, or -1
};

}  // namespace lwm::gui
