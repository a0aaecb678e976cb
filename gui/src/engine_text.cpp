#include "engine_text.h"

#include <QFileInfo>
#include <algorithm>
#include <exception>
#include <new>
#include <vector>

#include "lwm/error.h"

namespace lwm::gui {
namespace {

// What to do, for errors whose message may not say it.
QString advice(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::io:
      return QObject::tr("Check that the file exists and can be read.");
    case ErrorKind::file_format:
      return QObject::tr("Choose another file, or repair this one.");
    case ErrorKind::config:
      return QObject::tr("Fix the model's config.json or choose another model.");
    case ErrorKind::unsupported:
      return QObject::tr("Choose a file or setting this build supports.");
    case ErrorKind::out_of_memory:
      return QObject::tr("Choose fewer frames, a smaller context or a machine with more memory.");
    case ErrorKind::cancelled:
      return QObject::tr("Start it again to go on.");
    case ErrorKind::communication:
      return QObject::tr("Check the other devices and try again.");
    case ErrorKind::device:
      return QObject::tr("Check the GPU with `lwm devices`, or choose another device.");
    case ErrorKind::invalid_argument:
      return {};
  }
  return {};
}

QString sentence(QString text) {
  text = text.trimmed();
  if (!text.isEmpty()) text[0] = text[0].toUpper();
  if (!text.endsWith('.')) text += '.';
  return text;
}

}  // namespace

QString describe_current_exception() {
  try {
    throw;
  } catch (const Error& error) {
    QString text = sentence(QString::fromStdString(error.what()));
    const QString more = advice(error.kind());
    // lwm messages usually say what to change after a ';'; add advice only when they do not.
    if (!more.isEmpty() && !text.contains(';')) text += ' ' + more;
    return text;
  } catch (const std::bad_alloc&) {
    return QObject::tr(
        "The machine ran out of memory. Close other programs, or choose fewer "
        "frames or a smaller context.");
  } catch (const std::exception& error) {
    return QObject::tr(
               "Internal error: %1. Please report it with the log file (Help > Open Log "
               "Folder).")
        .arg(QString::fromStdString(error.what()));
  } catch (...) {
    return QObject::tr("Internal error of an unknown kind. Please report it with the log file.");
  }
}

bool looks_like_video(const QString& path) {
  static const QStringList extensions = {"mp4", "mkv",  "webm", "mov", "avi", "m4v",
                                         "mpg", "mpeg", "ts",   "ogv", "flv", "wmv"};
  return extensions.contains(QFileInfo(path).suffix().toLower());
}

void fill_book_source(const Book& book, SourceInfo& source) {
  source.kind = SourceKind::book;
  source.title = book.title.empty() ? QFileInfo(source.path).completeBaseName()
                                    : QString::fromStdString(book.title);
  for (const auto& warning : book.warnings) source.warnings << QString::fromStdString(warning);

  // Byte offsets → UTF-16 positions, converting the text piece by piece between sorted offsets.
  std::vector<std::size_t> offsets = {0, book.text.size()};
  for (std::size_t c = 0; c < book.outline.chapters.size(); ++c) {
    const ByteRange range = book.outline.chapter_bytes(c);
    offsets.push_back(range.begin);
    offsets.push_back(range.end);
  }
  for (const auto& page : book.outline.pages) {
    const ByteRange range = book.outline.page_bytes(page.number);
    offsets.push_back(range.begin);
    offsets.push_back(range.end);
  }
  std::sort(offsets.begin(), offsets.end());
  offsets.erase(std::unique(offsets.begin(), offsets.end()), offsets.end());
  std::vector<qint64> positions(offsets.size(), 0);
  QString text;
  for (std::size_t i = 1; i < offsets.size(); ++i) {
    text += QString::fromUtf8(book.text.data() + offsets[i - 1],
                              static_cast<qsizetype>(offsets[i] - offsets[i - 1]));
    positions[i] = text.size();
  }
  const auto position = [&](std::size_t byte) {
    return positions[static_cast<std::size_t>(
        std::lower_bound(offsets.begin(), offsets.end(), byte) - offsets.begin())];
  };
  source.book_text = text;
  for (std::size_t c = 0; c < book.outline.chapters.size(); ++c) {
    const auto& chapter = book.outline.chapters[c];
    const ByteRange range = book.outline.chapter_bytes(c);
    source.chapters.append(BookAnchor{QString::fromStdString(chapter.title),
                                      static_cast<int>(c + 1), chapter.page, chapter.level,
                                      position(range.begin), position(range.end)});
  }
  for (const auto& page : book.outline.pages) {
    const ByteRange range = book.outline.page_bytes(page.number);
    source.pages.append(BookAnchor{QObject::tr("Page %1").arg(page.number), page.number,
                                   page.number, 1, position(range.begin), position(range.end)});
  }
  source.summary = QObject::tr("%1 book, %2 chapters, %3 pages, %4 characters")
                       .arg(QString::fromLatin1(to_string(book.format)))
                       .arg(source.chapters.size())
                       .arg(source.pages.size())
                       .arg(text.size());
}

