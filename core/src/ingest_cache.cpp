#include "lwm/ingest_cache.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "atomic_file.h"
#include "lwm/error.h"
#include "media/encode_frames.h"
#include "sha256.h"

namespace lwm {
namespace {

constexpr char kMagic[8] = {'L', 'W', 'M', 'C', 'O', 'D', 'E', 'S'};
constexpr std::uint32_t kVersion = 1;
constexpr std::uint32_t kFrameRecord = 'F';
constexpr std::uint32_t kDoneRecord = 'D';

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

template <typename T>
T get(const std::string& in, std::size_t offset) {
  T value;
  std::memcpy(&value, in.data() + offset, sizeof value);
  return value;
}

// u32 kind | u32 n | payload | u64 check (over everything before it).
std::string framed(std::uint32_t kind, const std::string& payload) {
  std::string out;
  put(out, kind);
  put(out, static_cast<std::uint32_t>(payload.size()));
  out += payload;
  put(out, sha256_checksum64(out.data(), out.size()));
  return out;
}

std::string header_bytes(const VideoCacheKey& key, std::int64_t codes_per_frame,
                         std::int32_t codebook_size) {
  const nlohmann::json header = {{"format", "lwm-video-codes"},
                                 {"format_version", kVersion},
                                 {"content_sha256", key.content_sha256},
                                 {"sampling", key.sampling},
                                 {"vqgan", key.vqgan},
                                 {"codes_per_frame", codes_per_frame},
                                 {"codebook_size", codebook_size}};
  std::string out(kMagic, sizeof kMagic);
  put(out, kVersion);
  const std::string json = header.dump();
  put(out, static_cast<std::uint32_t>(json.size()));
  out += json;
  put(out, sha256_checksum64(out.data(), out.size()));
  return out;
}

std::string read_whole(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

[[noreturn]] void io_error(const std::string& what, const std::filesystem::path& path) {
  throw Error(ErrorKind::io, "cannot " + what + " the ingest cache '" + path.string() +
                                 "': " + std::strerror(errno) +
                                 "; check the cache directory's permissions and free space");
}

}  // namespace

std::string file_sha256(const std::filesystem::path& file, const ProgressCallback& progress) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw Error(ErrorKind::io,
                "cannot read '" + file.string() + "' to hash it: " + std::strerror(errno));
  }
  std::error_code size_error;
  const auto size = std::filesystem::file_size(file, size_error);
  const ProgressReporter reporter(progress, size_error ? 0 : static_cast<std::int64_t>(size),
                                  "hashing '" + file.string() + "'", "bytes");
  Sha256 hash;
  std::vector<char> buffer(1 << 20);
  std::int64_t done = 0;
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    hash.update(buffer.data(), got);
    done += static_cast<std::int64_t>(got);
    reporter.report(done);
  }
  if (in.bad()) throw Error(ErrorKind::io, "read error while hashing '" + file.string() + "'");
  return hash.finish_hex();
}

std::string vqgan_identity(const Vqgan& vqgan) {
  Sha256 hash;
  hash.update(vqgan.config().to_json().dump());
  std::ifstream in(vqgan.weights_path(), std::ios::binary);
  std::error_code error;
  const auto size = std::filesystem::file_size(vqgan.weights_path(), error);
  if (in && !error) {
    hash.update(std::to_string(size));
    constexpr std::size_t kEdge = 1 << 20;
    std::vector<char> buffer(kEdge);
    in.read(buffer.data(), static_cast<std::streamsize>(kEdge));
    hash.update(buffer.data(), static_cast<std::size_t>(in.gcount()));
    if (size > kEdge) {
      in.clear();
      in.seekg(static_cast<std::streamoff>(size - std::min<std::uintmax_t>(size, kEdge)));
      in.read(buffer.data(), static_cast<std::streamsize>(kEdge));
      hash.update(buffer.data(), static_cast<std::size_t>(in.gcount()));
    }
  }
  return hash.finish_hex();
}

VideoCacheKey VideoCacheKey::make(const std::string& content_sha256,
                                  const FrameSamplingOptions& sampling, const Vqgan& vqgan) {
  std::ostringstream choice;
  choice.precision(17);
  if (sampling.selection == FrameSelection::uniform) {
    choice << "uniform:" << sampling.max_frames;
  } else {
    choice << "rate:" << sampling.frames_per_second;
  }
  choice << "@" << vqgan.config().resolution;
  return {content_sha256, choice.str(), vqgan_identity(vqgan)};
}

