// The light and dark themes as palettes, and applying a theme and font size to the application.
// Every text colour meets WCAG AA contrast (4.5:1) against the background it is drawn on, which
// the tests check, so a theme choice never costs readability.
#pragma once

#include <QColor>
#include <QFont>
#include <QPalette>
#include <QString>

#include "lwm/gui/app_settings.h"

class QApplication;

namespace lwm::gui {

// The palette for `theme`; Theme::system returns `system_palette` unchanged.
QPalette theme_palette(Theme theme, const QPalette& system_palette);

// True when the palette draws light text on a dark window (what "system" resolved to).
bool is_dark(const QPalette& palette);

// WCAG 2 contrast ratio of two colours, 1 (same) … 21 (black on white).
double contrast_ratio(const QColor& a, const QColor& b);

// What the desktop gave the application at start-up, to return to for Theme::system and font
// size 0. Capture it once, before the first apply_appearance.
struct SystemAppearance {
  QPalette palette;
  QFont font;
  QString style;  // the platform style's name ("Fusion", "Windows", …)
  static SystemAppearance capture(const QApplication& app);
};

// Applies the theme (Fusion style for light and dark, so the palette is honoured by every
// widget; the platform style and palette for system) and the font size in points (0: the
// desktop's size).
void apply_appearance(QApplication& app, Theme theme, int font_size,
                      const SystemAppearance& system);

}  // namespace lwm::gui
