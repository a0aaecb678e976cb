// The real window, end to end, as a user drives it (run under Xvfb by ctest): drop a book on the
// window, see the plan, ingest with the bundled demo model, ask with the keyboard shortcut, get a
// streamed answer with its statistics, click a chapter link and see the reader highlight it.
// The same for a generated video with a tiny vision model, clicking a timestamp to seek the
// player. Each leaves a screenshot in the build directory (CI keeps them as artifacts).
#include <QClipboard>
#include <QComboBox>
#include <QDir>
#include <QDropEvent>
#include <QLabel>
#include <QListWidget>
#include <QMimeData>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>
#include <QTextBlock>
#include <QTextBrowser>
#include <memory>

#include "gui_test_support.h"
#include "lwm/devices.h"
#include "lwm/gui/app_settings.h"
#include "lwm/gui/chat_model.h"
#include "lwm/gui/chat_store.h"
#include "lwm/gui/engine.h"
#include "lwm/gui/main_window.h"
#include "lwm/gui/session_list_model.h"
#include "lwm/model_config.h"
#include "media_pane.h"
#include "plan_panel.h"

using namespace lwm::gui;

namespace {

constexpr int kTimeoutMs = 120000;

void drop_file(QWidget* target, const QString& path) {
  QMimeData mime;
  mime.setUrls({QUrl::fromLocalFile(path)});
  const QPoint at = target->rect().center();
  QDragEnterEvent enter(at, Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
  QApplication::sendEvent(target, &enter);
  QVERIFY(enter.isAccepted());
  QDropEvent drop(QPointF(at), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
  QApplication::sendEvent(target, &drop);
}

// Clicks the first link to `href` in the transcript, where it is drawn on screen.
bool click_link(QTextBrowser* browser, const QString& href) {
  for (QTextBlock block = browser->document()->begin(); block.isValid(); block = block.next()) {
    for (auto it = block.begin(); !it.atEnd(); ++it) {
      const QTextFragment fragment = it.fragment();
      if (fragment.charFormat().anchorHref() != href) continue;
      QTextCursor cursor(browser->document());
      cursor.setPosition(fragment.position() + fragment.length() / 2);
      browser->setTextCursor(cursor);
      browser->ensureCursorVisible();
      const QPoint at = browser->cursorRect(cursor).center();
      QTest::mouseClick(browser->viewport(), Qt::LeftButton, Qt::NoModifier, at);
      return true;
    }
  }
  return false;
}

QString screenshot(QWidget* window, const QString& name) {
  const QString path = QDir(QStringLiteral(LWM_BINARY_DIR)).filePath(name);
  window->grab().save(path);
  return path;
}

}  // namespace

class WindowEndToEnd : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);  // settings and recent files stay out of $HOME
    QCoreApplication::setOrganizationName(QStringLiteral("LWM-tests"));
    QCoreApplication::setApplicationName(QStringLiteral("lwm-studio-e2e"));
    QVERIFY(dir_.isValid());
  }

  void bookWithTheDemoModel() {
    const QString demo = QStringLiteral(LWM_BINARY_DIR "/demo-model");
    QVERIFY2(QFileInfo::exists(demo + "/config.json"), "build the lwm_demo_model target first");
    const QString book = test::write_book(dir_, 3, 3);

    AppSettings settings;  // short answers keep the test quick
    SamplingSettings sampling;
    sampling.max_tokens = 48;
    settings.set_sampling(sampling);
    settings.sync();
    const QString chats = dir_.filePath(QStringLiteral("chats"));
    auto owned = std::make_unique<MainWindow>(chats);
    MainWindow& window = *owned;
    // The ingest cache in the test's folder, so no run finds another run's snapshots.
    window.engine()->setCacheDirectory(dir_.filePath(QStringLiteral("ingest-cache")));
    window.restoreLastSession(true);  // a first start: nothing to reopen, no crash to report
    QVERIFY(!window.bannerVisible());
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    window.activateWindow();
    QVERIFY(QTest::qWaitForWindowActive(&window));
    QSignalSpy ingested(window.engine(), &Engine::ingestFinished);
    QSignalSpy answered(window.engine(), &Engine::answerFinished);
    QSignalSpy followed(&window, &MainWindow::citationFollowed);

    window.loadModel(demo);
    drop_file(&window, book);
    QTRY_VERIFY_WITH_TIMEOUT(window.source().kind == SourceKind::book, kTimeoutMs);
    QCOMPARE(window.source().chapters.size(), 4);  // the title heading and three chapters
    QTRY_VERIFY_WITH_TIMEOUT(window.planPanel()->planLabel()->text().contains("Fits"), kTimeoutMs);
    QVERIFY(window.windowTitle().contains(QStringLiteral("demo-model")));
    // The status bar shows the context the demo model's own config.json declares.
    const auto context = lwm::ModelConfig::load(demo.toStdString()).max_sequence_length;
    QVERIFY2(window.modelLabel()->text().contains(QStringLiteral("context %1 tokens").arg(context)),
             qPrintable(window.modelLabel()->text()));
    QCOMPARE(window.recentFiles().value(0), QFileInfo(book).absoluteFilePath());
    // From start-up the status bar says which GPUs there are, or why none (the core's line).
    const lwm::DeviceList devices = lwm::list_devices();
    QCOMPARE(window.gpuLabel()->text().startsWith(QStringLiteral("CPU only")),
             devices.gpus().empty());
    QVERIFY2(window.gpuLabel()->toolTip().contains(QString::fromStdString(devices.cuda_status)),
             qPrintable(window.gpuLabel()->toolTip()));
    // The plan follows the choices live: an int8 KV cache shows what it would take and that
    // this build cannot ingest with it; back on auto it fits again, one line per device.
    QLabel* plan = window.planPanel()->planLabel();
    QComboBox* kv = window.planPanel()->kvCacheBox();
    kv->setCurrentIndex(kv->findData(QStringLiteral("int8")));
    QTRY_VERIFY_WITH_TIMEOUT(plan->text().contains(QStringLiteral("Ingest is refused")),
                             kTimeoutMs);
    QVERIFY2(plan->text().contains(QStringLiteral("int8 KV cache")), qPrintable(plan->text()));
    kv->setCurrentIndex(kv->findData(QStringLiteral("auto")));
    QTRY_VERIFY_WITH_TIMEOUT(!plan->text().contains(QStringLiteral("refused")), kTimeoutMs);
    QVERIFY2(plan->text().startsWith(QStringLiteral("Fits on cpu")) &&
                 plan->text().contains(QStringLiteral("cpu: weights")),
             qPrintable(plan->text()));

    QTest::mouseClick(window.planPanel()->ingestButton(), Qt::LeftButton);
    QTRY_COMPARE_WITH_TIMEOUT(ingested.size(), 1, kTimeoutMs);
    QVERIFY(!window.bannerVisible());

    window.questionEdit()->setFocus();
    QTest::keyClicks(window.questionEdit(), QStringLiteral("What happens in chapter 3?"));
    QTest::keyClick(window.questionEdit(), Qt::Key_Return, Qt::ControlModifier);
    QTRY_COMPARE_WITH_TIMEOUT(window.chatModel()->rowCount(), 2, kTimeoutMs);
    QTRY_COMPARE_WITH_TIMEOUT(answered.size(), 1, kTimeoutMs);
    QTRY_VERIFY(!window.chatModel()->answering());
    const ChatMessage answer = window.chatModel()->record().messages.last();
    QCOMPARE(answer.role, ChatMessage::Role::assistant);
    QVERIFY(answer.stats.generated_tokens > 0);
    QVERIFY2(window.statsLabel()->text().contains(QStringLiteral("tok/s")),
             qPrintable(window.statsLabel()->text()));
    QVERIFY2(window.statsLabel()->text().contains(QStringLiteral("first token")),
             qPrintable(window.statsLabel()->text()));

    // Copy puts the answer on the clipboard; Regenerate asks the same question again, keeping one
    // question and one answer; Edit & Resend puts the question back in the box, and the edited
    // question replaces it.
    window.action(QStringLiteral("copy"))->trigger();
    QCOMPARE(QApplication::clipboard()->text(), answer.text);
    QTRY_VERIFY(!window.engine()->busy());
    window.action(QStringLiteral("regenerate"))->trigger();
    QTRY_COMPARE_WITH_TIMEOUT(answered.size(), 2, kTimeoutMs);
    QTRY_VERIFY(!window.chatModel()->answering() && !window.engine()->busy());
    QCOMPARE(window.chatModel()->rowCount(), 2);
    QVERIFY(window.chatModel()->record().messages.last().stats.generated_tokens > 0);
    window.action(QStringLiteral("editResend"))->trigger();
    QCOMPARE(window.questionEdit()->toPlainText(), QStringLiteral("What happens in chapter 3?"));
    const QString edited = QStringLiteral("What happens in chapter 3 after page 1?");
    window.questionEdit()->setPlainText(edited);
    window.action(QStringLiteral("ask"))->trigger();
    QTRY_COMPARE_WITH_TIMEOUT(answered.size(), 3, kTimeoutMs);
    QTRY_VERIFY(!window.chatModel()->answering());
    QCOMPARE(window.chatModel()->rowCount(), 2);
    QCOMPARE(window.chatModel()->record().messages.first().text, edited);

    // "chapter 3" is a link (the demo model's random answer cites nothing real, the question
    // does); clicking it scrolls the reader to chapter 3 and highlights the passage the citing
    // sentence points to ("... chapter 3 after page 1?": the paragraph that says "paragraph 1
    // of chapter 3"), not the whole chapter.
    QVERIFY(click_link(window.transcript(), QStringLiteral("chapter:3")));
    QTRY_COMPARE(followed.size(), 1);
    const BookAnchor chapter = window.source().chapters[3];  // [0] is the book's title
    QVERIFY(chapter.title.startsWith(QStringLiteral("Chapter 3")));
    QTRY_VERIFY(window.mediaPane()->highlightedRange().first > chapter.begin);
    QVERIFY(window.mediaPane()->highlightedRange().second < chapter.end);
    const QString selected = window.mediaPane()->reader()->textCursor().selectedText();
    QVERIFY2(selected.startsWith(QStringLiteral("In summer the keeper")) &&
                 selected.endsWith(QStringLiteral("paragraph 1 of chapter 3.")),
             qPrintable(selected.left(200)));
    // Saved after the answer: the sidebar lists the chat and its file is on disk.
    const QString id = window.chatModel()->record().id;
    const QString window_last_answer = window.chatModel()->record().messages.last().text;
    QTRY_COMPARE(window.sessions()->rowCount(), 1);
    QVERIFY(QFileInfo::exists(window.store()->file_path(id)));
    const QString png = screenshot(&window, QStringLiteral("lwm-studio-e2e-book.png"));
    qInfo("screenshot: %s", qPrintable(png));

    // The window goes away without a clean quit, as in a crash; the next start reopens the
    // chat and its book, and says what happened.
    owned.reset();
    {
      MainWindow reopened(chats);
      reopened.engine()->setCacheDirectory(dir_.filePath(QStringLiteral("ingest-cache")));
      reopened.loadModel(demo);
      reopened.restoreLastSession(true);
      reopened.show();
      QVERIFY(reopened.bannerVisible());
      QVERIFY2(reopened.bannerLabel()->text().contains(QStringLiteral("did not close normally")),
               qPrintable(reopened.bannerLabel()->text()));
      QTRY_VERIFY_WITH_TIMEOUT(reopened.source().kind == SourceKind::book, kTimeoutMs);
      QCOMPARE(reopened.chatModel()->record().id, id);
      QCOMPARE(reopened.chatModel()->rowCount(), 2);
      QCOMPARE(reopened.chatModel()->record().messages.last().text, window_last_answer);
      // Ingesting the reopened chat's book restores the KV snapshot the first window saved:
      // nothing is prefilled again.
      QSignalSpy reingested(reopened.engine(), &Engine::ingestFinished);
      QTRY_VERIFY_WITH_TIMEOUT(reopened.planPanel()->ingestButton()->isEnabled(), kTimeoutMs);
      QTest::mouseClick(reopened.planPanel()->ingestButton(), Qt::LeftButton);
      QTRY_COMPARE_WITH_TIMEOUT(reingested.size(), 1, kTimeoutMs);
      const auto report = reingested[0][0].value<IngestReport>();
      QCOMPARE(report.prefilled_tokens, 0);
      QCOMPARE(report.restored_tokens, report.source_tokens);
      reopened.close();  // a clean quit this time
    }
    MainWindow third(chats);
    third.restoreLastSession(false);
    QVERIFY2(!third.bannerVisible(), qPrintable(third.bannerLabel()->text()));
    QCOMPARE(third.sessions()->rowCount(), 1);
  }

  void videoWithATinyVisionModel() {
    const QString video = test::write_video(dir_, 6);
    if (video.isEmpty()) QSKIP("no ffmpeg CLI to write the test video");
    const QString model =
        test::make_tiny_model(dir_, QStringLiteral("vision-model"), true, test::test_seed());

    MainWindow window(dir_.filePath(QStringLiteral("video-chats")));
    window.engine()->setCacheDirectory(dir_.filePath(QStringLiteral("ingest-cache")));
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    QSignalSpy answered(window.engine(), &Engine::answerFinished);
    window.loadModel(model);
    window.openFile(video);
    QTRY_VERIFY_WITH_TIMEOUT(window.source().kind == SourceKind::video, kTimeoutMs);
    // Every frame (48) is more than the tiny model's context holds: the plan says so live, and
    // its suggestion, one click away, is the most frames that fit.
    QLabel* plan = window.planPanel()->planLabel();
    QPushButton* suggestion = window.planPanel()->suggestionButton();
    window.planPanel()->framesBox()->setValue(48);
    QTRY_VERIFY_WITH_TIMEOUT(plan->text().startsWith("48 frames. It does not fit"), kTimeoutMs);
    QVERIFY2(plan->text().contains(QStringLiteral("It would fit with at most")),
             qPrintable(plan->text()));
    QTRY_VERIFY(suggestion->isVisible());
    qInfo("screenshot: %s", qPrintable(screenshot(&window, "lwm-studio-e2e-plan.png")));
    QTest::mouseClick(suggestion, Qt::LeftButton);
    const int most = window.planPanel()->framesBox()->value();
    QVERIFY(most > 6 && most < 48);
    QTRY_VERIFY_WITH_TIMEOUT(plan->text().startsWith(QStringLiteral("%1 frames. Fits").arg(most)),
                             kTimeoutMs);
    QVERIFY(!suggestion->isVisible());
    window.planPanel()->framesBox()->setValue(6);
    QTRY_VERIFY_WITH_TIMEOUT(window.planPanel()->planLabel()->text().startsWith("6 frames"),
                             kTimeoutMs);

    // Asking ingests first (decoding with thumbnails, tokenizing, prefill), then answers.
    window.ask(QStringLiteral("What is on screen at 0:03? <img src=\"x.png\">"));
    QTRY_COMPARE_WITH_TIMEOUT(answered.size(), 1, kTimeoutMs);
    // Raw HTML in a message is shown as text, not interpreted.
    QTRY_VERIFY(window.transcript()->toPlainText().contains(QStringLiteral("<img src=\"x.png\">")));
    QCOMPARE(window.mediaPane()->timeline()->count(), 6);
    QVERIFY(click_link(window.transcript(), QStringLiteral("seek:3")));
    QTRY_COMPARE(window.mediaPane()->lastSeekSeconds(), 3.0);
    // The timeline selects the sampled frame labelled 0:03 as the player is (frame 28 of 48 at
    // 8 fps, 3.5 s), not the one before it (2.25 s, labelled 0:02).
    const int row = window.mediaPane()->timeline()->currentRow();
    QVERIFY(row >= 0);
    QCOMPARE(window.mediaPane()->timeline()->item(row)->text(), QStringLiteral("0:03"));
    const QString png = screenshot(&window, QStringLiteral("lwm-studio-e2e-video.png"));
    qInfo("screenshot: %s", qPrintable(png));
  }

 private:
  QTemporaryDir dir_;
};

QTEST_MAIN(WindowEndToEnd)
#include "test_window_e2e.moc"
