#include "plan_panel.h"

#include <QComboBox>
#include <QDoubleSpinBox>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QVBoxLayout>

#include "engine_text.h"
#include "lwm/gui/text_format.h"

namespace lwm::gui {

PlanPanel::PlanPanel(QWidget* parent) : QWidget(parent) {
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  frames_ = new QSpinBox;
  frames_->setRange(1, 1 << 20);
  frames_->setValue(8);
  frames_->setAccessibleName(tr("Frames to sample"));
  frames_->setToolTip(tr("Frames sampled uniformly over the video"));
  fps_ = new QDoubleSpinBox;
  fps_->setRange(0.0, 60.0);
  fps_->setDecimals(2);
  fps_->setSingleStep(0.5);
  fps_->setSpecialValueText(tr("off (use frames)"));
  fps_->setAccessibleName(tr("Frames per second"));
  fps_->setToolTip(tr("Sample this many frames per second instead of a fixed number"));
  context_ = new QSpinBox;
  context_->setRange(0, 1 << 30);
  context_->setSingleStep(1024);
  context_->setSpecialValueText(tr("auto (source + answer)"));
  context_->setAccessibleName(tr("Context in tokens"));
  context_->setToolTip(tr("KV-cache capacity in tokens; auto sizes it to the source"));
  devices_ = new QComboBox;
  QString gpu_status;
  for (const DeviceChoice& device : device_choices(&gpu_status))
    devices_->addItem(device.label, device.id);
  devices_->setAccessibleName(tr("Devices"));
  devices_->setToolTip(tr("Where the model runs: the CPU and each GPU with its free memory (%1). "
                          "The engine never falls back to the CPU on its own.")
                           .arg(gpu_status));
  kv_cache_ = new QComboBox;
  kv_cache_->addItem(tr("auto"), QStringLiteral("auto"));
  kv_cache_->addItem(tr("f32"), QStringLiteral("f32"));
  kv_cache_->addItem(tr("bf16 (GPU)"), QStringLiteral("bf16"));
  kv_cache_->addItem(tr("int8 (GPU)"), QStringLiteral("int8"));
  kv_cache_->setAccessibleName(tr("KV-cache precision"));
  // Two compact rows: what to sample, then where it runs.
  const auto add = [this](const QString& text, QWidget* field, int row, int column) {
    auto* label = new QLabel(text);
    label->setBuddy(field);
    grid_->addWidget(label, row, 2 * column);
    grid_->addWidget(field, row, 2 * column + 1);
    labels_.insert(field, label);
  };
  grid_ = new QGridLayout;
  add(tr("&Frames:"), frames_, 0, 0);
  add(tr("Frame &rate:"), fps_, 0, 1);
  add(tr("Con&text:"), context_, 1, 0);
  add(tr("&Devices:"), devices_, 1, 1);
  add(tr("&KV cache:"), kv_cache_, 1, 2);
  for (int column : {1, 3, 5}) grid_->setColumnStretch(column, 1);
  layout->addLayout(grid_);

  plan_label_ = new QLabel(tr("Open a video or a book to see the plan."));
  plan_label_->setWordWrap(true);
  plan_label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  plan_label_->setAccessibleName(tr("Plan"));
  layout->addWidget(plan_label_);

  suggestion_ = new QPushButton;
  suggestion_->setAccessibleName(tr("Use what would fit"));
  suggestion_->setToolTip(tr("Apply the plan's suggestion"));
  suggestion_->setVisible(false);
  auto* job = new QHBoxLayout;
  job->addWidget(suggestion_);
  ingest_ = new QPushButton(tr("&Ingest"));
  ingest_->setAccessibleName(tr("Ingest the source"));
  ingest_->setToolTip(tr("Decode, tokenize and prefill the source (Ctrl+I)"));
  ingest_->setEnabled(false);
  progress_ = new QProgressBar;
  progress_->setAccessibleName(tr("Ingest progress"));
  progress_->setVisible(false);
  cancel_ = new QPushButton(tr("Cancel"));
  cancel_->setAccessibleName(tr("Cancel the ingest"));
  cancel_->setToolTip(tr("Stop after the current chunk; what was computed is kept (Esc)"));
  cancel_->setVisible(false);
  job->addWidget(ingest_);
  job->addWidget(progress_, 1);
  job->addWidget(cancel_);
  layout->addLayout(job);
  stage_label_ = new QLabel;
  stage_label_->setAccessibleName(tr("Ingest stage"));
  layout->addWidget(stage_label_);

  const auto changed = [this] { emit choicesChanged(); };
  connect(frames_, &QSpinBox::valueChanged, this, changed);
  connect(fps_, &QDoubleSpinBox::valueChanged, this, [this](double fps) {
    frames_->setEnabled(fps <= 0);
    emit choicesChanged();
  });
  connect(context_, &QSpinBox::valueChanged, this, changed);
  connect(devices_, &QComboBox::currentIndexChanged, this, changed);
  connect(kv_cache_, &QComboBox::currentIndexChanged, this, changed);
  connect(ingest_, &QPushButton::clicked, this, &PlanPanel::ingestRequested);
  connect(cancel_, &QPushButton::clicked, this, &PlanPanel::cancelRequested);
  connect(suggestion_, &QPushButton::clicked, this, [this] {
    if (suggested_fps_ > 0) {
      fps_->setValue(suggested_fps_);
    } else if (suggested_frames_ > 0) {
      fps_->setValue(0.0);
      frames_->setValue(static_cast<int>(suggested_frames_));
    }
  });
  setTabOrder(frames_, fps_);
  setTabOrder(fps_, context_);
  setTabOrder(context_, devices_);
  setTabOrder(devices_, kv_cache_);
  setTabOrder(kv_cache_, ingest_);
  setTabOrder(ingest_, cancel_);
  setSourceKind(SourceKind::none);
}

IngestChoices PlanPanel::choices() const {
  IngestChoices choices;
  choices.fps = fps_->value();
  choices.frames = choices.fps > 0 ? 0 : frames_->value();
  choices.context = context_->value();
  choices.devices = devices_->currentData().toString();
  choices.kv_cache = kv_cache_->currentData().toString();
  return choices;
}

void PlanPanel::setChoices(const IngestChoices& choices) {
  const QSignalBlocker b1(frames_), b2(fps_), b3(context_), b4(devices_), b5(kv_cache_);
  if (choices.frames > 0) frames_->setValue(static_cast<int>(choices.frames));
  fps_->setValue(choices.fps);
  frames_->setEnabled(choices.fps <= 0);
  context_->setValue(static_cast<int>(choices.context));
  const int device = devices_->findData(choices.devices);
  if (device >= 0) devices_->setCurrentIndex(device);
  const int kv = kv_cache_->findData(choices.kv_cache);
  if (kv >= 0) kv_cache_->setCurrentIndex(kv);
  emit choicesChanged();
}

void PlanPanel::setSourceKind(SourceKind kind) {
  const bool video = kind == SourceKind::video;
  for (QWidget* field : {static_cast<QWidget*>(frames_), static_cast<QWidget*>(fps_)}) {
    field->setVisible(video);
    labels_.value(field)->setVisible(video);
  }
  ingest_->setEnabled(kind != SourceKind::none);
  suggestion_->setVisible(false);
  if (kind == SourceKind::none) plan_label_->setText(tr("Open a video or a book to see the plan."));
}

void PlanPanel::setPlan(const PlanInfo& plan) {
  fits_ = plan.runnable;
  QString text = plan.verdict;
  if (plan.frames > 0) text = tr("%1 frames. ").arg(plan.frames) + text;
  for (const DevicePlanInfo& device : plan.devices) {
    text += QLatin1Char('\n') + device_plan_line(device, plan.kv_cache);
  }
  plan_label_->setText(text);
  plan_label_->setStyleSheet(plan.runnable ? QString() : QStringLiteral("color: #c0392b;"));
  // The planner's frame suggestion as a button (at a rate: the rate; else: the count).
  suggested_fps_ = plan.fits ? -1.0 : plan.max_fps;
  suggested_frames_ = plan.fits ? -1 : plan.max_frames;
  if (suggested_fps_ > 0) {
    suggestion_->setText(tr("Use %1 frames per second").arg(suggested_fps_));
  } else if (suggested_frames_ > 0) {
    suggestion_->setText(tr("Use %1 frames").arg(suggested_frames_));
  }
  suggestion_->setVisible(suggested_fps_ > 0 || suggested_frames_ > 0);
}

void PlanPanel::setProgress(const QString& stage, qint64 done, qint64 total, double eta_s) {
  progress_->setRange(0, 1000);
  progress_->setValue(total > 0 ? static_cast<int>(1000 * done / total) : 0);
  QString text = tr("%1: %2 of %3").arg(stage).arg(done).arg(total);
  if (eta_s >= 0) text += tr(", %1 left").arg(format_duration(eta_s));
  stage_label_->setText(text);
  progress_->setFormat(stage + QStringLiteral(" %p%"));
}

void PlanPanel::setRunning(bool running, const QString& message) {
  progress_->setVisible(running);
  cancel_->setVisible(running);
  ingest_->setEnabled(!running);
  if (!running) stage_label_->setText(message);
}

}  // namespace lwm::gui
