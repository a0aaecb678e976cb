// Where a citation lands: the passage of a chapter or page the citing sentence points to (random
// books whose target sentence is known by construction), the sentence around a link, and the
// timeline frame a seek selects (the one labelled as the player is), down to the reader widget.
#include <QListWidget>
#include <QTest>
#include <QTextBrowser>
#include <cmath>
#include <random>

#include "gui_test_support.h"
#include "lwm/gui/passage.h"
#include "lwm/gui/text_format.h"
#include "media_pane.h"

using namespace lwm::gui;

namespace {

// A made-up word of 4 to 9 lowercase letters: never an English stop word, never a number.
QString random_word(std::mt19937_64& rng) {
  std::uniform_int_distribution<int> length(4, 9);
  std::uniform_int_distribution<int> letter('a', 'z');
  QString word;
  for (int i = length(rng); i > 0; --i) word += QChar(letter(rng));
  return word;
}

struct Built {
  QString text;
  QList<BookAnchor> chapters;
  // Every sentence: its chapter (0-based), range, and words.
  struct Sentence {
    int chapter = 0;
    qsizetype begin = 0;
    qsizetype end = 0;
    QStringList words;
  };
  QList<Sentence> sentences;
};

// "# Chapter N: <word>" then paragraphs of sentences of words drawn from a small vocabulary, so
// words repeat within and across chapters.
Built random_book(std::mt19937_64& rng, const QStringList& vocabulary) {
  Built book;
  std::uniform_int_distribution<int> chapters(2, 5), paragraphs(1, 4), sentences(1, 4),
      words(3, 12);
  std::uniform_int_distribution<qsizetype> pick(0, vocabulary.size() - 1);
  const int chapter_count = chapters(rng);
  for (int c = 0; c < chapter_count; ++c) {
    BookAnchor anchor;
    anchor.number = c + 1;
    anchor.begin = book.text.size();
    anchor.title = QStringLiteral("Chapter %1: %2").arg(c + 1).arg(vocabulary[pick(rng)]);
    book.text += QStringLiteral("# ") + anchor.title + QStringLiteral("\n\n");
    for (int p = paragraphs(rng); p > 0; --p) {
      for (int s = sentences(rng); s > 0; --s) {
        Built::Sentence sentence;
        sentence.chapter = c;
        for (int w = words(rng); w > 0; --w) sentence.words << vocabulary[pick(rng)];
        QString text = sentence.words.join(' ') + '.';
        text[0] = text[0].toUpper();
        sentence.begin = book.text.size();
        book.text += text;
        sentence.end = book.text.size();
        book.text += s > 1 ? QStringLiteral(" ") : QString();
        book.sentences << sentence;
      }
      book.text += QStringLiteral("\n\n");
    }
    anchor.end = book.text.size();
    book.chapters << anchor;
  }
  return book;
}

}  // namespace

class PassageTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() { test::log_seed("PassageTest"); }

  void citingSentenceIsTheSentenceAroundTheLink() {
    const QString answer = QStringLiteral(
        "The lamp was lit. In chapter 3 the keeper found a red lantern! Then he "
        "slept.\nSee p. 12 for the map, said Mr. Lowe. Done.");
    QCOMPARE(citing_sentence(answer, answer.indexOf(QStringLiteral("chapter 3"))),
             QStringLiteral("In chapter 3 the keeper found a red lantern!"));
    // "p." and "Mr." are abbreviations, not the ends of sentences.
    QCOMPARE(citing_sentence(answer, answer.indexOf(QStringLiteral("12"))),
             QStringLiteral("See p. 12 for the map, said Mr. Lowe."));
    QCOMPARE(citing_sentence(answer, 0), QStringLiteral("The lamp was lit."));
    QVERIFY(citing_sentence(answer, -1).isEmpty());
    QVERIFY(citing_sentence(answer, answer.size()).isEmpty());
  }

  // Random books: a citing sentence made of words that occur in one sentence of the cited
  // chapter only (and anywhere in the others) finds exactly that sentence.
  void citedPassageIsTheSentenceTheContextNames() {
    std::mt19937_64 rng(test::test_seed());
    int checked = 0;
    for (int trial = 0; trial < 200 && checked < 60; ++trial) {
      QStringList vocabulary;
      for (int i = 0; i < 40; ++i) vocabulary << random_word(rng);
      const Built book = random_book(rng, vocabulary);
      const auto& target = book.sentences[std::uniform_int_distribution<qsizetype>(
          0, book.sentences.size() - 1)(rng)];
      // Words of the target that no other sentence of its chapter (title included) has.
      const BookAnchor& chapter = book.chapters[target.chapter];
      QStringList unique;
      for (const QString& word : target.words) {
        bool elsewhere = chapter.title.contains(word);
        for (const auto& other : book.sentences) {
          if (&other != &target && other.chapter == target.chapter && other.words.contains(word)) {
            elsewhere = true;
          }
        }
        if (!elsewhere && !unique.contains(word)) unique << word;
      }
      if (unique.isEmpty()) continue;
      ++checked;
      const QString context = QStringLiteral("In chapter %1, %2 happens.")
                                  .arg(target.chapter + 1)
                                  .arg(unique.mid(0, 3).join(QStringLiteral(" and ")));
      const auto range =
          cited_passage(book.text, chapter.begin, chapter.end, context, /*skip_heading=*/true);
      QCOMPARE(range.first, target.begin);
      QCOMPARE(range.second, target.end);
    }
    QVERIFY2(checked >= 20, qPrintable(QString::number(checked)));
  }

  void withNoSharedWordTheFirstParagraphAfterTheTitle() {
    const QString text = QStringLiteral(
        "# Chapter 2: Winter\n\nSnow fell on the tower. The keeper waited.\n\nSpring came "
        "late.\n\n");
    const auto range = cited_passage(text, 0, text.size(), QStringLiteral("What about it?"), true);
    QCOMPARE(text.mid(range.first, range.second - range.first),
             QStringLiteral("Snow fell on the tower. The keeper waited."));
    // A page has no title line: its first line is a candidate, and plain-text line wrapping
    // does not end a sentence.
    const QString page = QStringLiteral("The harbour lights were\nred that night. Boats came.");
    const auto first =
        cited_passage(page, 0, page.size(), QStringLiteral("why were the lights red?"), false);
    QCOMPARE(page.mid(first.first, first.second - first.first),
             QStringLiteral("The harbour lights were\nred that night."));
    // Nothing to point at.
    QCOMPARE(cited_passage(text, 5, 5, QStringLiteral("x"), true),
             (QPair<qsizetype, qsizetype>(5, 5)));
    QCOMPARE(cited_passage(QString(), 0, 10, QStringLiteral("x"), false),
             (QPair<qsizetype, qsizetype>(0, 0)));
  }

  // The e2e screenshot's case: 6 uniform samples of a 6 s, 8 fps video (numpy.linspace over 48
  // frames, truncated) are frames 0, 9, 18, 28, 37, 47. A cited 0:03 selects the 3.5 s frame,
  // labelled 0:03 like the player, not the 2.25 s one before it.
  void timelineSelectsTheFrameLabelledAsThePlayer() {
    QList<double> times;
    for (int i = 0; i < 6; ++i) times << std::floor(i * 47.0 / 5.0) / 8.0;
    QCOMPARE(times[3], 3.5);
    QCOMPARE(timeline_row_for(times, 3.0), 3);
    QCOMPARE(timeline_row_for(times, 2.9), 2);  // 0:02 is the 2.25 s frame
    QCOMPARE(timeline_row_for(times, 3.99), 3);
    QCOMPARE(timeline_row_for(times, 0.0), 0);
    QCOMPARE(timeline_row_for(times, 100.0), 5);  // past the end: the nearest, the last
    QCOMPARE(timeline_row_for({}, 1.0), -1);
    // Random timelines: the row shows the player's label when any frame has it, and is the
    // nearest such frame (else the nearest of all).
    std::mt19937_64 rng(test::test_seed());
    std::uniform_real_distribution<double> when(0.0, 30.0);
    for (int trial = 0; trial < 500; ++trial) {
      QList<double> random;
      for (int i = std::uniform_int_distribution<int>(1, 12)(rng); i > 0; --i) random << when(rng);
      std::sort(random.begin(), random.end());
      const double seconds = when(rng);
      const int row = timeline_row_for(random, seconds);
      QVERIFY(row >= 0 && row < random.size());
      const QString shown = format_timestamp(seconds);
      bool any_same = false;
      for (double t : random) any_same = any_same || format_timestamp(t) == shown;
      QCOMPARE(format_timestamp(random[row]) == shown, any_same);
      for (double t : random) {
        if (!any_same || format_timestamp(t) == shown) {
          QVERIFY(std::abs(random[row] - seconds) <= std::abs(t - seconds));
        }
      }
    }
  }

  // The reader pane: a chapter citation with its sentence selects and marks that passage.
  void readerHighlightsThePassage() {
    SourceInfo source;
    source.kind = SourceKind::book;
    source.book_text = QStringLiteral(
        "# Chapter 1: Spring\n\nThe keeper painted the door.\n\n# Chapter 2: Winter\n\nSnow fell. "
        "A ship with green sails anchored at dawn. The bell rang twice.\n\n");
    for (const QString& title :
         {QStringLiteral("Chapter 1: Spring"), QStringLiteral("Chapter 2: Winter")}) {
      BookAnchor anchor;
      anchor.title = title;
      anchor.begin = source.book_text.indexOf(QStringLiteral("# ") + title);
      anchor.number = static_cast<int>(source.chapters.size()) + 1;
      source.chapters << anchor;
    }
    source.chapters[0].end = source.chapters[1].begin;
    source.chapters[1].end = source.book_text.size();
    MediaPane pane;
    pane.resize(400, 300);
    pane.showSource(source);
    QVERIFY(pane.showChapter(2, QStringLiteral("In chapter 2 a ship with green sails arrives.")));
    QCOMPARE(pane.reader()->textCursor().selectedText(),
             QStringLiteral("A ship with green sails anchored at dawn."));
    QCOMPARE(pane.highlightedRange().first, source.book_text.indexOf(QStringLiteral("A ship")));
    QCOMPARE(pane.reader()->extraSelections().size(), 1);
    QVERIFY(!pane.showChapter(3, {}));
    QVERIFY(!pane.showPage(1, {}));  // no pages in a Markdown book
  }
};

QTEST_MAIN(PassageTest)
#include "test_passage.moc"
