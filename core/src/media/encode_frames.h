// The frame → code loop shared by tokenize_video() and its cached form (ingest_cache.h): samples
// the video, skips samples already done, encodes the rest in batches and hands each batch over.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <vector>

#include "lwm/source_map.h"
#include "lwm/video.h"
#include "lwm/vqgan.h"

namespace lwm::detail {

struct EncodedFrame {
  std::int64_t sample_index = 0;
  VideoLocation location;
};

// Called after each batch: its frames and their codes (frames.size() × tokens_per_frame).
using EncodedBatchCallback =
    std::function<void(std::span<const EncodedFrame>, std::span<const std::int32_t>)>;

// Samples `path` (resolution set to the VQGAN's); samples with index <= `skip_through` are
// decoded but not encoded.
FrameSamplingReport encode_video_frames(const std::filesystem::path& path, const Vqgan& vqgan,
                                        FrameSamplingOptions sampling,
                                        std::int64_t frames_per_batch, std::int64_t skip_through,
                                        const EncodedBatchCallback& on_batch);

}  // namespace lwm::detail
