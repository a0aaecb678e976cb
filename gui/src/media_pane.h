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

// The timeline row that stands for the time `seconds`: among the sampled frames whose clock label
// (whole seconds, as format_timestamp() and the player show them) is the player's, the one
// nearest to `seconds`; when no frame has that label, the nearest frame. -1 when there are none.
// (A cited 0:03 shows the frame labelled 0:03, not an earlier one labelled 0:02.)
int timeline_row_for(const QList<double>& frame_seconds, double seconds);

class MediaPane : public QStackedWidget {
  Q_OBJECT

 public:
  explicit MediaPane(QWidget* parent = nullptr);

  void showSource(const SourceInfo& source);
  void clearThumbnails();
  void addThumbnail(int index, double seconds, const QImage& image);

  // Seeks the player (videos); returns false when no video is open.
  bool seek(double seconds);
  // Scrolls the reader to chapter or page `number` and highlights the passage `context` (the
  // citing sentence of the answer) points to there (passage.h: the best-matching sentence, else
  // the first paragraph); false when there is no such chapter or page.
  bool showChapter(int number, const QString& context = {});
  bool showPage(int number, const QString& context = {});

  // For tests and the status bar: the time last sought and the reader's highlighted range.
  double lastSeekSeconds() const noexcept { return last_seek_s_; }
  QPair<qint64, qint64> highlightedRange() const noexcept { return highlight_; }
  QTextBrowser* reader() const { return reader_; }
  QMediaPlayer* player() const { return player_; }
  QListWidget* timeline() const { return timeline_; }

 private:
  bool highlight(const BookAnchor& anchor, const QString& context, bool skip_heading);
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
