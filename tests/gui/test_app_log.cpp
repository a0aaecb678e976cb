// The app log: Qt messages go to a file with timestamps and levels; the file rotates at its size
// limit keeping the given number of older files; lines written from several threads at once
// are never torn or lost (apart from those rotated out).
#include <QDateTime>
#include <QDir>
#include <QFile>
#include <QLoggingCategory>
#include <QRegularExpression>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>
#include <QThread>
#include <map>
#include <memory>
#include <vector>

#include "gui_test_support.h"
#include "lwm/gui/app_log.h"

using namespace lwm::gui;

Q_LOGGING_CATEGORY(lcTestEngine, "lwm.engine")

namespace {

QStringList read_lines(const QString& path) {
  return QString::fromUtf8(test::read_file(path)).split('\n', Qt::SkipEmptyParts);
}

// Silences the previous (stderr) handler while thousands of lines are logged.
void drop_message(QtMsgType, const QMessageLogContext&, const QString&) {}

}  // namespace

class AppLogTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    test::log_seed("gui_log_tests");
  }

  void default_path_is_in_the_app_data_folder() {
    const QString data = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation);
    QCOMPARE(default_log_path(), data + "/logs/lwm-studio.log");
    QCOMPARE(log_file_path(), default_log_path());  // nothing installed
  }

  void messages_reach_the_file_with_time_and_level() {
    QTemporaryDir dir;
    const QString path = dir.path() + "/logs/lwm-studio.log";  // the folder is created
    const QDateTime before = QDateTime::currentDateTimeUtc().addMSecs(-1);
    QString error;
    QVERIFY2(install_log_handler(path, &error), qPrintable(error));
    QCOMPARE(log_file_path(), path);
    QTest::ignoreMessage(QtWarningMsg, "disk is nearly full");
    qWarning() << "disk is nearly full";
    QTest::ignoreMessage(QtInfoMsg, "ingest took 12 s\nsecond line");
    qInfo().noquote() << "ingest took 12 s\nsecond line";
    QTest::ignoreMessage(QtCriticalMsg, "GPU 1 failed");
    qCCritical(lcTestEngine) << "GPU 1 failed";
    uninstall_log_handler();
    QCOMPARE(log_file_path(), default_log_path());
    qWarning("after uninstall: not in the file");

    const QStringList lines = read_lines(path);
    QCOMPARE(lines.size(), 4);
    static const QRegularExpression record(
        "^(\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z) "
        "(debug|info|warning|critical|fatal) ");
    const QRegularExpressionMatch first = record.match(lines[0]);
    QVERIFY2(first.hasMatch(), qPrintable(lines[0]));
    const QDateTime stamp = QDateTime::fromString(first.captured(1), Qt::ISODateWithMs);
    QVERIFY(stamp >= before && stamp <= QDateTime::currentDateTimeUtc());
    QCOMPARE(first.captured(2), QString("warning"));
    QVERIFY(lines[0].contains(" warning disk is nearly full"));
    QVERIFY(lines[1].contains(" info ingest took 12 s"));
    QCOMPARE(lines[2], QString("    second line"));  // continuation lines are indented
    QVERIFY2(lines[3].contains(" critical [lwm.engine] GPU 1 failed"), qPrintable(lines[3]));
  }

  void the_file_rotates_and_keeps_three_old_ones() {
    QTemporaryDir dir;
    const QString path = dir.path() + "/app.log";
    constexpr qint64 max_bytes = 4096;
    RotatingLogFile log(path, max_bytes, 3);
    QVERIFY(log.is_open());
    constexpr int count = 1000;  // ~40 bytes each: ~10 files' worth
    for (int i = 0; i < count; ++i)
      log.write_line(QString("line %1 ").arg(i, 6, 10, QChar('0')) + QString("é").repeated(i % 20));
    QStringList files = QDir(dir.path()).entryList(QDir::Files);
    files.sort();
    QCOMPARE(files, (QStringList{"app.log", "app.log.1", "app.log.2", "app.log.3"}));
    // Oldest to newest: .3, .2, .1, current; together the newest lines, contiguous, ending at
    // the last one; every file within the limit.
    QStringList lines;
    for (const char* name : {"app.log.3", "app.log.2", "app.log.1", "app.log"}) {
      QVERIFY(QFileInfo(dir.filePath(name)).size() <= max_bytes);
      QVERIFY(QFileInfo(dir.filePath(name)).size() > max_bytes / 2);
      lines << read_lines(dir.filePath(name));
    }
    QVERIFY(lines.size() > 3 * max_bytes / 50);
    for (int i = 0; i < lines.size(); ++i) {
      const int number = count - int(lines.size()) + i;
      QCOMPARE(lines[i], QString("line %1 ").arg(number, 6, 10, QChar('0')) +
                             QString("é").repeated(number % 20));
    }
  }

  void reopening_appends_and_a_long_line_gets_its_own_file() {
    QTemporaryDir dir;
    const QString path = dir.path() + "/app.log";
    { RotatingLogFile(path, 100, 1).write_line("first"); }
    {
      RotatingLogFile log(path, 100, 1);
      log.write_line("second");
      log.write_line(QString("x").repeated(300));
      log.write_line("third");
    }
    QCOMPARE(read_lines(path), QStringList{"third"});
    QCOMPARE(read_lines(path + ".1"), QStringList{QString("x").repeated(300)});
    QVERIFY(!QFile::exists(path + ".2"));  // keep = 1: "first second" fell off
  }

  void lines_from_many_threads_are_whole() {
    QTemporaryDir dir;
    const QString path = dir.path() + "/lwm-studio.log";
    // Under ours, a handler that drops the lines instead of Qt Test's, which prints them all.
    const QtMessageHandler test_handler = qInstallMessageHandler(drop_message);
    // 64 KiB files and enough of them to keep all ~600 KB: it rotates about nine times while
    // the threads write, and still every line must be there exactly once.
    constexpr int keep = 14;
    QVERIFY(install_log_handler(path, nullptr, 1 << 16, keep));

    constexpr int threads = 6;
    constexpr int per_thread = 1500;
    std::vector<std::unique_ptr<QThread>> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back(QThread::create([t] {
        for (int i = 0; i < per_thread; ++i)
          qInfo("thread %d message %d %s", t, i, "payload-payload");
      }));
      workers.back()->start();
    }
    for (auto& worker : workers) QVERIFY(worker->wait(60000));
    uninstall_log_handler();
    qInstallMessageHandler(test_handler);

    QStringList lines;
    QVERIFY(QFile::exists(path + ".5"));
    QVERIFY(!QFile::exists(path + "." + QString::number(keep)));
    for (int n = keep; n >= 0; --n)
      lines << read_lines(n > 0 ? path + "." + QString::number(n) : path);
    QCOMPARE(lines.size(), threads * per_thread);
    static const QRegularExpression record(
        "^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z info thread (\\d) message (\\d+) "
        "payload-payload$");
    std::map<int, int> last;  // per thread: messages in order, none lost, none torn
    for (const QString& line : lines) {
      const QRegularExpressionMatch match = record.match(line);
      QVERIFY2(match.hasMatch(), qPrintable(line));
      const int t = match.captured(1).toInt();
      const int i = match.captured(2).toInt();
      if (last.count(t)) QCOMPARE(i, last[t] + 1);
      last[t] = i;
    }
    QCOMPARE(int(last.size()), threads);
    for (const auto& [t, i] : last) QCOMPARE(i, per_thread - 1);
  }

  void an_unopenable_path_is_reported() {
    QTemporaryDir dir;
    QVERIFY(test::write_file(dir.path() + "/file"));
    QString error;
    QVERIFY(!install_log_handler(dir.path() + "/file/app.log", &error));
    QVERIFY2(error.contains("file/app.log"), qPrintable(error));
    QCOMPARE(log_file_path(), default_log_path());
  }
};

QTEST_GUILESS_MAIN(AppLogTest)
#include "test_app_log.moc"
