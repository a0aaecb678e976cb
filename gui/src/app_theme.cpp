#include "lwm/gui/app_theme.h"

#include <QApplication>
#include <QFont>
#include <QStyle>
#include <QStyleFactory>
#include <cmath>

namespace lwm::gui {
namespace {

// The colours a theme is made of; the palette roles are filled from these.
struct ThemeColors {
  QColor window, window_text, base, alternate_base, text, button, button_text, highlight,
      highlighted_text, link, link_visited, disabled_text, tooltip_base, tooltip_text, placeholder;
};

const ThemeColors kLight{
    QColor(0xf5, 0xf5, 0xf5), QColor(0x1f, 0x1f, 0x1f), QColor(0xff, 0xff, 0xff),
    QColor(0xee, 0xf1, 0xf4), QColor(0x1f, 0x1f, 0x1f), QColor(0xe8, 0xe8, 0xe8),
    QColor(0x1f, 0x1f, 0x1f), QColor(0x1f, 0x5f, 0xb4), QColor(0xff, 0xff, 0xff),
    QColor(0x0b, 0x57, 0xc2), QColor(0x6a, 0x2c, 0xa8), QColor(0x8a, 0x8a, 0x8a),
    QColor(0xff, 0xff, 0xe1), QColor(0x1f, 0x1f, 0x1f), QColor(0x6b, 0x6b, 0x6b)};

const ThemeColors kDark{
    QColor(0x24, 0x25, 0x28), QColor(0xe6, 0xe6, 0xe6), QColor(0x1a, 0x1b, 0x1e),
    QColor(0x2b, 0x2d, 0x31), QColor(0xe6, 0xe6, 0xe6), QColor(0x33, 0x35, 0x3a),
    QColor(0xe6, 0xe6, 0xe6), QColor(0x2d, 0x6f, 0xd0), QColor(0xff, 0xff, 0xff),
    QColor(0x7c, 0xb4, 0xff), QColor(0xc3, 0x9b, 0xff), QColor(0x80, 0x80, 0x80),
    QColor(0x33, 0x35, 0x3a), QColor(0xe6, 0xe6, 0xe6), QColor(0x9a, 0x9a, 0x9a)};

QPalette make_palette(const ThemeColors& c) {
  QPalette palette;
  palette.setColor(QPalette::Window, c.window);
  palette.setColor(QPalette::WindowText, c.window_text);
  palette.setColor(QPalette::Base, c.base);
  palette.setColor(QPalette::AlternateBase, c.alternate_base);
  palette.setColor(QPalette::Text, c.text);
  palette.setColor(QPalette::Button, c.button);
  palette.setColor(QPalette::ButtonText, c.button_text);
  palette.setColor(QPalette::BrightText, Qt::red);
  palette.setColor(QPalette::Highlight, c.highlight);
  palette.setColor(QPalette::HighlightedText, c.highlighted_text);
  palette.setColor(QPalette::Link, c.link);
  palette.setColor(QPalette::LinkVisited, c.link_visited);
  palette.setColor(QPalette::ToolTipBase, c.tooltip_base);
  palette.setColor(QPalette::ToolTipText, c.tooltip_text);
  palette.setColor(QPalette::PlaceholderText, c.placeholder);
  for (QPalette::ColorRole role : {QPalette::WindowText, QPalette::Text, QPalette::ButtonText}) {
    palette.setColor(QPalette::Disabled, role, c.disabled_text);
  }
  palette.setColor(QPalette::Disabled, QPalette::Highlight, c.button);
  return palette;
}

// WCAG 2 relative luminance of an sRGB colour.
double luminance(const QColor& color) {
  auto channel = [](double value) {
    return value <= 0.04045 ? value / 12.92 : std::pow((value + 0.055) / 1.055, 2.4);
  };
  const QColor rgb = color.toRgb();
  return 0.2126 * channel(rgb.redF()) + 0.7152 * channel(rgb.greenF()) +
         0.0722 * channel(rgb.blueF());
}

}  // namespace

QPalette theme_palette(Theme theme, const QPalette& system_palette) {
  switch (theme) {
    case Theme::light:
      return make_palette(kLight);
    case Theme::dark:
      return make_palette(kDark);
    case Theme::system:
      break;
  }
  return system_palette;
}

bool is_dark(const QPalette& palette) {
  return luminance(palette.color(QPalette::Window)) <
         luminance(palette.color(QPalette::WindowText));
}

double contrast_ratio(const QColor& a, const QColor& b) {
  const double la = luminance(a);
  const double lb = luminance(b);
  return (std::max(la, lb) + 0.05) / (std::min(la, lb) + 0.05);
}

SystemAppearance SystemAppearance::capture(const QApplication& app) {
  return {QApplication::palette(), QApplication::font(),
          app.style() ? app.style()->name() : QString()};
}

void apply_appearance(QApplication& app, Theme theme, int font_size,
                      const SystemAppearance& system) {
  const QString style = theme == Theme::system ? system.style : QStringLiteral("Fusion");
  if (!style.isEmpty() && app.style() && app.style()->name().compare(style, Qt::CaseInsensitive)) {
    if (QStyle* created = QStyleFactory::create(style)) app.setStyle(created);
  }
  app.setPalette(theme_palette(theme, system.palette));
  QFont font = system.font;
  if (font_size > 0) font.setPointSize(font_size);
  QApplication::setFont(font);
}

}  // namespace lwm::gui
