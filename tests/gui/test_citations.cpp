// Times and book locations in answers become links, and links become citations again.
#include <QTest>

#include "lwm/gui/citations.h"
#include "lwm/gui/text_format.h"

using namespace lwm::gui;

class CitationsTest : public QObject {
  Q_OBJECT

 private slots:
  void timestampsParse_data() {
    QTest::addColumn<QString>("text");
    QTest::addColumn<double>("seconds");  // < 0: not a timestamp
    QTest::newRow("m:ss") << "0:42" << 42.0;
    QTest::newRow("mm:ss") << "12:05" << 725.0;
    QTest::newRow("h:mm:ss") << "1:02:03" << 3723.0;
    QTest::newRow("hh:mm:ss") << "10:00:59" << 36059.0;
    QTest::newRow("seconds 60") << "0:60" << -1.0;
    QTest::newRow("minutes 60 after hours") << "1:60:00" << -1.0;
    QTest::newRow("one-digit seconds") << "1:2" << -1.0;
    QTest::newRow("letters") << "a:bc" << -1.0;
    QTest::newRow("four parts") << "1:02:03:04" << -1.0;
    QTest::newRow("no colon") << "42" << -1.0;
  }
  void timestampsParse() {
    QFETCH(QString, text);
    QFETCH(double, seconds);
    const auto parsed = parse_timestamp(text);
    if (seconds < 0) {
      QVERIFY(!parsed);
    } else {
      QVERIFY(parsed);
      QCOMPARE(*parsed, seconds);
      // Formatting and parsing agree.
      QCOMPARE(parse_timestamp(format_timestamp(seconds)).value_or(-1), seconds);
    }
  }

  void videoAnswersLinkTimes() {
    const QString linked = link_citations(
        QStringLiteral("The boat leaves at 0:42 and returns at 1:02:03."), SourceKind::video);
    QCOMPARE(linked, QStringLiteral("The boat leaves at [0:42](seek:42) and returns at "
                                    "[1:02:03](seek:3723)."));
    // Not inside code, not inside an existing link, not a ratio like 3:4 or a clock with 1:2.
    const QString kept = QStringLiteral("`at 0:42` [0:10](seek:10) ratio 3:4 version 1.2:30");
    QCOMPARE(link_citations(kept, SourceKind::video), kept);
    // Books do not link times.
    QCOMPARE(link_citations(QStringLiteral("Psalm 3:45"), SourceKind::book),
             QStringLiteral("Psalm 3:45"));
  }

  void bookAnswersLinkChaptersAndPages() {
    QCOMPARE(
        link_citations(QStringLiteral("See chapter 3, Chapter IV and page 12."), SourceKind::book),
        QStringLiteral("See [chapter 3](chapter:3), [Chapter IV](chapter:4) and "
                       "[page 12](page:12)."));
    QCOMPARE(link_citations(QStringLiteral("p. 7"), SourceKind::book),
             QStringLiteral("[p. 7](page:7)"));
    QCOMPARE(link_citations(QStringLiteral("chapter 3"), SourceKind::video),
             QStringLiteral("chapter 3"));
    QCOMPARE(link_citations(QStringLiteral("chapters"), SourceKind::book),
             QStringLiteral("chapters"));
  }

  void linksBecomeCitations() {
    const auto time = parse_citation_url(QUrl(QStringLiteral("seek:3723")));
    QVERIFY(time && time->kind == Citation::Kind::time && time->seconds == 3723.0);
    const auto chapter = parse_citation_url(QUrl(QStringLiteral("chapter:4")));
    QVERIFY(chapter && chapter->kind == Citation::Kind::chapter && chapter->number == 4);
    const auto page = parse_citation_url(QUrl(QStringLiteral("page:12")));
    QVERIFY(page && page->kind == Citation::Kind::page && page->number == 12);
    QVERIFY(!parse_citation_url(QUrl(QStringLiteral("https://example.org"))));
    QVERIFY(!parse_citation_url(QUrl(QStringLiteral("chapter:zero"))));
    QVERIFY(!parse_citation_url(QUrl(QStringLiteral("seek:-3"))));
  }

  void chapterTitlesNumberThemselves() {
    QCOMPARE(chapter_title_number(QStringLiteral("Chapter 3: Summer")).value_or(-1), 3);
    QCOMPARE(chapter_title_number(QStringLiteral("CHAPTER IV")).value_or(-1), 4);
    QCOMPARE(chapter_title_number(QStringLiteral("Book II")).value_or(-1), 2);
    QVERIFY(!chapter_title_number(QStringLiteral("Prologue")));
    QVERIFY(!chapter_title_number(QStringLiteral("The chapter mix")));
  }

  void numbersForPeople() {
    QCOMPARE(format_bytes(512), QStringLiteral("512 B"));
    QCOMPARE(format_bytes(1536), QStringLiteral("1.50 KiB"));
    QCOMPARE(format_bytes(qint64{36} << 20), QStringLiteral("36.0 MiB"));
    QCOMPARE(format_duration(-1), QStringLiteral("unknown"));
    QCOMPARE(format_duration(0.01), QStringLiteral("under 0.1 s"));
    QCOMPARE(format_duration(0.4), QStringLiteral("0.4 s"));
    QCOMPARE(format_duration(200), QStringLiteral("3 min 20 s"));
    QCOMPARE(format_duration(3900), QStringLiteral("1 h 05 min"));
  }
};

QTEST_GUILESS_MAIN(CitationsTest)
#include "test_citations.moc"
