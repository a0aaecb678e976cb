#include "settings_dialog.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QSpinBox>

#include "lwm/gui/app_settings.h"
#include "lwm/gui/engine_types.h"

namespace lwm::gui {

SettingsDialog::SettingsDialog(AppSettings& settings, QWidget* parent)
    : QDialog(parent), settings_(settings) {
  setWindowTitle(tr("Settings"));
  auto* form = new QFormLayout(this);
  const SamplingSettings sampling = settings_.sampling();
  temperature_ = new QDoubleSpinBox;
  temperature_->setRange(0.0, 2.0);
  temperature_->setSingleStep(0.1);
  temperature_->setValue(sampling.temperature);
  temperature_->setToolTip(tr("0 is greedy: the same question gets the same answer"));
  top_k_ = new QSpinBox;
  top_k_->setRange(0, 1000);
  top_k_->setSpecialValueText(tr("no limit"));
  top_k_->setValue(sampling.top_k);
  top_p_ = new QDoubleSpinBox;
  top_p_->setRange(0.01, 1.0);
  top_p_->setSingleStep(0.05);
  top_p_->setValue(sampling.top_p);
  max_tokens_ = new QSpinBox;
  max_tokens_->setRange(1, 1000000);
  max_tokens_->setValue(sampling.max_tokens);
  seed_ = new QSpinBox;
  seed_->setRange(0, 1 << 30);
  seed_->setValue(static_cast<int>(sampling.seed));
  devices_ = new QComboBox;
  for (const DeviceChoice& device : device_choices()) devices_->addItem(device.label, device.id);
  devices_->setCurrentIndex(std::max(0, devices_->findData(settings_.devices())));
  kv_cache_ = new QComboBox;
  for (const char* precision : {"auto", "f32", "bf16", "int8"})
    kv_cache_->addItem(QString::fromLatin1(precision), QString::fromLatin1(precision));
  kv_cache_->setCurrentIndex(std::max(0, kv_cache_->findData(settings_.kv_cache())));
  theme_ = new QComboBox;
  theme_->addItem(tr("Follow the system"), static_cast<int>(Theme::system));
  theme_->addItem(tr("Light"), static_cast<int>(Theme::light));
  theme_->addItem(tr("Dark"), static_cast<int>(Theme::dark));
  theme_->setCurrentIndex(std::max(0, theme_->findData(static_cast<int>(settings_.theme()))));
  font_size_ = new QSpinBox;
  font_size_->setRange(0, 48);
  font_size_->setSpecialValueText(tr("the desktop's"));
  font_size_->setSuffix(tr(" pt"));
  font_size_->setValue(settings_.font_size());
  form->addRow(tr("&Temperature:"), temperature_);
  form->addRow(tr("Top-&k:"), top_k_);
  form->addRow(tr("Top-&p:"), top_p_);
  form->addRow(tr("&Most tokens per answer:"), max_tokens_);
  form->addRow(tr("&Seed:"), seed_);
  form->addRow(tr("&Devices:"), devices_);
  form->addRow(tr("&KV cache:"), kv_cache_);
  form->addRow(tr("T&heme:"), theme_);
  form->addRow(tr("&Font size:"), font_size_);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel);
  form->addRow(buttons);
  connect(buttons, &QDialogButtonBox::accepted, this, [this] {
    save();
    accept();
  });
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
}

void SettingsDialog::save() {
  SamplingSettings sampling;
  sampling.temperature = temperature_->value();
  sampling.top_k = top_k_->value();
  sampling.top_p = top_p_->value();
  sampling.max_tokens = max_tokens_->value();
  sampling.seed = static_cast<quint64>(seed_->value());
  settings_.set_sampling(sampling);
  settings_.set_devices(devices_->currentData().toString());
  settings_.set_kv_cache(kv_cache_->currentData().toString());
  settings_.set_theme(static_cast<Theme>(theme_->currentData().toInt()));
  settings_.set_font_size(font_size_->value());
  settings_.sync();
}

}  // namespace lwm::gui