QString plan_verdict(const PlanInfo& plan, const QString& cannot_run) {
  QString text;
  if (plan.fits) {
    QStringList devices;
    for (const DevicePlanInfo& device : plan.devices) devices << device.device;
    // The stages a source has (a book is neither decoded nor VQGAN-encoded), and "about" only
    // in front of a real estimate ("under 0.1 s in all", not "about under 0.1 s").
    QStringList stages;
    if (plan.decoding_s > 0)
      stages << QObject::tr("decoding %1").arg(format_duration(plan.decoding_s));
    if (plan.tokenizing_s > 0) {
      stages << QObject::tr("tokenizing %1").arg(format_duration(plan.tokenizing_s));
    }
    stages << QObject::tr("prefill %1").arg(format_duration(plan.prefill_s));
    const QString time =
        plan.estimated_s < 0 ? QObject::tr("no time estimate for these devices yet")
        : plan.estimated_s < 0.05
            ? QObject::tr("%1 in all").arg(format_duration(plan.estimated_s))
            : QObject::tr("about %1 (%2)")
                  .arg(format_duration(plan.estimated_s), stages.join(QStringLiteral(", ")));
    text = QObject::tr("Fits on %1: %2 tokens in a context of %3; %4 KV cache %5; %6.")
               .arg(devices.join(QStringLiteral(", ")))
               .arg(plan.source_tokens)
               .arg(plan.context)
               .arg(plan.kv_cache, format_bytes(plan.kv_bytes), time);
  } else {
    text = plan.problem;
    if (!plan.suggestion.isEmpty()) text += ' ' + plan.suggestion;
  }
  if (!cannot_run.isEmpty()) {
    text += ' ' + QObject::tr("Ingest is refused here: %1").arg(cannot_run);
  }
  return text;
}

QString device_plan_line(const DevicePlanInfo& device, const QString& kv_cache) {
  const QString free = device.available_bytes < 0
                           ? QObject::tr("free memory unknown")
                           : QObject::tr("%1 free").arg(format_bytes(device.available_bytes));
  return QObject::tr("%1 %2: weights %3 + %4 KV cache %5 (%6 tokens) + work %7 = %8 of %9")
      .arg(device.fits ? QStringLiteral("\u2714") : QStringLiteral("\u2718"), device.device,
           format_bytes(device.weights_bytes), kv_cache, format_bytes(device.kv_bytes))
      .arg(device.context_tokens)
      .arg(format_bytes(device.workspace_bytes), format_bytes(device.total_bytes), free);
}

QString ingest_summary(const IngestReport& report, bool cancelled) {
  QStringList from_disk;
  if (report.frames_from_cache > 0) {
    from_disk << QObject::tr("%1 of %2 frames from the ingest cache")
                     .arg(report.frames_from_cache)
                     .arg(report.frames);
  }
  if (report.restored_tokens > 0) {
    from_disk << QObject::tr("%1 tokens restored from a snapshot").arg(report.restored_tokens);
  }
  const QString disk =
      from_disk.isEmpty() ? QString() : QStringLiteral(" (%1)").arg(from_disk.join(", "));
  if (cancelled) {
    return QObject::tr(
               "Cancelled during %1; %2 of %3 tokens stay cached%4, and Ingest resumes "
               "from there.")
        .arg(report.stage)
        .arg(report.cached_tokens)
        .arg(report.source_tokens)
        .arg(disk);
  }
  return QObject::tr("Ingested: %1 tokens cached in %2%3. Ask away.")
      .arg(report.cached_tokens)
      .arg(format_duration(report.seconds), disk);
}

}  // namespace lwm::gui
