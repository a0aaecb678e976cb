// Themes: every text colour of the light and dark palettes is readable (WCAG AA 4.5:1) on the
// background it is drawn on; "system" leaves the desktop's palette, style and font alone.
#include <QApplication>
#include <QStandardPaths>
#include <QStyle>
#include <QTest>

#include "gui_test_support.h"
#include "lwm/gui/app_theme.h"

using namespace lwm::gui;

class AppThemeTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    system_ = SystemAppearance::capture(*qApp);
  }

  void contrast_ratio_matches_the_wcag_definition() {
    QCOMPARE(contrast_ratio(Qt::black, Qt::white), 21.0);
    QCOMPARE(contrast_ratio(Qt::white, Qt::black), 21.0);
    QCOMPARE(contrast_ratio(QColor(0x77, 0x77, 0x77), QColor(0x77, 0x77, 0x77)), 1.0);
    // #767676 on white is the classic AA threshold: 4.54:1.
    QVERIFY(qAbs(contrast_ratio(QColor(0x76, 0x76, 0x76), Qt::white) - 4.54) < 0.01);
  }

  void themed_text_is_readable_on_its_background() {
    const std::pair<QPalette::ColorRole, QPalette::ColorRole> pairs[] = {
        {QPalette::WindowText, QPalette::Window},
        {QPalette::Text, QPalette::Base},
        {QPalette::Text, QPalette::AlternateBase},
        {QPalette::ButtonText, QPalette::Button},
        {QPalette::HighlightedText, QPalette::Highlight},
        {QPalette::Link, QPalette::Base},
        {QPalette::LinkVisited, QPalette::Base},
        {QPalette::ToolTipText, QPalette::ToolTipBase},
        {QPalette::PlaceholderText, QPalette::Base}};
    for (Theme theme : {Theme::light, Theme::dark}) {
      const QPalette palette = theme_palette(theme, system_.palette);
      QCOMPARE(is_dark(palette), theme == Theme::dark);
      for (const auto& [text, background] : pairs) {
        const double ratio = contrast_ratio(palette.color(QPalette::Active, text),
                                            palette.color(QPalette::Active, background));
        QVERIFY2(ratio >= 4.5, qPrintable(QString("%1 theme, roles %2 on %3: %4:1")
                                              .arg(to_string(theme))
                                              .arg(int(text))
                                              .arg(int(background))
                                              .arg(ratio)));
      }
      // Disabled text stays visible, and distinct from enabled text.
      const QColor disabled = palette.color(QPalette::Disabled, QPalette::Text);
      QVERIFY(contrast_ratio(disabled, palette.color(QPalette::Base)) >= 2.0);
      QVERIFY(disabled != palette.color(QPalette::Active, QPalette::Text));
    }
    QCOMPARE(theme_palette(Theme::system, system_.palette), system_.palette);
  }

  void appearance_is_applied_and_system_restores_the_start() {
    apply_appearance(*qApp, Theme::dark, 17, system_);
    QVERIFY(is_dark(QApplication::palette()));
    QCOMPARE(QApplication::font().pointSize(), 17);
    QCOMPARE(qApp->style()->name().toLower(), QString("fusion"));
    apply_appearance(*qApp, Theme::light, 0, system_);
    QVERIFY(!is_dark(QApplication::palette()));
    QCOMPARE(QApplication::font().pointSize(), system_.font.pointSize());
    apply_appearance(*qApp, Theme::system, 0, system_);
    QCOMPARE(QApplication::palette().color(QPalette::Window),
             system_.palette.color(QPalette::Window));
    QCOMPARE(qApp->style()->name().toLower(), system_.style.toLower());
    QCOMPARE(QApplication::font(), system_.font);
  }

 private:
  SystemAppearance system_;
};

QTEST_MAIN(AppThemeTest)
#include "test_app_theme.moc"