std::string VideoCacheKey::digest() const {
  return sha256_hex(content_sha256 + "\n" + sampling + "\n" + vqgan);
}

std::unique_ptr<VideoCodeCache> VideoCodeCache::open(const std::filesystem::path& dir,
                                                     const VideoCacheKey& key,
                                                     std::int64_t codes_per_frame,
                                                     std::int32_t codebook_size) {
  if (codes_per_frame <= 0 || codebook_size <= 0) {
    throw Error(ErrorKind::invalid_argument,
                "video code cache: codes per frame and codebook size "
                "must be positive");
  }
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    throw Error(ErrorKind::io, "cannot create the ingest cache directory '" + dir.string() +
                                   "': " + error.message());
  }
  std::unique_ptr<VideoCodeCache> cache(new VideoCodeCache());
  cache->path_ = dir / (key.digest() + ".lwmcodes");
  cache->codes_per_frame_ = codes_per_frame;
  cache->codebook_size_ = codebook_size;

  const std::string header = header_bytes(key, codes_per_frame, codebook_size);
  const std::string bytes =
      std::filesystem::exists(cache->path_) ? read_whole(cache->path_) : std::string();
  std::size_t good = 0;  // bytes of the file that hold intact records
  if (bytes.compare(0, header.size(), header) == 0) {
    good = header.size();
    const std::size_t frame_payload = 24 + 4 * static_cast<std::size_t>(codes_per_frame);
    while (!cache->complete_ && bytes.size() - good >= 16) {
      const auto kind = get<std::uint32_t>(bytes, good);
      const auto size = get<std::uint32_t>(bytes, good + 4);
      if (bytes.size() - good - 16 < size) break;  // torn: the record's end was never written
      if (get<std::uint64_t>(bytes, good + 8 + size) !=
          sha256_checksum64(bytes.data() + good, 8 + size)) {
        break;  // corrupt
      }
      const std::size_t payload = good + 8;
      if (kind == kFrameRecord && size == frame_payload) {
        CachedFrame frame{
            get<std::int64_t>(bytes, payload),
            {get<double>(bytes, payload + 16), get<std::int64_t>(bytes, payload + 8)}};
        if (!cache->frames_.empty() && frame.sample_index <= cache->frames_.back().sample_index) {
          break;
        }
        std::vector<std::int32_t> codes(static_cast<std::size_t>(codes_per_frame));
        std::memcpy(codes.data(), bytes.data() + payload + 24, codes.size() * 4);
        bool valid = true;
        for (const auto code : codes) valid = valid && code >= 0 && code < codebook_size;
        if (!valid) break;
        cache->frames_.push_back(frame);
        cache->codes_.insert(cache->codes_.end(), codes.begin(), codes.end());
      } else if (kind == kDoneRecord) {
        try {
          const auto done = nlohmann::json::parse(bytes.substr(payload, size));
          if (done.at("frames").get<std::int64_t>() != cache->frames()) break;
          cache->report_.samples_planned = done.at("samples_planned").get<std::int64_t>();
          cache->report_.samples_delivered = cache->frames();
          cache->report_.frames_in_video = done.at("frames_in_video").get<std::int64_t>();
          cache->report_.warnings = done.at("warnings").get<std::vector<std::string>>();
          cache->complete_ = true;
        } catch (const nlohmann::json::exception&) {
          break;
        }
      } else {
        break;
      }
      good = payload + size + 8;
    }
  }
  if (good == 0) {
    write_file_atomically(cache->path_, header);  // absent, another key or version, or corrupt
  }
  cache->fd_ = ::open(cache->path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (cache->fd_ < 0) io_error("open", cache->path_);
  if (good > 0 && good < bytes.size() && ::ftruncate(cache->fd_, static_cast<off_t>(good)) != 0) {
    io_error("truncate the torn end of", cache->path_);
  }
  return cache;
}

VideoCodeCache::~VideoCodeCache() {
  if (fd_ >= 0) ::close(fd_);
}

