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
  qint64 weights_bytes = 0;  // bytes of *.safetensors on disk (memory-mapped when running)
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

// What one device will hold (lwm::DevicePlan): the weights (and, on the first device of a video,
// the VQGAN), its share of the KV cache, one prefill chunk's activations, against its free memory.
struct DevicePlanInfo {
  QString device;  // "cpu", "cuda:1"
  int ranks = 1;
  qint64 context_tokens = 0;
  qint64 weights_bytes = 0;
  qint64 kv_bytes = 0;
  qint64 workspace_bytes = 0;
  qint64 total_bytes = 0;
  qint64 available_bytes = -1;  // -1: unknown
  bool fits = false;
};

// What ingesting the open source with some IngestChoices will take: lwm::plan_ingest's plan for
// the choices, plus whether this build can run it.
struct PlanInfo {
  qint64 frames = 0;          // videos: frames that will be sampled
  QList<double> frame_times;  // videos: their times in seconds
  qint64 source_tokens = 0;
  bool tokens_exact = true;
  qint64 context = 0;   // KV-cache capacity in tokens, over all devices
  QString kv_cache;     // the precision planned ("f32", "bf16", "int8"; "auto" resolved)
  qint64 kv_bytes = 0;  // over all devices
  QList<DevicePlanInfo> devices;
  // Estimated seconds per stage and in all (planner throughput, scaled by what this machine
  // measured); -1 when not known (GPUs without measured numbers).
  double decoding_s = -1.0;
  double tokenizing_s = -1.0;
  double prefill_s = -1.0;
  double estimated_s = -1.0;
  bool fits = false;       // enough context and memory on every device
  bool runnable = false;   // fits, and this build can run it there with that KV precision
  QString problem;         // when it does not fit or cannot run: why
  QString suggestion;      // when it does not fit: what would (or that nothing here would)
  qint64 max_frames = -1;  // videos: the most frames that fit with the other choices unchanged
  double max_fps = -1.0;   // videos at a frame rate: the highest rate that fits
  QString verdict;         // one paragraph for the user: what it takes, or why not and what would
};

// What an ingest did, when it finished or was cancelled: how much came from the ingest cache on
// disk (frame codes, a KV snapshot) and how much was computed.
struct IngestReport {
  QString stage;                 // cancelled: the stage it stopped in ("decoding", "prefill", ...)
  qint64 source_tokens = 0;      // the source's prompt
  qint64 cached_tokens = 0;      // tokens in the KV cache now
  qint64 restored_tokens = 0;    // read from a session snapshot on disk by this ingest
  qint64 prefilled_tokens = 0;   // computed by this ingest
  qint64 frames = 0;             // videos: frames sampled
  qint64 frames_from_cache = 0;  // videos: frames whose codes came from the ingest cache
  double seconds = 0.0;
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
// so the window can say why there is none; with two or more GPUs also "cuda" (all of them, one
// ring). A device the engine cannot run on is planned (what it would hold) but refused by name
// at ingest, never replaced by the CPU.
QList<DeviceChoice> device_choices(QString* gpu_status = nullptr);

// Registers the types above for queued signals; called once by Engine.
void register_engine_types();

}  // namespace lwm::gui

Q_DECLARE_METATYPE(lwm::gui::ModelInfo)
Q_DECLARE_METATYPE(lwm::gui::SourceInfo)
Q_DECLARE_METATYPE(lwm::gui::PlanInfo)
Q_DECLARE_METATYPE(lwm::gui::IngestReport)
Q_DECLARE_METATYPE(lwm::gui::IngestChoices)
Q_DECLARE_METATYPE(lwm::gui::GenerationSettings)
Q_DECLARE_METATYPE(lwm::gui::AnswerStats)
Q_DECLARE_METATYPE(lwm::gui::AnswerEnd)
