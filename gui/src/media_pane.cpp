#include "media_pane.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QListWidget>
#include <QMediaPlayer>
#include <QPushButton>
#include <QScrollBar>
#include <QTextBlock>
#include <QTextBrowser>
#include <QTextCursor>
#include <QUrl>
#include <QVBoxLayout>
#include <QVideoWidget>
#include <algorithm>
#include <cmath>

#include "lwm/gui/citations.h"
#include "lwm/gui/passage.h"
#include "lwm/gui/text_format.h"

namespace lwm::gui {

MediaPane::MediaPane(QWidget* parent) : QStackedWidget(parent) {
  auto* empty =
      new QLabel(tr("Open a video or a book: File > Open, drop a file here, or pick one "
                    "from File > Open Recent."));
  empty->setAlignment(Qt::AlignCenter);
  empty->setWordWrap(true);
  empty_page_ = empty;
  addWidget(empty_page_);

  video_page_ = new QWidget;
  auto* video_layout = new QVBoxLayout(video_page_);
  video_layout->setContentsMargins(0, 0, 0, 0);
  video_ = new QVideoWidget;
  video_->setAccessibleName(tr("Video"));
  video_->setMinimumHeight(160);
  // Black until the first frame is shown, as players are.
  video_->setAutoFillBackground(true);
  QPalette black = video_->palette();
  black.setColor(QPalette::Window, Qt::black);
  video_->setPalette(black);
  player_ = new QMediaPlayer(this);
  player_->setVideoOutput(video_);
  auto* controls = new QHBoxLayout;
  auto* play = new QPushButton(tr("Play/Pause"));
  play->setAccessibleName(tr("Play or pause the video"));
  play->setToolTip(tr("Play or pause (Space in the player)"));
  video_time_ = new QLabel(QStringLiteral("0:00"));
  video_time_->setAccessibleName(tr("Video position"));
  controls->addWidget(play);
  controls->addWidget(video_time_, 1);
  timeline_ = new QListWidget;
  timeline_->setAccessibleName(tr("Timeline of sampled frames"));
  timeline_->setViewMode(QListView::IconMode);
  timeline_->setFlow(QListView::LeftToRight);
  timeline_->setWrapping(false);
  timeline_->setIconSize(QSize(72, 72));
  timeline_->setFixedHeight(110);
  timeline_->setMovement(QListView::Static);
  video_layout->addWidget(video_, 1);
  video_layout->addLayout(controls);
  video_layout->addWidget(timeline_);
  addWidget(video_page_);

  reader_ = new QTextBrowser;
  reader_->setAccessibleName(tr("Book reader"));
  reader_->setOpenLinks(false);
  addWidget(reader_);

  connect(play, &QPushButton::clicked, this, [this] {
    if (player_->playbackState() == QMediaPlayer::PlayingState)
      player_->pause();
    else
      player_->play();
  });
  connect(player_, &QMediaPlayer::positionChanged, this, [this](qint64 ms) {
    video_time_->setText(format_timestamp(static_cast<double>(ms) / 1000.0));
  });
  connect(timeline_, &QListWidget::itemActivated, this,
          [this](QListWidgetItem* item) { seek(item->data(Qt::UserRole).toDouble()); });
  connect(timeline_, &QListWidget::itemClicked, this,
          [this](QListWidgetItem* item) { seek(item->data(Qt::UserRole).toDouble()); });
}

void MediaPane::showSource(const SourceInfo& source) {
  source_ = source;
  last_seek_s_ = -1.0;
  highlight_ = {-1, -1};
  clearThumbnails();
  if (source.kind == SourceKind::video) {
    player_->setSource(QUrl::fromLocalFile(source.path));
    setCurrentWidget(video_page_);
  } else if (source.kind == SourceKind::book) {
    player_->setSource(QUrl());
    reader_->setExtraSelections({});
    reader_->setPlainText(source.book_text);
    setCurrentWidget(reader_);
  } else {
    setCurrentWidget(empty_page_);
  }
}

void MediaPane::clearThumbnails() {
  timeline_->clear();
}

void MediaPane::addThumbnail(int index, double seconds, const QImage& image) {
  auto* item = new QListWidgetItem(QIcon(QPixmap::fromImage(image)), format_timestamp(seconds));
  item->setData(Qt::UserRole, seconds);
  item->setData(Qt::UserRole + 1, index);
  item->setToolTip(
      tr("Frame %1 at %2: click to seek").arg(index + 1).arg(format_timestamp(seconds)));
  timeline_->addItem(item);
}

bool MediaPane::seek(double seconds) {
  if (source_.kind != SourceKind::video) return false;
  last_seek_s_ = seconds;
  player_->setPosition(static_cast<qint64>(std::llround(seconds * 1000.0)));
  video_time_->setText(format_timestamp(seconds));
  QList<double> times;
  for (int i = 0; i < timeline_->count(); ++i) {
    times << timeline_->item(i)->data(Qt::UserRole).toDouble();
  }
  if (const int row = timeline_row_for(times, seconds); row >= 0) {
    timeline_->setCurrentRow(row);
    timeline_->scrollToItem(timeline_->item(row));
  }
  return true;
}

bool MediaPane::highlight(const BookAnchor& anchor, const QString& context, bool skip_heading) {
  const auto [begin, end] =
      cited_passage(source_.book_text, anchor.begin, anchor.end, context, skip_heading);
  const int last = reader_->document()->characterCount() - 1;
  QTextCursor cursor(reader_->document());
  cursor.setPosition(static_cast<int>(std::min<qint64>(begin, last)));
  cursor.setPosition(static_cast<int>(std::min<qint64>(end, last)), QTextCursor::KeepAnchor);
  reader_->setTextCursor(cursor);
  // A marker that stays when the reader loses focus (a selection turns grey then).
  QTextEdit::ExtraSelection marker;
  marker.cursor = cursor;
  marker.format.setBackground(QColor(255, 214, 10, 120));
  reader_->setExtraSelections({marker});
  // Scroll so the passage starts a few lines below the top of the pane, its chapter in view.
  QTextCursor start(reader_->document());
  start.setPosition(static_cast<int>(std::min<qint64>(begin, last)));
  const QRect rect = reader_->cursorRect(start);
  QScrollBar* bar = reader_->verticalScrollBar();
  bar->setValue(bar->value() + rect.top() - 3 * rect.height());
  highlight_ = {begin, end};
  return true;
}

bool MediaPane::showChapter(int number, const QString& context) {
  if (source_.kind != SourceKind::book || number < 1) return false;
  // The chapter that calls itself so first; else the number-th heading.
  for (const BookAnchor& chapter : source_.chapters) {
    if (chapter_title_number(chapter.title) == number) return highlight(chapter, context, true);
  }
  if (number > source_.chapters.size()) return false;
  return highlight(source_.chapters[number - 1], context, true);
}

bool MediaPane::showPage(int number, const QString& context) {
  if (source_.kind != SourceKind::book) return false;
  for (const BookAnchor& page : source_.pages) {
    if (page.number == number) return highlight(page, context, false);
  }
  return false;
}

int timeline_row_for(const QList<double>& frame_seconds, double seconds) {
  // The labels as the timeline and the player show them, so "same second" means what one sees.
  const QString shown = format_timestamp(seconds);
  int best = -1;
  bool best_same_label = false;
  for (int i = 0; i < frame_seconds.size(); ++i) {
    const bool same_label = format_timestamp(frame_seconds[i]) == shown;
    const double distance = std::abs(frame_seconds[i] - seconds);
    if (best < 0 || (same_label && !best_same_label) ||
        (same_label == best_same_label && distance < std::abs(frame_seconds[best] - seconds))) {
      best = i;
      best_same_label = same_label;
    }
  }
  return best;
}

}  // namespace lwm::gui
