// The video needle evaluation (issue 8, [ours] after spec §6.1): a generated video in which the
// frames around one sampled frame show "The secret number is {7 digits}" (needle.h), sampled and
// encoded as `lwm ask --video` does (video_tokens.h), then asked for it. Videos are written with
// the ffmpeg command-line program (lavfi's `life` source, drawbox and drawtext), since core reads
// video but does not encode it; without the program the evaluation says so. The trainer's data
// generator can make the same videos with write_needle_video.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "lwm/model.h"
#include "lwm/needle_eval.h"
#include "lwm/tokenizer.h"
#include "lwm/vqgan.h"

namespace lwm {

// One needle video: `seconds` long at `fps`, square `size` pixels (the VQGAN crops to a square,
// so nothing drawn is lost), a moving Game-of-Life background without digits, and the caption on
// a dark band from `caption_begin` to `caption_end` seconds (inclusive).
struct NeedleVideoSpec {
  double seconds = 8.0;
  double fps = 4.0;
  int size = 256;
  std::string number;  // drawn as needle::video_caption(number), the number on its own line
  double caption_begin = 0.0;
  double caption_end = 0.0;
  std::uint64_t background_seed = 0;
};

// Runs `ffmpeg` (a program name looked up on PATH, or a path) to write `path`. Throws
// Error(unsupported) when the program is missing, Error(io) with its message when it fails.
void write_needle_video(const std::filesystem::path& path, const NeedleVideoSpec& spec,
                        const std::string& ffmpeg = "ffmpeg");

// True when `ffmpeg -version` runs.
bool ffmpeg_available(const std::string& ffmpeg = "ffmpeg");

struct NeedleVideoOptions {
  NeedleGrid grid;                 // context lengths are sampled frame counts
  double seconds_per_frame = 1.0;  // video length = frames × this
  double fps = 4.0;
  int size = 256;
  std::int64_t max_new_tokens = 32;
  std::int64_t prefill_chunk = 512;
  std::uint64_t seed = 0;
  std::filesystem::path work_dir;  // videos are written here and removed after their cell
  std::string ffmpeg = "ffmpeg";
};

nlohmann::json needle_video_settings(const NeedleVideoOptions& options);

// For every cell (frames N, depth d, round): a video of N·seconds_per_frame seconds whose caption
// covers the frames around sample k = round(d/100·(N−1)) of LWM's uniform sampling (§3.1) and no
// other sample; N frames sampled and encoded with `vqgan`; the question (needle::video_question)
// asked before the video with the "video-chat" template (§2.4); greedy answer scored by whether
// the number occurs in it. `extra` records the frames, which sample showed the caption and its
// time. Throws Error(invalid_argument) for a text-only model, Error(unsupported) without ffmpeg.
// Progress counts frames; cancelling throws Error(cancelled) with finished cells saved.
void run_needle_video_eval(const Model& model, const Tokenizer& tokenizer, const Vqgan& vqgan,
                           const NeedleVideoOptions& options, NeedleResultsFile& results,
                           const ProgressCallback& progress = {},
                           const NeedleCellCallback& on_cell = {});

}  // namespace lwm