void VideoCodeCache::write_record(std::uint32_t kind, const std::string& payload) {
  const std::string record = framed(kind, payload);
  std::size_t written = 0;
  while (written < record.size()) {
    const ssize_t n = ::write(fd_, record.data() + written, record.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) io_error("append to", path_);
    written += static_cast<std::size_t>(n);
  }
  if (::fdatasync(fd_) != 0) io_error("sync", path_);
}

void VideoCodeCache::append(const CachedFrame& frame, std::span<const std::int32_t> codes) {
  if (complete_) {
    throw Error(ErrorKind::invalid_argument,
                "the ingest cache '" + path_.string() + "' is complete; it takes no more frames");
  }
  if (static_cast<std::int64_t>(codes.size()) != codes_per_frame_ ||
      (!frames_.empty() && frame.sample_index <= frames_.back().sample_index)) {
    throw Error(ErrorKind::invalid_argument,
                "ingest cache: a frame needs " + std::to_string(codes_per_frame_) +
                    " codes and a sample index after the last one cached");
  }
  std::string payload;
  put(payload, frame.sample_index);
  put(payload, frame.location.frame);
  put(payload, frame.location.seconds);
  payload.append(reinterpret_cast<const char*>(codes.data()), codes.size_bytes());
  write_record(kFrameRecord, payload);
  frames_.push_back(frame);
  codes_.insert(codes_.end(), codes.begin(), codes.end());
}

void VideoCodeCache::mark_complete(const FrameSamplingReport& report) {
  const nlohmann::json done = {{"frames", frames()},
                               {"samples_planned", report.samples_planned},
                               {"frames_in_video", report.frames_in_video},
                               {"warnings", report.warnings}};
  write_record(kDoneRecord, done.dump());
  report_.samples_planned = report.samples_planned;
  report_.samples_delivered = frames();
  report_.frames_in_video = report.frames_in_video;
  report_.warnings = report.warnings;
  complete_ = true;
}

std::string bytes_sha256(std::string_view bytes) {
  return sha256_hex(bytes);
}

std::filesystem::path session_snapshot_path(const std::filesystem::path& cache_dir,
                                            const std::string& source_sha256,
                                            const ModelConfig& config,
                                            const std::string& template_name) {
  return cache_dir /
         (sha256_hex(source_sha256 + "\n" + template_name + "\n" + config.to_json().dump()) +
          ".lwmkv");
}

CachedVideoTokens tokenize_video_cached(const std::filesystem::path& path, const Vqgan& vqgan,
                                        FrameSamplingOptions sampling,
                                        const std::filesystem::path& cache_dir,
                                        std::string content_sha256, std::int64_t frames_per_batch) {
  if (content_sha256.empty()) content_sha256 = file_sha256(path);
  const VqganConfig& config = vqgan.config();
  sampling.resolution = static_cast<int>(config.resolution);
  const auto cache = VideoCodeCache::open(
      cache_dir, VideoCacheKey::make(content_sha256, sampling, vqgan), config.tokens_per_frame(),
      static_cast<std::int32_t>(config.num_embeddings));
  CachedVideoTokens result;
  result.frames_from_cache = cache->frames();
  result.cache_file = cache->path();
  VideoTokens& out = result.tokens;
  if (cache->complete()) {
    out.report = cache->report();
    out.report.info.path = path;
  } else {
    const std::int64_t skip = cache->frames() > 0 ? cache->cached_frames().back().sample_index : -1;
    out.report = detail::encode_video_frames(
        path, vqgan, sampling, frames_per_batch, skip,
        [&](std::span<const detail::EncodedFrame> frames, std::span<const std::int32_t> codes) {
          for (std::size_t f = 0; f < frames.size(); ++f) {
            cache->append({frames[f].sample_index, frames[f].location},
                          codes.subspan(f * static_cast<std::size_t>(config.tokens_per_frame()),
                                        static_cast<std::size_t>(config.tokens_per_frame())));
          }
        });
    cache->mark_complete(out.report);
  }
  out.codes.codes_per_frame = config.tokens_per_frame();
  out.codes.vocabulary.codebook_size = static_cast<std::int32_t>(config.num_embeddings);
  out.codes.codes = cache->codes();
  for (const auto& frame : cache->cached_frames()) out.frames.push_back(frame.location);
  return result;
}

}  // namespace lwm
