#include "lwm/gui/main_window.h"

#include <QAction>
#include <QActionGroup>
#include <QApplication>
#include <QClipboard>
#include <QCloseEvent>
#include <QDir>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QFrame>
#include <QHBoxLayout>
#include <QLabel>
#include <QMenuBar>
#include <QMediaPlayer>
#include <QMessageBox>
#include <QMimeData>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QScrollBar>
#include <QSettings>
#include <QSplitter>
#include <QStatusBar>
#include <QTextBrowser>
#include <QTimer>
#include <QUuid>
#include <QVBoxLayout>

#include "lwm/gui/chat_model.h"
#include "lwm/gui/citations.h"
#include "lwm/gui/engine.h"
#include "lwm/gui/text_format.h"
#include "media_pane.h"
#include "plan_panel.h"
#include "theme.h"

namespace lwm::gui {
namespace {

constexpr int kMaxRecent = 10;
const char* const kRecentKey = "recentFiles";
const char* const kThemeKey = "theme";

QString video_filter() {
  return QObject::tr("Videos and books (*.mp4 *.mkv *.webm *.mov *.avi *.m4v *.txt *.md *.epub "
                     "*.pdf);;Videos (*.mp4 *.mkv *.webm *.mov *.avi *.m4v);;Books (*.txt *.md "
                     "*.epub *.pdf);;All files (*)");
}

}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
  engine_ = new Engine(this);
  chat_ = new ChatModel(this);
  render_timer_ = new QTimer(this);
  render_timer_->setSingleShot(true);
  render_timer_->setInterval(40);  // coalesces streamed tokens into ~25 renders a second
  connect(render_timer_, &QTimer::timeout, this, &MainWindow::renderTranscript);
  buildWidgets();
  buildMenus();
  connectEngine();
  connect(chat_, &ChatModel::dataChanged, this, &MainWindow::scheduleRender);
  connect(chat_, &ChatModel::rowsInserted, this, &MainWindow::scheduleRender);
  connect(chat_, &ChatModel::rowsRemoved, this, &MainWindow::scheduleRender);
  connect(chat_, &ChatModel::modelReset, this, &MainWindow::scheduleRender);
  setAcceptDrops(true);
  resize(1280, 800);
  setTheme(QSettings().value(kThemeKey, QStringLiteral("system")).toString());
  updateActions();
  updateTitle();
}

