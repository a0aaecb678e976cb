// The plan panel (issue 7, "Open" and "Ingest"): the choices that shape an ingest (frames or
// frame rate, context, devices, KV-cache precision), the plan the engine computed for them, and
// the ingest job's progress bar with its stage, ETA and Cancel button.
#pragma once

#include <QHash>
#include <QWidget>

#include "lwm/gui/engine_types.h"

class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QGridLayout;

namespace lwm::gui {

class PlanPanel : public QWidget {
  Q_OBJECT

 public:
  explicit PlanPanel(QWidget* parent = nullptr);

  IngestChoices choices() const;
  void setChoices(const IngestChoices& choices);
  // Shows the controls that apply to `kind` (frames and rate for videos only).
  void setSourceKind(SourceKind kind);
  void setPlan(const PlanInfo& plan);
  void setProgress(const QString& stage, qint64 done, qint64 total, double eta_s);
  // running: the bar and Cancel show; otherwise `message` says how the job ended.
  void setRunning(bool running, const QString& message = {});
  // The last plan fits and this build can run it.
  bool planRunnable() const noexcept { return fits_; }

  QPushButton* ingestButton() const { return ingest_; }
  QPushButton* cancelButton() const { return cancel_; }
  QProgressBar* progressBar() const { return progress_; }
  QLabel* planLabel() const { return plan_label_; }
  QSpinBox* framesBox() const { return frames_; }
  QComboBox* kvCacheBox() const { return kv_cache_; }
  // Shown when the plan does not fit and fewer frames (or a lower rate) would: applies that.
  QPushButton* suggestionButton() const { return suggestion_; }

 signals:
  void choicesChanged();
  void ingestRequested();
  void cancelRequested();

 private:
  QGridLayout* grid_ = nullptr;
  QHash<QWidget*, QLabel*> labels_;  // each field's label, hidden with it
  QSpinBox* frames_ = nullptr;
  QDoubleSpinBox* fps_ = nullptr;
  QSpinBox* context_ = nullptr;
  QComboBox* devices_ = nullptr;
  QComboBox* kv_cache_ = nullptr;
  QLabel* plan_label_ = nullptr;
  QLabel* stage_label_ = nullptr;
  QProgressBar* progress_ = nullptr;
  QPushButton* ingest_ = nullptr;
  QPushButton* cancel_ = nullptr;
  QPushButton* suggestion_ = nullptr;
  qint64 suggested_frames_ = -1;
  double suggested_fps_ = -1.0;
  bool fits_ = false;
};

}  // namespace lwm::gui
