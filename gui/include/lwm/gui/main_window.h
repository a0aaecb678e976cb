// LWM Studio's main window (issue 7): open a video or a book, see and change the plan, ingest
// with progress and cancel, ask with streamed answers whose citations link into the player or
// the reader. Holds no engine logic: the Engine worker does the work, ChatModel keeps the chat.
#pragma once

#include <QMainWindow>
#include <QStringList>

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

class ChatModel;
class Engine;
class MediaPane;
class PlanPanel;

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

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
  bool bannerVisible() const;
  const ModelInfo& model() const noexcept { return model_; }
  const SourceInfo& source() const noexcept { return source_; }
  QStringList recentFiles() const;
  QAction* action(const QString& object_name) const;

 signals:
  void citationFollowed(const QString& url);

 protected:
  void dragEnterEvent(QDragEnterEvent* event) override;
  void dropEvent(QDropEvent* event) override;
  void closeEvent(QCloseEvent* event) override;

 private:
  void buildMenus();
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
  void setTheme(const QString& name);

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
