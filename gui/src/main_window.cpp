#include "lwm/gui/main_window.h"

#include <QAction>
#include <QActionGroup>
#include <QApplication>
#include <QClipboard>
#include <QCloseEvent>
#include <QDesktopServices>
#include <QDir>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QFrame>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QListView>
#include <QMediaPlayer>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QScrollBar>
#include <QSettings>
#include <QSplitter>
#include <QStatusBar>
#include <QTextBlock>
#include <QTextBrowser>
#include <QTimer>
#include <QVBoxLayout>

#include "engine_text.h"
#include "lwm/gui/app_log.h"
#include "lwm/gui/app_settings.h"
#include "lwm/gui/app_state_keeper.h"
#include "lwm/gui/chat_export.h"
#include "lwm/gui/chat_model.h"
#include "lwm/gui/chat_store.h"
#include "lwm/gui/citations.h"
#include "lwm/gui/engine.h"
#include "lwm/gui/passage.h"
#include "lwm/gui/session_list_model.h"
#include "lwm/gui/text_format.h"
#include "media_pane.h"
#include "plan_panel.h"
#include "sessions_panel.h"
#include "settings_dialog.h"

namespace lwm::gui {
namespace {

// The sentence around the link `href` that was followed: the occurrence under the text cursor (a
// click or Enter on a link puts it there), else the last one in the transcript.
QString link_context(const QTextBrowser* browser, const QString& href) {
  const int cursor = browser->textCursor().position();
  QString context;
  for (QTextBlock block = browser->document()->begin(); block.isValid(); block = block.next()) {
    for (auto it = block.begin(); !it.atEnd(); ++it) {
      const QTextFragment fragment = it.fragment();
      if (fragment.charFormat().anchorHref() != href) continue;
      context = citing_sentence(block.text(), fragment.position() - block.position());
      if (cursor >= fragment.position() && cursor <= fragment.position() + fragment.length()) {
        return context;
      }
    }
  }
  return context;
}

QString video_filter() {
  return QObject::tr(
      "Videos and books (*.mp4 *.mkv *.webm *.mov *.avi *.m4v *.txt *.md *.epub "
      "*.pdf);;Videos (*.mp4 *.mkv *.webm *.mov *.avi *.m4v);;Books (*.txt *.md "
      "*.epub *.pdf);;All files (*)");
}

}  // namespace

MainWindow::MainWindow(const QString& chats_directory, QWidget* parent)
    : QMainWindow(parent),
      settings_(std::make_unique<AppSettings>()),
      store_(std::make_unique<ChatStore>(chats_directory.isEmpty() ? ChatStore::default_directory()
                                                                   : chats_directory)),
      system_appearance_(SystemAppearance::capture(*qApp)) {
  // One instance owns the chats folder; a second one shows them but does not write them.
  QString lock_error;
  const bool owner = store_->try_lock(&lock_error);
  sessions_ = new SessionListModel(owner ? store_.get() : nullptr, this);
  if (owner) keeper_ = new AppStateKeeper(store_.get(), AppStateKeeper::kDefaultDelayMs, this);
  engine_ = new Engine(this);
  // Frame codes and KV snapshots by content: a killed ingest resumes, a reopened chat is instant.
  engine_->setCacheDirectory(default_cache_directory());
  chat_ = new ChatModel(this);
  render_timer_ = new QTimer(this);
  render_timer_->setSingleShot(true);
  render_timer_->setInterval(40);  // coalesces streamed tokens into ~25 renders a second
  connect(render_timer_, &QTimer::timeout, this, &MainWindow::renderTranscript);
  buildWidgets();
  buildMenus();
  connectEngine();
  IngestChoices defaults = plan_->choices();
  defaults.devices = settings_->devices();
  defaults.kv_cache = settings_->kv_cache();
  plan_->setChoices(defaults);
  connect(chat_, &ChatModel::dataChanged, this, &MainWindow::scheduleRender);
  connect(chat_, &ChatModel::rowsInserted, this, &MainWindow::scheduleRender);
  connect(chat_, &ChatModel::rowsRemoved, this, &MainWindow::scheduleRender);
  connect(chat_, &ChatModel::modelReset, this, &MainWindow::scheduleRender);
  connect(chat_, &ChatModel::changed, this, &MainWindow::saveChat);
  connect(sessions_, &SessionListModel::error_occurred, this, &MainWindow::showBanner);
  const QList<StoreProblem> problems = sessions_->reload();
  QStringList problem_text;
  for (const StoreProblem& problem : problems) problem_text << problem.message;
  if (!owner) problem_text << lock_error;
  if (!problem_text.isEmpty()) showBanner(problem_text.join('\n'));
  if (keeper_) {
    connect(keeper_, &AppStateKeeper::error_occurred, this, &MainWindow::showBanner);
  }
  setAcceptDrops(true);
  resize(1280, 800);
  applyAppearance();
  updateActions();
  updateTitle();
}

MainWindow::~MainWindow() {
  // The keeper saves pending state through store_, a member that dies before ~QWidget deletes
  // child objects: delete it while the store is still there.
  delete keeper_;
  keeper_ = nullptr;
}

void MainWindow::buildWidgets() {
  auto* central = new QWidget;
  auto* layout = new QVBoxLayout(central);

  banner_ = new QFrame;
  banner_->setObjectName(QStringLiteral("banner"));
  banner_->setStyleSheet(QStringLiteral(
      "#banner { background: #fdecea; border: 1px solid #e0a39a; border-radius: 4px; }"
      "#banner QLabel { color: #611a15; }"));
  auto* banner_layout = new QHBoxLayout(banner_);
  banner_text_ = new QLabel;
  banner_text_->setWordWrap(true);
  banner_text_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  banner_text_->setAccessibleName(tr("Error message"));
  auto* dismiss = new QPushButton(tr("Dismiss"));
  dismiss->setAccessibleName(tr("Dismiss the error message"));
  banner_layout->addWidget(banner_text_, 1);
  banner_layout->addWidget(dismiss);
  banner_->setVisible(false);
  connect(dismiss, &QPushButton::clicked, banner_, &QWidget::hide);
  layout->addWidget(banner_);

  auto* splitter = new QSplitter(Qt::Horizontal);
  // Left: the plan and the chat.
  auto* left = new QWidget;
  auto* left_layout = new QVBoxLayout(left);
  left_layout->setContentsMargins(0, 0, 0, 0);
  plan_ = new PlanPanel;
  left_layout->addWidget(plan_);
  transcript_ = new QTextBrowser;
  transcript_->setAccessibleName(tr("Chat"));
  transcript_->setOpenLinks(false);
  transcript_->setPlaceholderText(
      tr("Answers appear here. Times and chapters they cite are "
         "links: click one to see that place."));
  left_layout->addWidget(transcript_, 1);
  stats_ = new QLabel;
  stats_->setAccessibleName(tr("Answer statistics"));
  left_layout->addWidget(stats_);
  question_ = new QPlainTextEdit;
  question_->setAccessibleName(tr("Question"));
  question_->setPlaceholderText(tr("Ask about the video or the book (Ctrl+Enter to send)"));
  question_->setMaximumHeight(90);
  left_layout->addWidget(question_);
  auto* buttons = new QHBoxLayout;
  ask_button_ = new QPushButton(tr("&Ask"));
  ask_button_->setAccessibleName(tr("Ask the question"));
  ask_button_->setToolTip(tr("Send the question (Ctrl+Enter)"));
  stop_button_ = new QPushButton(tr("&Stop"));
  stop_button_->setAccessibleName(tr("Stop the answer"));
  stop_button_->setToolTip(tr("Stop the answer or the ingest (Esc)"));
  regenerate_button_ = new QPushButton(tr("&Regenerate"));
  regenerate_button_->setAccessibleName(tr("Regenerate the last answer"));
  regenerate_button_->setToolTip(tr("Ask the last question again (Ctrl+R)"));
  edit_button_ = new QPushButton(tr("&Edit && Resend"));
  edit_button_->setAccessibleName(tr("Edit the last question and resend it"));
  edit_button_->setToolTip(tr("Put the last question back in the box to change it (Ctrl+E)"));
  copy_button_ = new QPushButton(tr("&Copy"));
  copy_button_->setAccessibleName(tr("Copy the last answer"));
  copy_button_->setToolTip(tr("Copy the last answer as Markdown (Ctrl+Shift+C)"));
  for (auto* button : {ask_button_, stop_button_, regenerate_button_, edit_button_, copy_button_})
    buttons->addWidget(button);
  left_layout->addLayout(buttons);
  splitter->addWidget(left);

  media_ = new MediaPane;
  splitter->addWidget(media_);
  splitter->setStretchFactor(0, 1);
  splitter->setStretchFactor(1, 1);
  layout->addWidget(splitter, 1);
  setCentralWidget(central);

  sessions_panel_ = new SessionsPanel(sessions_);
  auto* dock = new QDockWidget(tr("Chats"), this);
  dock->setObjectName(QStringLiteral("sessionsDock"));
  dock->setWidget(sessions_panel_);
  dock->setFeatures(QDockWidget::DockWidgetMovable | QDockWidget::DockWidgetClosable);
  addDockWidget(Qt::LeftDockWidgetArea, dock);
  connect(sessions_panel_, &SessionsPanel::openRequested, this, &MainWindow::openChat);
  connect(sessions_panel_, &SessionsPanel::deleted, this, [this](const QString& id) {
    if (chat_->record().id != id) return;
    ChatRecord fresh = chat_->record();  // the source stays open; the chat starts over
    fresh.id = ChatStore::new_id();
    fresh.messages.clear();
    fresh.created = fresh.updated = QDateTime::currentDateTimeUtc();
    chat_->setRecord(fresh);
    if (keeper_) keeper_->set_open_chat({});
  });

  setTabOrder(plan_, transcript_);
  setTabOrder(transcript_, question_);
  setTabOrder(question_, ask_button_);
  setTabOrder(ask_button_, stop_button_);
  setTabOrder(stop_button_, regenerate_button_);
  setTabOrder(regenerate_button_, edit_button_);
  setTabOrder(edit_button_, copy_button_);
  setTabOrder(copy_button_, media_);

  connect(ask_button_, &QPushButton::clicked, this, &MainWindow::sendQuestion);
  connect(stop_button_, &QPushButton::clicked, this, &MainWindow::stop);
  connect(regenerate_button_, &QPushButton::clicked, this, &MainWindow::regenerate);
  connect(edit_button_, &QPushButton::clicked, this, &MainWindow::editAndResend);
  connect(copy_button_, &QPushButton::clicked, this, &MainWindow::copyAnswer);
  connect(transcript_, &QTextBrowser::anchorClicked, this, &MainWindow::followLink);
  connect(plan_, &PlanPanel::choicesChanged, this, &MainWindow::requestPlan);
  connect(plan_, &PlanPanel::ingestRequested, this, &MainWindow::startIngest);
  connect(plan_, &PlanPanel::cancelRequested, this, &MainWindow::stop);
  model_label_ = new QLabel(tr("No model loaded"));
  model_label_->setAccessibleName(tr("Model"));
  statusBar()->addPermanentWidget(model_label_);
  showGpuStatus();
}

// At start-up the window says which GPUs it can use, or why there are none (a machine without a
// driver, a build without CUDA), and the log keeps the same line.
void MainWindow::showGpuStatus() {
  QString status;
  QStringList gpus;
  for (const DeviceChoice& device : device_choices(&status)) {
    if (device.id.startsWith(QLatin1String("cuda:"))) gpus << device.label;
  }
  gpu_label_ = new QLabel(gpus.isEmpty() ? tr("CPU only") : tr("%n GPU(s)", "", gpus.size()));
  gpu_label_->setAccessibleName(tr("GPUs"));
  gpu_label_->setToolTip(gpus.isEmpty() ? status : gpus.join(QLatin1Char('\n')) + "\n" + status);
  statusBar()->addPermanentWidget(gpu_label_);
  qInfo().noquote() << "devices:" << (gpus.isEmpty() ? QStringLiteral("CPU only") : gpus.join(", "))
                    << "-" << status;
}

void MainWindow::buildMenus() {
  const auto add = [this](QMenu* menu, const QString& name, const QString& text,
                          const QKeySequence& key, auto slot) {
    QAction* action = menu->addAction(text);
    action->setObjectName(name);
    if (!key.isEmpty()) {
      action->setShortcut(key);
      action->setToolTip(QStringLiteral("%1 (%2)").arg(QString(text).remove('&'),
                                                       key.toString(QKeySequence::NativeText)));
    }
    connect(action, &QAction::triggered, this, slot);
    return action;
  };

  QMenu* file = menuBar()->addMenu(tr("&File"));
  add(file, "open", tr("&Open Video or Book…"), QKeySequence::Open, [this] {
    const QString path =
        QFileDialog::getOpenFileName(this, tr("Open a video or a book"), {}, video_filter());
    if (!path.isEmpty()) openFile(path);
  });
  add(file, "openModel", tr("Open &Model…"), QKeySequence(tr("Ctrl+Shift+O")), [this] {
    const QString dir = QFileDialog::getExistingDirectory(
        this, tr("Choose a model folder (config.json, *.safetensors, tokenizer.model)"));
    if (!dir.isEmpty()) loadModel(dir);
  });
  recent_menu_ = file->addMenu(tr("Open &Recent"));
  recent_menu_->setObjectName(QStringLiteral("recentMenu"));
  rebuildRecentMenu();
  file->addSeparator();
  QMenu* export_menu = file->addMenu(tr("&Export Chat"));
  add(export_menu, "exportMarkdown", tr("As &Markdown…"), QKeySequence(tr("Ctrl+Shift+E")),
      [this] { exportChat(true); });
  add(export_menu, "exportJson", tr("As &JSON…"), QKeySequence(), [this] { exportChat(false); });
  add(file, "settings", tr("&Settings…"), QKeySequence::Preferences, [this] { showSettings(); });
  file->addSeparator();
  add(file, "quit", tr("&Quit"), QKeySequence::Quit, [this] { close(); });

  QMenu* chat = menuBar()->addMenu(tr("&Chat"));
  add(chat, "ingest", tr("&Ingest"), QKeySequence(tr("Ctrl+I")), [this] { startIngest(); });
  add(chat, "ask", tr("&Ask"), QKeySequence(tr("Ctrl+Return")), [this] { sendQuestion(); });
  add(chat, "stop", tr("&Stop"), QKeySequence(Qt::Key_Escape), [this] { stop(); });
  add(chat, "regenerate", tr("&Regenerate"), QKeySequence(tr("Ctrl+R")), [this] { regenerate(); });
  add(chat, "editResend", tr("&Edit && Resend"), QKeySequence(tr("Ctrl+E")),
      [this] { editAndResend(); });
  add(chat, "copy", tr("&Copy Answer"), QKeySequence(tr("Ctrl+Shift+C")), [this] { copyAnswer(); });
  chat->addSeparator();
  add(chat, "nextSession", tr("&Next Chat"), QKeySequence(tr("Ctrl+PgDown")),
      [this] { sessions_panel_->step(1); });
  add(chat, "previousSession", tr("&Previous Chat"), QKeySequence(tr("Ctrl+PgUp")),
      [this] { sessions_panel_->step(-1); });
  add(chat, "findSession", tr("&Find Chat"), QKeySequence::Find,
      [this] { sessions_panel_->searchBox()->setFocus(); });
  add(chat, "renameSession", tr("Re&name Chat…"), QKeySequence(tr("F2")), [this] {
    sessions_panel_->select(chat_->record().id);
    sessions_panel_->renameSelected();
  });
  add(chat, "deleteSession", tr("&Delete Chat…"), QKeySequence(tr("Ctrl+Shift+Delete")), [this] {
    sessions_panel_->select(chat_->record().id);
    sessions_panel_->deleteSelected();
  });

  QMenu* player = menuBar()->addMenu(tr("&Player"));
  add(player, "playPause", tr("&Play or Pause"), QKeySequence(tr("Ctrl+Space")), [this] {
    auto* p = media_->player();
    if (p->playbackState() == QMediaPlayer::PlayingState)
      p->pause();
    else
      p->play();
  });
  add(player, "seekBack", tr("Seek &Back 10 s"), QKeySequence(tr("Ctrl+Left")), [this] {
    media_->seek(std::max(0.0, static_cast<double>(media_->player()->position()) / 1000.0 - 10.0));
  });
  add(player, "seekForward", tr("Seek &Forward 10 s"), QKeySequence(tr("Ctrl+Right")),
      [this] { media_->seek(static_cast<double>(media_->player()->position()) / 1000.0 + 10.0); });

  QMenu* view = menuBar()->addMenu(tr("&View"));
  QMenu* theme = view->addMenu(tr("&Theme"));
  auto* themes = new QActionGroup(this);
  for (const auto& [value, text] :
       {std::pair{Theme::system, tr("Follow &System")}, std::pair{Theme::light, tr("&Light")},
        std::pair{Theme::dark, tr("&Dark")}}) {
    QAction* action = theme->addAction(text);
    action->setObjectName(QStringLiteral("theme-") + to_string(value));
    action->setCheckable(true);
    action->setChecked(value == settings_->theme());
    themes->addAction(action);
    connect(action, &QAction::triggered, this, [this, value = value] {
      settings_->set_theme(value);
      applyAppearance();
    });
  }

  QMenu* help = menuBar()->addMenu(tr("&Help"));
  add(help, "about", tr("&About LWM Studio"), QKeySequence(), [this] {
    QMessageBox::about(this, tr("About LWM Studio"),
                       tr("<b>LWM Studio %1</b><p>Ask a Large World Model about long videos and "
                          "books, on your own machine.</p>")
                           .arg(QApplication::applicationVersion()));
  });
  add(help, "openLogFolder", tr("Open &Log Folder"), QKeySequence(), [] {
    QDesktopServices::openUrl(QUrl::fromLocalFile(QFileInfo(log_file_path()).absolutePath()));
  });
}

void MainWindow::connectEngine() {
  Engine* w = engine_;
  connect(w, &Engine::busyChanged, this, [this](bool busy) {
    busy_ = busy;
    updateActions();
  });
  connect(w, &Engine::modelLoaded, this, [this](const ModelInfo& info) {
    model_ = info;
    settings_->set_last_model_directory(info.directory);
    model_label_->setText(tr("Model %1: %2 parameters, context %3 tokens, %4%5")
                              .arg(info.name)
                              .arg(info.parameters)
                              .arg(info.context_window)
                              .arg(format_bytes(info.weights_bytes))
                              .arg(info.vision ? tr(", reads videos") : tr(", text only")));
    statusBar()->showMessage(tr("Model %1 loaded.").arg(info.name), 5000);
    updateTitle();
    requestPlan();
  });
  connect(w, &Engine::sourceOpened, this, [this](const SourceInfo& source) {
    source_ = source;
    media_->showSource(source);
    plan_->setSourceKind(source.kind);
    if (pending_chat_ && QFileInfo(pending_chat_->source_path) == QFileInfo(source.path)) {
      plan_->setChoices(pending_chat_->choices);
      chat_->setRecord(*pending_chat_);
      sessions_panel_->select(pending_chat_->id);
    } else {
      ChatRecord record;
      record.id = ChatStore::new_id();
      record.title = source.title;
      record.model_dir = model_.directory;
      record.source_kind = source.kind;
      record.source_path = source.path;
      record.choices = plan_->choices();
      record.created = record.updated = QDateTime::currentDateTimeUtc();
      chat_->setRecord(record);
    }
    pending_chat_.reset();
    if (keeper_) {
      keeper_->set_open_file(source.path);
      keeper_->set_open_chat(chat_->record().messages.isEmpty() ? QString() : chat_->record().id);
    }
    rememberRecent(source.path);
    if (!source.warnings.isEmpty()) showBanner(source.warnings.join('\n'));
    statusBar()->showMessage(source.summary);
    updateTitle();
    updateActions();
    requestPlan();
  });
  connect(w, &Engine::planned, this, [this](const PlanInfo& plan) { plan_->setPlan(plan); });
  connect(w, &Engine::ingestProgress, this,
          [this](const QString& stage, qint64 done, qint64 total, double eta) {
            if (!ingesting_) {
              ingesting_ = true;
              plan_->setRunning(true);
            }
            plan_->setProgress(stage, done, total, eta);
          });
  connect(w, &Engine::thumbnail, this, [this](int index, double seconds, const QImage& image) {
    if (index == 0) media_->clearThumbnails();
    media_->addThumbnail(index, seconds, image);
  });
  connect(w, &Engine::ingestFinished, this, [this](const IngestReport& report) {
    ingesting_ = false;
    plan_->setRunning(false, ingest_summary(report, false));
  });
  connect(w, &Engine::ingestCancelled, this, [this](const IngestReport& report) {
    ingesting_ = false;
    plan_->setRunning(false, ingest_summary(report, true));
  });
  connect(w, &Engine::answerText, this, [this](const QString& text) {
    if (ingesting_) {
      ingesting_ = false;
      plan_->setRunning(false, tr("Ingested."));
    }
    chat_->appendToAnswer(text);
  });
  connect(
      w, &Engine::answerFinished, this,
      [this](const AnswerStats& stats, AnswerEnd end, const QString& error) {
        if (ingesting_) {
          ingesting_ = false;
          plan_->setRunning(false, QString());
        }
        chat_->finishAnswer(stats, end, error);
        const auto& messages = chat_->record().messages;
        stats_->setText(messages.isEmpty() ? QString() : ChatModel::statsSummary(messages.last()));
        renderTranscript();
      });
  connect(w, &Engine::failed, this, [this](const QString& operation, const QString& message) {
    if (ingesting_) {
      ingesting_ = false;
      plan_->setRunning(false, tr("%1 failed.").arg(operation));
    }
    showBanner(tr("%1 failed: %2").arg(operation, message));
  });
}

bool MainWindow::bannerVisible() const {
  return !banner_->isHidden();
}

void MainWindow::showBanner(const QString& text) {
  banner_text_->setText(text);
  banner_->setVisible(true);
  statusBar()->showMessage(text, 10000);
}

void MainWindow::loadModel(const QString& directory) {
  statusBar()->showMessage(tr("Loading the model in %1…").arg(directory));
  engine_->loadModel(directory);
}

void MainWindow::openFile(const QString& path) {
  const QFileInfo info(path);
  if (info.isDir()) {
    if (QFileInfo::exists(QDir(path).filePath(QStringLiteral("config.json")))) {
      loadModel(path);
    } else {
      showBanner(tr("'%1' is a folder, not a video or a book. To use it as a model it needs "
                    "config.json; to ask about a file, open the file itself.")
                     .arg(path));
    }
    return;
  }
  statusBar()->showMessage(tr("Opening %1…").arg(info.fileName()));
  if (busy_) engine_->stop();  // the new source replaces whatever is being ingested or answered
  engine_->openSource(info.absoluteFilePath());
}

void MainWindow::requestPlan() {
  if (source_.kind == SourceKind::none || model_.directory.isEmpty()) return;
  engine_->plan(plan_->choices());
}

void MainWindow::startIngest() {
  if (busy_ || source_.kind == SourceKind::none) return;
  plan_->setRunning(true);
  ingesting_ = true;
  engine_->ingest(plan_->choices());
}

void MainWindow::ask(const QString& question) {
  question_->setPlainText(question);
  sendQuestion();
}

void MainWindow::sendQuestion() {
  const QString question = question_->toPlainText().trimmed();
  if (question.isEmpty() || busy_ || chat_->answering()) return;
  if (source_.kind == SourceKind::none) {
    showBanner(tr("Open a video or a book first (File > Open), then ask about it."));
    return;
  }
  if (editing_row_ >= 0 && chat_->editQuestion(editing_row_, question)) {
    editing_row_ = -1;
  } else {
    editing_row_ = -1;
    chat_->appendQuestion(question);
  }
  question_->clear();
  startAnswer(question);
}

void MainWindow::startAnswer(const QString& question) {
  chat_->beginAnswer();
  stats_->setText(tr("Thinking…"));
  busy_ = true;  // until the worker says otherwise; stops double sends
  updateActions();
  chat_->setContext(model_.directory, plan_->choices());
  engine_->ask(question, plan_->choices(), generationSettings());
}

void MainWindow::stop() {
  engine_->stop();
}

void MainWindow::regenerate() {
  const int row = chat_->lastQuestionRow();
  if (row < 0 || busy_ || chat_->answering()) return;
  chat_->truncateAfter(row);
  startAnswer(chat_->record().messages[row].text);
}

void MainWindow::editAndResend() {
  const int row = chat_->lastQuestionRow();
  if (row < 0 || busy_ || chat_->answering()) return;
  editing_row_ = row;
  question_->setPlainText(chat_->record().messages[row].text);
  question_->setFocus();
}

void MainWindow::copyAnswer() {
  const auto& messages = chat_->record().messages;
  for (auto it = messages.crbegin(); it != messages.crend(); ++it) {
    if (it->role == ChatMessage::Role::assistant) {
      QApplication::clipboard()->setText(it->text);
      statusBar()->showMessage(tr("The answer is on the clipboard."), 3000);
      return;
    }
  }
}

void MainWindow::followLink(const QUrl& url) {
  emit citationFollowed(url.toString());
  const auto citation = parse_citation_url(url);
  if (!citation) return;
  bool shown = false;
  switch (citation->kind) {
    case Citation::Kind::time:
      shown = media_->seek(citation->seconds);
      break;
    case Citation::Kind::chapter:
      shown = media_->showChapter(citation->number, link_context(transcript_, url.toString()));
      break;
    case Citation::Kind::page:
      shown = media_->showPage(citation->number, link_context(transcript_, url.toString()));
      break;
  }
  if (!shown) {
    statusBar()->showMessage(tr("%1 is not in the open source.").arg(url.toString()), 5000);
  }
}

void MainWindow::scheduleRender() {
  if (!render_timer_->isActive()) render_timer_->start();
}

void MainWindow::renderTranscript() {
  render_timer_->stop();
  QScrollBar* bar = transcript_->verticalScrollBar();
  const bool at_end = bar->value() >= bar->maximum() - 4;
  QString markdown;
  for (const ChatMessage& message : chat_->record().messages) {
    const QString time = message.time.toLocalTime().toString(QStringLiteral("HH:mm"));
    if (message.role == ChatMessage::Role::user) {
      markdown += tr("**You** · %1\n\n").arg(time);
      markdown += link_citations(message.text, source_.kind) + QStringLiteral("\n\n");
    } else {
      markdown += tr("**LWM** · %1\n\n").arg(time);
      markdown += message.text.isEmpty() && chat_->answering()
                      ? tr("…")
                      : link_citations(message.text, source_.kind);
      markdown += QStringLiteral("\n\n");
      if (message.end == AnswerEnd::failed)
        markdown += QStringLiteral("> ") + message.error + "\n\n";
      const QString stats = ChatModel::statsSummary(message);
      if (!stats.isEmpty()) markdown += QStringLiteral("*") + stats + QStringLiteral("*\n\n");
    }
    markdown += QStringLiteral("---\n\n");
  }
  // Answers are Markdown from a model: rendered, but raw HTML in them is shown as text, never
  // interpreted (no remote images, no hidden links).
  transcript_->document()->setMarkdown(
      markdown, QTextDocument::MarkdownFeatures(QTextDocument::MarkdownDialectGitHub |
                                                QTextDocument::MarkdownNoHTML));
  if (at_end) bar->setValue(bar->maximum());
}

QStringList MainWindow::recentFiles() const {
  return settings_->recent_files();
}

void MainWindow::rememberRecent(const QString& path) {
  settings_->add_recent_file(path);
  rebuildRecentMenu();
}

void MainWindow::rebuildRecentMenu() {
  recent_menu_->clear();
  const QStringList recent = recentFiles();
  for (const QString& path : recent) {
    QAction* action = recent_menu_->addAction(QFileInfo(path).fileName());
    action->setToolTip(path);
    connect(action, &QAction::triggered, this, [this, path] { openFile(path); });
  }
  recent_menu_->setEnabled(!recent.isEmpty());
}

QAction* MainWindow::action(const QString& object_name) const {
  return findChild<QAction*>(object_name);
}

void MainWindow::updateActions() {
  const bool has_source = source_.kind != SourceKind::none;
  const bool idle = !busy_ && !chat_->answering();
  ask_button_->setEnabled(has_source && idle);
  stop_button_->setEnabled(busy_ || chat_->answering());
  const bool has_question = chat_->lastQuestionRow() >= 0;
  regenerate_button_->setEnabled(idle && has_question);
  edit_button_->setEnabled(idle && has_question);
  copy_button_->setEnabled(chat_->rowCount() > 1);
  plan_->ingestButton()->setEnabled(has_source && idle);
}

void MainWindow::updateTitle() {
  QString title = QStringLiteral("LWM Studio");
  if (source_.kind != SourceKind::none) title = source_.title + QStringLiteral(" — ") + title;
  if (!model_.name.isEmpty()) title += QStringLiteral(" (") + model_.name + ')';
  setWindowTitle(title);
}

void MainWindow::applyAppearance() {
  apply_appearance(*qApp, settings_->theme(), settings_->font_size(), system_appearance_);
}

GenerationSettings MainWindow::generationSettings() const {
  const SamplingSettings sampling = settings_->sampling();
  GenerationSettings settings;
  settings.max_new_tokens = sampling.max_tokens;
  settings.temperature = sampling.temperature;
  settings.top_k = sampling.top_k;
  settings.top_p = sampling.top_p;
  settings.seed = sampling.seed;
  return settings;
}

// Saved after every question and answer (ChatModel::changed), so a crash loses at most the
// answer being written. A chat without messages is not worth a file.
void MainWindow::saveChat() {
  const ChatRecord& record = chat_->record();
  if (record.id.isEmpty() || record.messages.isEmpty()) return;
  if (sessions_->upsert(record)) {
    sessions_panel_->select(record.id);
    if (keeper_) keeper_->set_open_chat(record.id);
  }
}

bool MainWindow::openChat(const QString& id) {
  const ChatRecord* record = sessions_->record(id);
  if (!record) return false;
  if (record->id == chat_->record().id) return true;
  if (!record->model_dir.isEmpty() && record->model_dir != model_.directory &&
      QFileInfo::exists(record->model_dir)) {
    loadModel(record->model_dir);
  }
  if (QFileInfo(record->source_path) == QFileInfo(source_.path)) {
    plan_->setChoices(record->choices);
    chat_->setRecord(*record);
    if (keeper_) keeper_->set_open_chat(id);
    return true;
  }
  if (!QFileInfo::exists(record->source_path)) {
    showBanner(tr("The chat \"%1\" is about %2, which is no longer there. Its messages are "
                  "shown; to ask more, move the file back or open another one.")
                   .arg(record->title, record->source_path));
    chat_->setRecord(*record);
    return true;
  }
  pending_chat_ = *record;
  engine_->openSource(record->source_path);
  return true;
}

void MainWindow::restoreLastSession(bool reopen) {
  if (!keeper_) return;
  const AppState state = keeper_->start();
  if (!state.window_geometry.isEmpty()) restoreGeometry(state.window_geometry);
  if (!state.window_state.isEmpty()) restoreState(state.window_state);
  if (keeper_->last_run_crashed()) {
    showBanner(tr("LWM Studio did not close normally last time. Your chats were saved after "
                  "every answer%1; nothing is ingested again until you press Ingest or ask.")
                   .arg(reopen ? tr(" and the last one is open again") : QString()));
  }
  if (!reopen) return;
  if (!state.open_chat_id.isEmpty() && openChat(state.open_chat_id)) return;
  if (!state.open_file.isEmpty() && QFileInfo::exists(state.open_file)) openFile(state.open_file);
}

void MainWindow::exportChat(bool markdown) {
  const ChatRecord& record = chat_->record();
  if (record.messages.isEmpty()) {
    showBanner(tr("This chat has no messages yet; ask something before exporting it."));
    return;
  }
  const QString extension = markdown ? QStringLiteral("md") : QStringLiteral("json");
  const QString path = QFileDialog::getSaveFileName(
      this, markdown ? tr("Export the chat as Markdown") : tr("Export the chat as JSON"),
      suggested_export_name(record, extension),
      markdown ? tr("Markdown (*.md)") : tr("JSON (*.json)"));
  if (path.isEmpty()) return;
  QString error;
  const bool ok =
      markdown ? export_markdown(record, path, &error) : export_json(record, path, &error);
  if (!ok)
    showBanner(error);
  else
    statusBar()->showMessage(tr("Exported to %1").arg(path), 5000);
}

void MainWindow::showSettings() {
  SettingsDialog dialog(*settings_, this);
  if (dialog.exec() != QDialog::Accepted) return;
  applyAppearance();
  IngestChoices choices = plan_->choices();
  choices.devices = settings_->devices();
  choices.kv_cache = settings_->kv_cache();
  plan_->setChoices(choices);
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
  if (event->mimeData()->hasUrls() && event->mimeData()->urls().first().isLocalFile())
    event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
  const auto urls = event->mimeData()->urls();
  if (urls.isEmpty() || !urls.first().isLocalFile()) return;
  openFile(urls.first().toLocalFile());
  event->acceptProposedAction();
}

void MainWindow::closeEvent(QCloseEvent* event) {
  engine_->stop();
  if (keeper_) {
    keeper_->set_window(saveGeometry(), saveState());
    keeper_->finish();  // a clean quit: the next start does not report a crash
  }
  QMainWindow::closeEvent(event);
}

}  // namespace lwm::gui
