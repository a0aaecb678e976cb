// AppSettings: documented defaults, round trips, values out of range or of the wrong type, and
// the recent-files list (newest first, at most 10, deduplicated, missing files pruned).
#include <QDir>
#include <QFile>
#include <QSettings>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>

#include "gui_test_support.h"
#include "lwm/gui/app_settings.h"

using namespace lwm::gui;

namespace {

// Creates an empty file and returns its path.
QString touch(const QString& path) {
  return test::write_file(path) ? path : QString();
}

}  // namespace

class AppSettingsTest : public QObject {
  Q_OBJECT

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    test::log_seed("gui_settings_tests");
  }

  void defaults_are_the_documented_ones() {
    QTemporaryDir dir;
    AppSettings settings(dir.filePath("settings.ini"));
    const SamplingSettings sampling = settings.sampling();
    QCOMPARE(sampling.temperature, 0.0);
    QCOMPARE(sampling.top_k, 0);
    QCOMPARE(sampling.top_p, 1.0);
    QCOMPARE(sampling.max_tokens, 512);
    QCOMPARE(sampling.seed, quint64(0));
    QCOMPARE(settings.devices(), QString("cpu"));
    QCOMPARE(settings.kv_cache(), QString("auto"));
    QCOMPARE(settings.theme(), Theme::system);
    QCOMPARE(settings.font_size(), 0);
    QVERIFY(settings.recent_files().isEmpty());
    QVERIFY(settings.last_model_directory().isEmpty());
  }

  void values_round_trip_through_the_file() {
    std::mt19937_64 rng(test::test_seed());
    QTemporaryDir dir;
    SamplingSettings sampling;
    sampling.temperature = std::uniform_real_distribution<double>(0, 2)(rng);
    sampling.top_k = std::uniform_int_distribution<int>(0, 1000)(rng);
    sampling.top_p = std::uniform_real_distribution<double>(0.01, 1)(rng);
    sampling.max_tokens = std::uniform_int_distribution<int>(1, 100000)(rng);
    sampling.seed = rng();
    {
      AppSettings settings(dir.filePath("settings.ini"));
      settings.set_sampling(sampling);
      settings.set_devices(" cuda:0,1 ");
      settings.set_kv_cache("int8");
      settings.set_theme(Theme::dark);
      settings.set_font_size(13);
      settings.set_last_model_directory(dir.path() + "/models/../models/lwm");
    }
    AppSettings settings(dir.filePath("settings.ini"));  // a new instance reads the file
    QCOMPARE(settings.sampling().temperature, sampling.temperature);
    QCOMPARE(settings.sampling().top_k, sampling.top_k);
    QCOMPARE(settings.sampling().top_p, sampling.top_p);
    QCOMPARE(settings.sampling().max_tokens, sampling.max_tokens);
    QCOMPARE(settings.sampling().seed, sampling.seed);
    QCOMPARE(settings.devices(), QString("cuda:0,1"));
    QCOMPARE(settings.kv_cache(), QString("int8"));
    QCOMPARE(settings.theme(), Theme::dark);
    QCOMPARE(settings.font_size(), 13);
    QCOMPARE(settings.last_model_directory(), dir.path() + "/models/lwm");
    settings.set_theme(Theme::light);
    QCOMPARE(settings.theme(), Theme::light);
  }

  void out_of_range_values_are_clamped_on_write() {
    QTemporaryDir dir;
    AppSettings settings(dir.filePath("settings.ini"));
    settings.set_sampling({-3.0, 5000, 7.0, 0, 1});
    QCOMPARE(settings.sampling().temperature, 0.0);
    QCOMPARE(settings.sampling().top_k, 1000);
    QCOMPARE(settings.sampling().top_p, 1.0);
    QCOMPARE(settings.sampling().max_tokens, 1);
    settings.set_font_size(200);
    QCOMPARE(settings.font_size(), 48);
    settings.set_font_size(-4);
    QCOMPARE(settings.font_size(), 0);
    settings.set_kv_cache("fp4");
    QCOMPARE(settings.kv_cache(), QString("auto"));
  }

  void hand_edited_garbage_reads_as_defaults() {
    QTemporaryDir dir;
    {
      QSettings raw(dir.filePath("settings.ini"), QSettings::IniFormat);
      raw.setValue("sampling/temperature", "warm");
      raw.setValue("sampling/top_k", -5);
      raw.setValue("sampling/top_p", 0);
      raw.setValue("sampling/max_tokens", "lots");
      raw.setValue("sampling/seed", "x");
      raw.setValue("engine/kv_cache", "f64");
      raw.setValue("engine/devices", "  ");
      raw.setValue("appearance/theme", "solarized");
      raw.setValue("appearance/font_size", 3);
    }
    AppSettings settings(dir.filePath("settings.ini"));
    const SamplingSettings defaults;
    QCOMPARE(settings.sampling().temperature, defaults.temperature);
    QCOMPARE(settings.sampling().top_k, defaults.top_k);
    QCOMPARE(settings.sampling().top_p, defaults.top_p);
    QCOMPARE(settings.sampling().max_tokens, defaults.max_tokens);
    QCOMPARE(settings.sampling().seed, defaults.seed);
    QCOMPARE(settings.kv_cache(), QString("auto"));
    QCOMPARE(settings.devices(), QString("cpu"));
    QCOMPARE(settings.theme(), Theme::system);
    QCOMPARE(settings.font_size(), 0);
  }

  void recent_files_are_newest_first_unique_and_at_most_ten() {
    QTemporaryDir dir;
    AppSettings settings(dir.filePath("settings.ini"));
    QStringList files;
    for (int i = 0; i < 14; ++i) files << touch(dir.filePath(QString("video %1.mp4").arg(i)));
    for (const QString& file : files) settings.add_recent_file(file);
    QStringList expected;
    for (int i = 13; i >= 4; --i) expected << files[i];
    QCOMPARE(settings.recent_files(), expected);

    // Re-opening a file moves it to the front once, whatever the spelling of its path.
    settings.add_recent_file(dir.path() + "/./sub/../video 7.mp4");
    expected.removeAll(files[7]);
    expected.prepend(files[7]);
    QCOMPARE(settings.recent_files(), expected);
    QCOMPARE(settings.recent_files().size(), AppSettings::kMaxRecentFiles);

    // A relative path is kept absolute.
    QDir::setCurrent(dir.path());
    settings.add_recent_file("video 0.mp4");
    QCOMPARE(settings.recent_files().front(), files[0]);

    settings.remove_recent_file(files[0]);
    QVERIFY(!settings.recent_files().contains(files[0]));
    settings.clear_recent_files();
    QVERIFY(settings.recent_files().isEmpty());
  }

  void missing_recent_files_are_pruned_from_the_settings() {
    QTemporaryDir dir;
    const QString ini = dir.filePath("settings.ini");
    QStringList files;
    for (int i = 0; i < 6; ++i) files << touch(dir.filePath(QString("book%1.epub").arg(i)));
    {
      AppSettings settings(ini);
      for (const QString& file : files) settings.add_recent_file(file);
    }
    QVERIFY(QFile::remove(files[1]));
    QVERIFY(QFile::remove(files[4]));
    QVERIFY(QDir().mkdir(dir.filePath("folder")));
    {
      AppSettings settings(ini);
      settings.add_recent_file(dir.filePath("folder"));  // not a file: pruned too
      QCOMPARE(settings.recent_files(), (QStringList{files[5], files[3], files[2], files[0]}));
    }
    QSettings raw(ini, QSettings::IniFormat);
    QCOMPARE(raw.value("files/recent").toStringList(),
             (QStringList{files[5], files[3], files[2], files[0]}));
  }
};

QTEST_GUILESS_MAIN(AppSettingsTest)
#include "test_app_settings.moc"
