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
#include <cmath>

#include "lwm/gui/citations.h"
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
  // The thumbnail at or before that time is selected, so the timeline shows where we are.
  int best = -1;
  for (int i = 0; i < timeline_->count(); ++i) {
    if (timeline_->item(i)->data(Qt::UserRole).toDouble() <= seconds + 1e-6) best = i;
  }
  if (best >= 0) {
    timeline_->setCurrentRow(best);
    timeline_->scrollToItem(timeline_->item(best));
  }
  return true;
}

bool MediaPane::highlight(const BookAnchor& anchor) {
  QTextCursor cursor(reader_->document());
  cursor.setPosition(static_cast<int>(anchor.begin));
  cursor.setPosition(
      static_cast<int>(std::min<qint64>(anchor.end, reader_->document()->characterCount() - 1)),
      QTextCursor::KeepAnchor);
  reader_->setTextCursor(cursor);
  // Scroll so the passage starts at the top of the pane.
  QTextCursor start(reader_->document());
  start.setPosition(static_cast<int>(anchor.begin));
  const QRect rect = reader_->cursorRect(start);
  reader_->verticalScrollBar()->setValue(reader_->verticalScrollBar()->value() + rect.top());
  highlight_ = {anchor.begin, anchor.end};
  return true;
}

bool MediaPane::showChapter(int number) {
  if (source_.kind != SourceKind::book || number < 1) return false;
  // The chapter that calls itself so first; else the number-th heading.
  for (const BookAnchor& chapter : source_.chapters) {
    if (chapter_title_number(chapter.title) == number) return highlight(chapter);
  }
  if (number > source_.chapters.size()) return false;
  return highlight(source_.chapters[number - 1]);
}

bool MediaPane::showPage(int number) {
  if (source_.kind != SourceKind::book) return false;
  for (const BookAnchor& page : source_.pages) {
    if (page.number == number) return highlight(page);
  }
  return false;
}

}  // namespace lwm::gui
