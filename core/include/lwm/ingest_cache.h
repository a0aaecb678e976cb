// Resumable ingest (design.md steps 3 and 6; issue 7 "a cancelled or killed ingest resumes from
// what was cached"). A video's VQGAN codes are appended to a file frame by frame as they are
// computed; the file is named after the video's content (SHA-256), the sampling choices and the
// VQGAN, so the same choices on the same file find it again wherever the file was moved.
//
// File format "lwm-video-codes" version 1 (little-endian):
//   "LWMCODES" | u32 version | u32 n | n bytes of JSON (key, codes per frame, codebook) | u64 check
//   then records: u32 kind ('F' frame, 'D' done) | u32 n | n bytes | u64 check
//     frame: i64 sample index | i64 frame index | f64 seconds | i32 codes[codes_per_frame]
//     done:  JSON (frames, samples planned, frames in video, warnings)
// where check is the first 8 bytes of the SHA-256 of the bytes before it in that header or record.
// A reader keeps every record up to the first torn or corrupt one and cuts the file there, so a
// kill at any byte loses at most the frame being written.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lwm/model_config.h"
#include "lwm/progress.h"
#include "lwm/source_map.h"
#include "lwm/video.h"
#include "lwm/video_tokens.h"
#include "lwm/vqgan.h"

namespace lwm {

// Lowercase hex SHA-256 of a file's bytes; progress counts bytes. Throws Error(io) naming it.
std::string file_sha256(const std::filesystem::path& file, const ProgressCallback& progress = {});

// What makes two runs' codes the same: the video's content, how frames were chosen, and the VQGAN.
struct VideoCacheKey {
  std::string content_sha256;
  std::string sampling;  // "uniform:8@256", "rate:1.5@256" (selection, count or rate, resolution)
  std::string vqgan;     // vqgan_identity()

  static VideoCacheKey make(const std::string& content_sha256, const FrameSamplingOptions& sampling,
                            const Vqgan& vqgan);
  std::string digest() const;  // SHA-256 of the three, the cache file's name
};

// The VQGAN's config and a hash of its weight file's header and first and last MiB: distinct
// weights give distinct identities without reading hundreds of megabytes on every open.
std::string vqgan_identity(const Vqgan& vqgan);

struct CachedFrame {
  std::int64_t sample_index = 0;
  VideoLocation location;
};

class VideoCodeCache {
 public:
  // Opens <dir>/<key.digest()>.lwmcodes, creating it (and `dir`) when absent; reads every intact
  // record and truncates a torn or corrupt tail. A file whose header does not match (another
  // version or key, corrupt) is replaced. Throws Error(io) when the directory cannot be written.
  static std::unique_ptr<VideoCodeCache> open(const std::filesystem::path& dir,
                                              const VideoCacheKey& key,
                                              std::int64_t codes_per_frame,
                                              std::int32_t codebook_size);
  ~VideoCodeCache();
  VideoCodeCache(const VideoCodeCache&) = delete;
  VideoCodeCache& operator=(const VideoCodeCache&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }
  std::int64_t frames() const noexcept { return static_cast<std::int64_t>(frames_.size()); }
  const std::vector<CachedFrame>& cached_frames() const noexcept { return frames_; }
  const std::vector<std::int32_t>& codes() const noexcept { return codes_; }
  bool complete() const noexcept { return complete_; }
  // The summary written by mark_complete() (samples planned, frames in video, warnings).
  const FrameSamplingReport& report() const noexcept { return report_; }

  // Appends one frame's codes and flushes it to the disk before returning.
  void append(const CachedFrame& frame, std::span<const std::int32_t> codes);
  // Records that every sample is in; later opens skip sampling altogether.
  void mark_complete(const FrameSamplingReport& report);

 private:
  VideoCodeCache() = default;
  void write_record(std::uint32_t kind, const std::string& payload);

  std::filesystem::path path_;
  int fd_ = -1;
  std::int64_t codes_per_frame_ = 0;
  std::int32_t codebook_size_ = 0;
  std::vector<CachedFrame> frames_;
  std::vector<std::int32_t> codes_;
  bool complete_ = false;
  FrameSamplingReport report_;
};

// tokenize_video() through a cache in `cache_dir`: frames already cached are not encoded again
// (they are still decoded to reach the later ones; a complete cache decodes nothing), each new
// frame is appended as soon as its batch is encoded, and a cancel or kill keeps what was done.
// `content_sha256` is file_sha256(path), passed in so callers that hashed already need not again
// (empty: hashed here).
struct CachedVideoTokens {
  VideoTokens tokens;
  std::int64_t frames_from_cache = 0;  // frames found in the cache, not encoded by this call
  std::filesystem::path cache_file;
};
CachedVideoTokens tokenize_video_cached(const std::filesystem::path& path, const Vqgan& vqgan,
                                        FrameSamplingOptions sampling,
                                        const std::filesystem::path& cache_dir,
                                        std::string content_sha256 = {},
                                        std::int64_t frames_per_batch = 4);

// Lowercase hex SHA-256 of bytes in memory (an inline prompt's text, say).
std::string bytes_sha256(std::string_view bytes);

// Where the ingest cache keeps the KV snapshot (Session::save) of a session over a source with
// content hash `source_sha256`, for a model with `config` and a template: one file per
// combination, so reopening the same source with the same model is instant.
std::filesystem::path session_snapshot_path(const std::filesystem::path& cache_dir,
                                            const std::string& source_sha256,
                                            const ModelConfig& config,
                                            const std::string& template_name);

}  // namespace lwm
