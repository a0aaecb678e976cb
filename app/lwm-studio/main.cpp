// lwm-studio [FILE] [--model DIR] [--version] [--smoke-test]: the desktop application. Parses the
// arguments, finds the bundled demo model when no --model is given, and opens the window; nothing
// else.
#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QFileInfo>
#include <cstdio>

#include "lwm/gui/app_log.h"
#include "lwm/gui/engine.h"
#include "lwm/gui/main_window.h"

namespace {

// The demo model the build makes beside bin/ (build/<preset>/demo-model), or the installed one
// (share/lwm-studio/demo-model); empty when neither exists.
QString bundled_model() {
  const QDir bin(QCoreApplication::applicationDirPath());
  for (const QString& relative :
       {QStringLiteral("../demo-model"), QStringLiteral("../share/lwm-studio/demo-model")}) {
    const QString dir = QDir::cleanPath(bin.filePath(relative));
    if (QFileInfo::exists(dir + QStringLiteral("/config.json"))) return dir;
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  QCommandLineParser parser;
  parser.setApplicationDescription(
      QStringLiteral("Ask a Large World Model about a long video or a book."));
  const QCommandLineOption help_option = parser.addHelpOption();
  const QCommandLineOption version_option = parser.addVersionOption();
  const QCommandLineOption model_option(
      QStringList{QStringLiteral("m"), QStringLiteral("model")},
      QStringLiteral("Model folder (config.json, *.safetensors, tokenizer.model); default: the "
                     "bundled demo model"),
      QStringLiteral("DIR"));
  parser.addOption(model_option);
  const QCommandLineOption smoke_test_option(
      QStringLiteral("smoke-test"),
      QStringLiteral("Open the window, load the model, and quit: exit code 0 when the model "
                     "loaded, 2 otherwise (checks an installation)"));
  parser.addOption(smoke_test_option);
  parser.addPositionalArgument(QStringLiteral("FILE"),
                               QStringLiteral("A video or a book (.txt, .md, .epub, .pdf) to open"),
                               QStringLiteral("[FILE]"));
  // Parsed before the QApplication exists, so --help, --version and usage errors work without a
  // display.
  QStringList arguments;
  for (int i = 0; i < argc; ++i) arguments << QString::fromLocal8Bit(argv[i]);
  if (!parser.parse(arguments)) {
    QString error = parser.errorText();
    if (error.endsWith('.')) error.chop(1);
    std::fprintf(stderr, "lwm-studio: %s; see --help\n", qPrintable(error));
    return 1;
  }
  if (parser.isSet(version_option)) {
    std::printf("lwm-studio %s\n", LWM_VERSION);
    return 0;
  }
  if (parser.isSet(help_option)) {
    QString help = parser.helpText();
    help.replace(QStringLiteral("<executable_name>"), QStringLiteral("lwm-studio"));
    std::printf("%s", qPrintable(help));
    return 0;
  }
  if (parser.positionalArguments().size() > 1) {
    std::fprintf(stderr, "lwm-studio: give at most one FILE (got %lld); see --help\n",
                 static_cast<long long>(parser.positionalArguments().size()));
    return 1;
  }

  QApplication app(argc, argv);
  QApplication::setApplicationName(QStringLiteral("LWM Studio"));
  QApplication::setOrganizationName(QStringLiteral("LWM"));
  QApplication::setApplicationVersion(QStringLiteral(LWM_VERSION));
  // The desktop entry's id (resources/desktop), so the window gets the entry's icon and name.
  QApplication::setDesktopFileName(QStringLiteral("org.lwmstudio.LwmStudio"));

  QString log_error;
  if (!lwm::gui::install_log_handler(lwm::gui::default_log_path(), &log_error))
    std::fprintf(stderr, "lwm-studio: %s\n", qPrintable(log_error));

  lwm::gui::MainWindow window;
  if (parser.isSet(smoke_test_option)) {
    QObject::connect(window.engine(), &lwm::gui::Engine::modelLoaded, &app,
                     [](const lwm::gui::ModelInfo&) { QCoreApplication::exit(0); });
    QObject::connect(window.engine(), &lwm::gui::Engine::failed, &app,
                     [](const QString& operation, const QString& message) {
                       std::fprintf(stderr, "lwm-studio: %s: %s\n", qPrintable(operation),
                                    qPrintable(message));
                       QCoreApplication::exit(2);
                     });
  }
  const QString model = parser.isSet(model_option) ? parser.value(model_option) : bundled_model();
  if (!model.isEmpty()) window.loadModel(model);
  // A FILE on the command line wins over reopening where the last run ended.
  const bool has_file = !parser.positionalArguments().isEmpty();
  window.restoreLastSession(!has_file);
  if (has_file) window.openFile(parser.positionalArguments().first());
  if (parser.isSet(smoke_test_option) && model.isEmpty()) {
    std::fprintf(stderr, "lwm-studio: no model: the bundled demo model is not installed beside "
                         "the program; give --model DIR\n");
    return 2;
  }
  window.show();
  return app.exec();
}