MainWindow::~MainWindow() = default;

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
  transcript_->setPlaceholderText(tr("Answers appear here. Times and chapters they cite are "
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
  statusBar()->showMessage(tr("No model loaded"));
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
    const QString path = QFileDialog::getOpenFileName(this, tr("Open a video or a book"), {},
                                                      video_filter());
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
  add(file, "quit", tr("&Quit"), QKeySequence::Quit, [this] { close(); });

  QMenu* chat = menuBar()->addMenu(tr("&Chat"));
  add(chat, "ingest", tr("&Ingest"), QKeySequence(tr("Ctrl+I")), [this] { startIngest(); });
  add(chat, "ask", tr("&Ask"), QKeySequence(tr("Ctrl+Return")), [this] { sendQuestion(); });
  add(chat, "stop", tr("&Stop"), QKeySequence(Qt::Key_Escape), [this] { stop(); });
  add(chat, "regenerate", tr("&Regenerate"), QKeySequence(tr("Ctrl+R")), [this] { regenerate(); });
  add(chat, "editResend", tr("&Edit && Resend"), QKeySequence(tr("Ctrl+E")),
      [this] { editAndResend(); });
  add(chat, "copy", tr("&Copy Answer"), QKeySequence(tr("Ctrl+Shift+C")), [this] { copyAnswer(); });

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
  add(player, "seekForward", tr("Seek &Forward 10 s"), QKeySequence(tr("Ctrl+Right")), [this] {
    media_->seek(static_cast<double>(media_->player()->position()) / 1000.0 + 10.0);
  });

  QMenu* view = menuBar()->addMenu(tr("&View"));
  QMenu* theme = view->addMenu(tr("&Theme"));
  auto* themes = new QActionGroup(this);
  const QString current = QSettings().value(kThemeKey, QStringLiteral("system")).toString();
  for (const auto& [name, text] : {std::pair{QStringLiteral("system"), tr("Follow &System")},
                                   std::pair{QStringLiteral("light"), tr("&Light")},
                                   std::pair{QStringLiteral("dark"), tr("&Dark")}}) {
    QAction* action = theme->addAction(text);
    action->setObjectName(QStringLiteral("theme-") + name);
    action->setCheckable(true);
    action->setChecked(name == current);
    themes->addAction(action);
    connect(action, &QAction::triggered, this, [this, name = name] { setTheme(name); });
  }

  QMenu* help = menuBar()->addMenu(tr("&Help"));
  add(help, "about", tr("&About LWM Studio"), QKeySequence(), [this] {
    QMessageBox::about(this, tr("About LWM Studio"),
                       tr("<b>LWM Studio %1</b><p>Ask a Large World Model about long videos and "
                          "books, on your own machine.</p>")
                           .arg(QApplication::applicationVersion()));
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
    statusBar()->showMessage(
        tr("Model %1: %2 parameters, context %3 tokens, %4%5")
            .arg(info.name)
            .arg(info.parameters)
            .arg(info.context_window)
            .arg(format_bytes(info.weights_bytes))
            .arg(info.vision ? tr(", reads videos") : tr(", text only")));
    updateTitle();
    requestPlan();
  });
  connect(w, &Engine::sourceOpened, this, [this](const SourceInfo& source) {
    source_ = source;
    media_->showSource(source);
    plan_->setSourceKind(source.kind);
    ChatRecord record;
    record.id = QUuid::createUuid().toString(QUuid::WithoutBraces);
    record.title = source.title;
    record.model_dir = model_.directory;
    record.source_kind = source.kind;
    record.source_path = source.path;
    record.choices = plan_->choices();
    record.created = record.updated = QDateTime::currentDateTimeUtc();
    chat_->setRecord(record);
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
  connect(w, &Engine::ingestFinished, this, [this](qint64 tokens, double seconds) {
    ingesting_ = false;
    plan_->setRunning(false, tr("Ingested: %1 tokens cached in %2. Ask away.")
                                 .arg(tokens)
                                 .arg(format_duration(seconds)));
  });
  connect(w, &Engine::ingestCancelled, this, [this](const QString& stage, qint64 tokens) {
    ingesting_ = false;
    plan_->setRunning(false, tr("Cancelled during %1; %2 tokens stay cached, and Ingest resumes "
                                "from there.")
                                 .arg(stage)
                                 .arg(tokens));
  });
  connect(w, &Engine::answerText, this, [this](const QString& text) {
    if (ingesting_) {
      ingesting_ = false;
      plan_->setRunning(false, tr("Ingested."));
    }
    chat_->appendToAnswer(text);
  });
  connect(w, &Engine::answerFinished, this,
          [this](const AnswerStats& stats, AnswerEnd end, const QString& error) {
            if (ingesting_) {
              ingesting_ = false;
              plan_->setRunning(false, QString());
            }
            chat_->finishAnswer(stats, end, error);
            const auto& messages = chat_->record().messages;
            stats_->setText(messages.isEmpty() ? QString()
                                               : ChatModel::statsSummary(messages.last()));
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

bool MainWindow::bannerVisible() const { return !banner_->isHidden(); }

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
  engine_->ask(question, plan_->choices(), GenerationSettings{});
}

void MainWindow::stop() { engine_->stop(); }

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
    case Citation::Kind::time: shown = media_->seek(citation->seconds); break;
    case Citation::Kind::chapter: shown = media_->showChapter(citation->number); break;
    case Citation::Kind::page: shown = media_->showPage(citation->number); break;
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
      markdown += message.text.isEmpty() && chat_->answering() ? tr("…")
                                                               : link_citations(message.text, source_.kind);
      markdown += QStringLiteral("\n\n");
      if (message.end == AnswerEnd::failed) markdown += QStringLiteral("> ") + message.error + "\n\n";
      const QString stats = ChatModel::statsSummary(message);
      if (!stats.isEmpty()) markdown += QStringLiteral("*") + stats + QStringLiteral("*\n\n");
    }
    markdown += QStringLiteral("---\n\n");
  }
  transcript_->setMarkdown(markdown);
  if (at_end) bar->setValue(bar->maximum());
}

QStringList MainWindow::recentFiles() const {
  return QSettings().value(kRecentKey).toStringList();
}

void MainWindow::rememberRecent(const QString& path) {
  QStringList recent = recentFiles();
  recent.removeAll(path);
  recent.prepend(path);
  while (recent.size() > kMaxRecent) recent.removeLast();
  QSettings().setValue(kRecentKey, recent);
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

void MainWindow::setTheme(const QString& name) {
  apply_theme(name);
  QSettings().setValue(kThemeKey, name);
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
  QMainWindow::closeEvent(event);
}

}  // namespace lwm::gui
