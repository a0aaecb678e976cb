// A video as the model reads it (design.md step 3): sampled frames, resized and cropped to the
// VQGAN's resolution, encoded into codes frame batch by frame batch, each frame keeping the time
// it was shown so answers can point back into the video.
#pragma once

#include <filesystem>
#include <vector>

#include "lwm/prompt.h"
#include "lwm/source_map.h"
#include "lwm/video.h"
#include "lwm/vqgan.h"

namespace lwm {

struct VideoTokens {
  VideoCodes codes;                   // frames × tokens_per_frame codes (spec §2.3)
  std::vector<VideoLocation> frames;  // where each encoded frame was in the video
  FrameSamplingReport report;         // what decoding did, warnings included
};

// Samples `path` with `sampling` (its resolution is set to the VQGAN's) and encodes the frames.
// Decoded pixels are held only for one batch of `frames_per_batch` frames. Progress (through
// sampling.progress) counts samples handled; cancelling throws Error(cancelled).
VideoTokens tokenize_video(const std::filesystem::path& path, const Vqgan& vqgan,
                           FrameSamplingOptions sampling, std::int64_t frames_per_batch = 4);

// Records in `sources` where each frame of a prompt built from `video` came from.
void add_video_frames(SourceMap& sources, std::int32_t video_source, const Prompt& prompt,
                      const VideoTokens& video);

}  // namespace lwm
