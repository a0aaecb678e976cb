// The source beside the chat (issue 7, "Look"): for a video a player with a timeline of the
// sampled frames' thumbnails, for a book a reader that scrolls to a cited chapter or page and
// highlights it. Citation links in answers land here.
#pragma once

#include <QImage>
#include <QStackedWidget>

#include "lwm/gui/engine_types.h"

class QListWidget;
class QMediaPlayer;
class QTextBrowser;
class QVideoWidget;
class QLabel;

namespace lwm::gui {

class MediaPane : public QStackedWidget {
  Q_OBJECT

 public:
  explicit MediaPane(QWidget* parent = nullptr);

  void showSource(const SourceInfo& source);
  void clearThumbnails();
  void addThumbnail(int index, double seconds, const QImage& image);

  // Seeks the player (videos); returns false when no video is open.
  bool seek(double seconds);
  // Scrolls the reader to chapter or page `number` and highlights it; false when there is none.
  bool showChapter(int number);
  bool showPage(int number);

  // For tests and the status bar: the time last sought and the reader's highlighted range.
  double lastSeekSeconds() const noexcept { return last_seek_s_; }
  QPair<qint64, qint64> highlightedRange() const noexcept { return highlight_; }
  QTextBrowser* reader() const { return reader_; }
  QMediaPlayer* player() const { return player_; }
  QListWidget* timeline() const { return timeline_; }

 private:
  bool highlight(const BookAnchor& anchor);
  SourceInfo source_;
  QWidget* empty_page_ = nullptr;
  QWidget* video_page_ = nullptr;
  QMediaPlayer* player_ = nullptr;
  QVideoWidget* video_ = nullptr;
  QListWidget* timeline_ = nullptr;
  QLabel* video_time_ = nullptr;
  QTextBrowser* reader_ = nullptr;
  double last_seek_s_ = -1.0;
  QPair<qint64, qint64> highlight_{-1, -1};
};

}  // namespace lwm::gui
