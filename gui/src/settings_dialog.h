// Settings (issue 7, "Keep"): sampling, devices, KV-cache precision, theme and font size, read
// from and written to AppSettings.
#pragma once

#include <QDialog>

class QComboBox;
class QDoubleSpinBox;
class QSpinBox;

namespace lwm::gui {

class AppSettings;

class SettingsDialog : public QDialog {
  Q_OBJECT

 public:
  SettingsDialog(AppSettings& settings, QWidget* parent = nullptr);
  // Writes the dialog's values to the settings.
  void save();

 private:
  AppSettings& settings_;
  QDoubleSpinBox* temperature_;
  QSpinBox* top_k_;
  QDoubleSpinBox* top_p_;
  QSpinBox* max_tokens_;
  QSpinBox* seed_;
  QComboBox* devices_;
  QComboBox* kv_cache_;
  QComboBox* theme_;
  QSpinBox* font_size_;
};

}  // namespace lwm::gui
