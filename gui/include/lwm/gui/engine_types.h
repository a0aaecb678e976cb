// Plain data the engine worker (engine_worker.h) sends to the window through queued signals:
// what a model is, what a source holds, what an ingest will cost. Copies only, so nothing the
// worker thread owns is ever touched by the UI thread.
#pragma once

#include <QList>
#include <QMetaType>
#include <QString>
#include <QStringList>

#include "lwm/gui/chat_record.h"

namespace lwm::gui {

struct ModelInfo {
  QString directory;
  QString name;               // the directory's last component, for titles
  bool vision = false;        // has a vision vocabulary and a VQGAN: can read videos
  qint64 context_window = 0;  // max_sequence_length
  qint64 parameters = 0;
  qint64 weights_bytes = 0;           // bytes of *.safetensors on disk (memory-mapped when running)
  qint64 kv_bytes_per_token = 0;      // float32 K and V over all layers (the CPU backend's cache)
  double prefill_tokens_per_s = 0.0;  // measured once at load, for time estimates
};

// A place in a book's text, in QString (UTF-16) positions so the reader pane can select it.
struct BookAnchor {
  QString title;   // chapter title, or "Page N"
  int number = 0;  // 1-based chapter or page number as cited in answers
  int page = 0;    // the page a chapter starts on; 0 when the book has no pages
  int level = 1;
  qint64 begin = 0;  // [begin, end) in SourceInfo::book_text
  qint64 end = 0;
};

struct SourceInfo {
  SourceKind kind = SourceKind::none;
  QString path;
  QString title;
  QString summary;       // one line: format, chapters or codec, size, duration
  QStringList warnings;  // what the readers worked around
  // Videos.
  double duration_s = 0.0;
  qint64 video_frames = 0;
  double frame_rate = 0.0;
  // Books.
  QString book_text;
  QList<BookAnchor> chapters;  // level-1 and level-2 headings in order; number = index + 1
  QList<BookAnchor> pages;     // PDF pages; number = page number
};

// What ingesting the open source with some IngestChoices will take.
struct PlanInfo {
  qint64 frames = 0;  // videos: frames that will be sampled
  qint64 source_tokens = 0;
  qint64 context = 0;  // KV-cache capacity in tokens
  qint64 kv_bytes = 0;
  qint64 weights_bytes = 0;
  qint64 available_bytes = 0;  // memory the machine can give now
  QStringList devices;         // the devices that will hold the work ("cpu")
  double estimated_s = -1.0;   // prefill time, from the rate measured at model load
  bool fits = false;
  QString verdict;  // a sentence: what it takes, or why it will not fit and what would
};

struct GenerationSettings {
  qint64 max_new_tokens = 128;
  double temperature = 0.0;  // 0: greedy
  int top_k = 0;             // 0: no limit
  double top_p = 1.0;        // 1: no limit
  quint64 seed = 0;
};

// A device the plan panel and the settings offer: its id as the engine reads it ("cpu",
// "cuda:0") and a label with what it is and the memory it has free.
struct DeviceChoice {
  QString id;
  QString label;
};
// Every device the core lists (lwm::list_devices: the CPU, and each CUDA GPU when this build has
// CUDA and finds one); `gpu_status` gets the core's line about the GPUs ("no CUDA device: ..."),
// so the window can say why there is none. A device the engine cannot run on is refused by name
// when planned, never replaced by the CPU.
QList<DeviceChoice> device_choices(QString* gpu_status = nullptr);

// Registers the types above for queued signals; called once by Engine.
void register_engine_types();

}  // namespace lwm::gui

Q_DECLARE_METATYPE(lwm::gui::ModelInfo)
Q_DECLARE_METATYPE(lwm::gui::SourceInfo)
Q_DECLARE_METATYPE(lwm::gui::PlanInfo)
Q_DECLARE_METATYPE(lwm::gui::IngestChoices)
Q_DECLARE_METATYPE(lwm::gui::GenerationSettings)
Q_DECLARE_METATYPE(lwm::gui::AnswerStats)
Q_DECLARE_METATYPE(lwm::gui::AnswerEnd)
