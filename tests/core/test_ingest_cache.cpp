// Resumable ingest (lwm/ingest_cache.h) and session snapshots (Session::save/restore): SHA-256
// against published vectors and Python's hashlib, cache files cut at random bytes or corrupted
// keep exactly their intact frames, a cancelled tokenization resumes without re-encoding, and a
// restored session answers as the one that was saved.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "lwm/generation.h"
#include "lwm/ingest_cache.h"
#include "lwm/model.h"
#include "lwm/model_maker.h"
#include "lwm/session.h"
#include "lwm/video_tokens.h"
#include "sha256.h"
#include "test_support.h"
#include "text_test_tokenizer.h"

namespace lwm {
namespace {

using test::capture_error;
using test::test_tokenizer;

std::string read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

TEST(Sha256, PublishedVectors) {
  // FIPS 180-4 examples.
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1'000'000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, FilesAgreeWithPythonHashlib) {
  if (!std::filesystem::exists(test::test_python())) GTEST_SKIP() << "no test python";
  std::mt19937_64 rng(test::test_seed());
  test::TempDir dir;
  for (const std::size_t size : {std::size_t{0}, std::size_t{55}, std::size_t{56}, std::size_t{64},
                                 std::size_t{1} << 20, (std::size_t{1} << 20) + 1 + rng() % 5000}) {
    std::string bytes(size, '\0');
    for (auto& byte : bytes) byte = static_cast<char>(rng());
    const auto file = dir / "data.bin";
    write_bytes(file, bytes);
    const auto python =
        test::run_command("'" + test::test_python().string() +
                          "' -c \"import hashlib,sys; "
                          "print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())\" '" +
                          file.string() + "'");
    ASSERT_EQ(python.exit_code, 0) << python.output;
    EXPECT_EQ(file_sha256(file) + "\n", python.output) << size << " bytes";
  }
  EXPECT_EQ(capture_error([&] { file_sha256(dir / "missing"); }).kind(), ErrorKind::io);
}

constexpr std::int64_t kCodesPerFrame = 16;
constexpr std::int32_t kCodebook = 50;

VideoCacheKey test_key(const std::string& content) {
  return {sha256_hex(content), "uniform:8@32", "test-vqgan"};
}

std::vector<std::int32_t> random_codes(std::mt19937_64& rng) {
  std::vector<std::int32_t> codes(kCodesPerFrame);
  for (auto& code : codes) code = static_cast<std::int32_t>(rng() % kCodebook);
  return codes;
}

TEST(VideoCodeCache, KeepsExactlyTheIntactFramesOfAFileCutAnywhere) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE("seed " + std::to_string(test::test_seed()));
  test::TempDir dir;
  const VideoCacheKey key = test_key("video bytes");
  const std::int64_t frames = 6;
  std::vector<std::int32_t> all_codes;
  std::vector<std::size_t> record_ends;  // file size after each record
  {
    auto cache = VideoCodeCache::open(dir.path(), key, kCodesPerFrame, kCodebook);
    EXPECT_EQ(cache->frames(), 0);
    record_ends.push_back(std::filesystem::file_size(cache->path()));  // the header alone
    for (std::int64_t f = 0; f < frames; ++f) {
      const auto codes = random_codes(rng);
      cache->append({2 * f, {0.5 * static_cast<double>(f), 3 * f}}, codes);
      all_codes.insert(all_codes.end(), codes.begin(), codes.end());
      record_ends.push_back(std::filesystem::file_size(cache->path()));
    }
  }
  const auto path = VideoCodeCache::open(dir.path(), key, kCodesPerFrame, kCodebook)->path();
  const std::string whole = read_bytes(path);
  ASSERT_EQ(whole.size(), record_ends.back());

  for (int trial = 0; trial < 40; ++trial) {
    const std::size_t cut = rng() % (whole.size() + 1);
    write_bytes(path, whole.substr(0, cut));
    std::int64_t expected = 0;
    for (std::size_t r = 1; r < record_ends.size(); ++r) {
      if (record_ends[r] <= cut) expected = static_cast<std::int64_t>(r);
    }
    SCOPED_TRACE("cut at byte " + std::to_string(cut));
    auto cache = VideoCodeCache::open(dir.path(), key, kCodesPerFrame, kCodebook);
    ASSERT_EQ(cache->frames(), expected);
    EXPECT_FALSE(cache->complete());
    EXPECT_EQ(cache->codes(),
              std::vector<std::int32_t>(all_codes.begin(),
                                        all_codes.begin() + expected * kCodesPerFrame));
    for (std::int64_t f = 0; f < expected; ++f) {
      EXPECT_EQ(cache->cached_frames()[static_cast<std::size_t>(f)].sample_index, 2 * f);
      EXPECT_EQ(cache->cached_frames()[static_cast<std::size_t>(f)].location.frame, 3 * f);
    }
    // The torn tail is gone from the file, and appending goes on from the last intact frame.
    EXPECT_EQ(
        std::filesystem::file_size(path),
        cut < record_ends[0] ? record_ends[0] : record_ends[static_cast<std::size_t>(expected)]);
    cache->append({100, {9.0, 99}}, random_codes(rng));
    cache.reset();
    EXPECT_EQ(VideoCodeCache::open(dir.path(), key, kCodesPerFrame, kCodebook)->frames(),
              expected + 1);
  }

  for (int trial = 0; trial < 20; ++trial) {
    std::string flipped = whole;
    const std::size_t at = rng() % flipped.size();
    flipped[at] = static_cast<char>(flipped[at] ^ (1 + rng() % 255));
    write_bytes(path, flipped);
    std::int64_t expected = 0;  // every record that ends before the flipped byte
    for (std::size_t r = 1; r < record_ends.size(); ++r) {
      if (record_ends[r] <= at) expected = static_cast<std::int64_t>(r);
    }
    SCOPED_TRACE("flipped byte " + std::to_string(at));
    EXPECT_EQ(VideoCodeCache::open(dir.path(), key, kCodesPerFrame, kCodebook)->frames(),
              at < record_ends[0] ? 0 : expected);
  }
}

TEST(VideoCodeCache, CompleteMarkerKeysAndBadInput) {
  std::mt19937_64 rng(test::test_seed());
  test::TempDir dir;
  const VideoCacheKey key = test_key("a");
  {
    auto cache = VideoCodeCache::open(dir.path(), key, kCodesPerFrame, kCodebook);
    cache->append({0, {0.0, 0}}, random_codes(rng));
    FrameSamplingReport report;
    report.samples_planned = 2;
    report.frames_in_video = 40;
    report.warnings = {"sample 1 could not be decoded"};
    cache->mark_complete(report);
    EXPECT_THROW(cache->append({1, {1.0, 1}}, random_codes(rng)), Error);
  }
  const auto cache = VideoCodeCache::open(dir.path(), key, kCodesPerFrame, kCodebook);
  EXPECT_TRUE(cache->complete());
  EXPECT_EQ(cache->report().samples_planned, 2);
  EXPECT_EQ(cache->report().frames_in_video, 40);
  EXPECT_EQ(cache->report().warnings.size(), 1u);
  // Another source, sampling or VQGAN is another file.
  EXPECT_EQ(VideoCodeCache::open(dir.path(), test_key("b"), kCodesPerFrame, kCodebook)->frames(),
            0);
  VideoCacheKey other = key;
  other.sampling = "uniform:9@32";
  EXPECT_NE(other.digest(), key.digest());
  // Out-of-order frames and wrong code counts are refused.
  auto fresh = VideoCodeCache::open(dir.path(), test_key("c"), kCodesPerFrame, kCodebook);
  fresh->append({5, {0.0, 5}}, random_codes(rng));
  EXPECT_THROW(fresh->append({5, {0.0, 5}}, random_codes(rng)), Error);
  EXPECT_THROW(fresh->append({6, {0.0, 6}}, std::vector<std::int32_t>(3, 0)), Error);
  // A cache directory that cannot be created.
  write_bytes(dir / "file", "x");
  EXPECT_EQ(capture_error([&] {
              VideoCodeCache::open(dir / "file" / "sub", key, kCodesPerFrame, kCodebook);
            }).kind(),
            ErrorKind::io);
}

TEST(VideoCodeCache, CancelledTokenizationResumesFromTheCachedFrames) {
  if (!video_support_available()) GTEST_SKIP() << "built without FFmpeg";
  if (!test::have_ffmpeg()) GTEST_SKIP() << "no ffmpeg CLI";
  test::TempDir dir;
  const auto clip = dir / "clip.mkv";
  const auto written = test::write_lavfi_video(clip, "testsrc2=size=96x64:rate=8", 3, "-c:v ffv1");
  ASSERT_EQ(written.exit_code, 0) << written.output;
  VqganMakerOptions maker;
  maker.config = VqganConfig::preset("tiny");
  maker.seed = test::test_seed();
  make_random_vqgan(dir / "model", maker);
  const auto vqgan = Vqgan::load(dir / "model");
  FrameSamplingOptions sampling;
  sampling.max_frames = 7;
  const VideoTokens expected = tokenize_video(clip, *vqgan, sampling, 2);
  ASSERT_EQ(expected.frames.size(), 7u);

  const auto cache_dir = dir / "cache";
  FrameSamplingOptions cancelling = sampling;
  cancelling.progress = [](const Progress& progress) { return progress.done < 5; };
  EXPECT_EQ(capture_error([&] {
              tokenize_video_cached(clip, *vqgan, cancelling, cache_dir, {}, 2);
            }).kind(),
            ErrorKind::cancelled);
  const VideoCacheKey key = VideoCacheKey::make(file_sha256(clip), sampling, *vqgan);
  std::int64_t cached = 0;
  {
    const auto cache = VideoCodeCache::open(cache_dir, key, 64, 32);
    cached = cache->frames();
    EXPECT_GE(cached, 2);
    EXPECT_LT(cached, 7);
    EXPECT_EQ(cache->codes(),
              std::vector<std::int32_t>(expected.codes.codes.begin(),
                                        expected.codes.codes.begin() + cached * 64));
  }
  const auto cached_run = tokenize_video_cached(clip, *vqgan, sampling, cache_dir, {}, 2);
  EXPECT_EQ(cached_run.frames_from_cache, cached);
  const VideoTokens& resumed = cached_run.tokens;
  EXPECT_EQ(resumed.codes.codes, expected.codes.codes);
  ASSERT_EQ(resumed.frames.size(), expected.frames.size());
  for (std::size_t f = 0; f < resumed.frames.size(); ++f) {
    EXPECT_EQ(resumed.frames[f].frame, expected.frames[f].frame);
    EXPECT_DOUBLE_EQ(resumed.frames[f].seconds, expected.frames[f].seconds);
  }

  // Cached frames are taken as they are, not encoded again: codes planted for the first two
  // samples of a fresh key come back unchanged, the rest are encoded.
  const auto planted_dir = dir / "planted";
  std::vector<std::int32_t> planted(2 * 64, 31);
  {
    const auto cache = VideoCodeCache::open(planted_dir, key, 64, 32);
    cache->append({0, expected.frames[0]}, std::span(planted).first(64));
    cache->append({1, expected.frames[1]}, std::span(planted).last(64));
  }
  const VideoTokens mixed =
      tokenize_video_cached(clip, *vqgan, sampling, planted_dir, {}, 3).tokens;
  std::vector<std::int32_t> want = planted;
  want.insert(want.end(), expected.codes.codes.begin() + 128, expected.codes.codes.end());
  EXPECT_EQ(mixed.codes.codes, want);
  // A complete cache decodes nothing and answers the same.
  const VideoTokens again =
      tokenize_video_cached(clip, *vqgan, sampling, planted_dir, {}, 3).tokens;
  EXPECT_EQ(again.codes.codes, want);
  EXPECT_EQ(again.report.samples_planned, 7);
  EXPECT_EQ(again.report.frames_decoded, 0);
}

// ---- session snapshots -------------------------------------------------------------------

std::unique_ptr<Model> make_model(const std::filesystem::path& dir, std::uint64_t seed,
                                  std::int64_t layers = 2) {
  ModelMakerOptions options;
  options.config = ModelConfig::preset("tiny");
  options.config.vocab_size = test::kTestVocabSize;
  options.config.max_sequence_length = 400;
  options.config.num_layers = layers;
  options.config.torch_dtype = DType::f32;
  options.dtype = DType::f32;
  options.seed = seed;
  options.init_std = 0.25f;
  make_random_model(dir, options);
  return Model::load(dir);
}

const std::string kBook =
    "The keeper climbed the stairs of the lighthouse every evening and wrote the weather in the "
    "logbook before the ships passed the northern rocks.";

GenerationOptions greedy() {
  GenerationOptions options;
  options.max_new_tokens = 5;
  options.stop_at_eos = false;
  return options;
}

TEST(SessionSnapshot, RestoredSessionAnswersWithoutPrefillingTheSource) {
  test::TempDir dir;
  const auto model = make_model(dir / "model", test::test_seed());
  const auto saved = Session::for_text(*model, test_tokenizer(), kBook);
  saved->ingest();
  const auto snapshot = dir / "chat.kv";
  saved->save(snapshot);
  const auto answer = saved->ask("What did the keeper write?", greedy());

  const auto reopened = Session::for_text(*model, test_tokenizer(), kBook);
  EXPECT_EQ(reopened->restore(snapshot), reopened->plan().source_tokens);
  EXPECT_EQ(reopened->cached_tokens(), reopened->plan().source_tokens);
  const auto again = reopened->ask("What did the keeper write?", greedy());
  EXPECT_GE(again.reused_tokens, reopened->plan().source_tokens);
  EXPECT_EQ(again.generation.tokens, answer.generation.tokens);

  // A session that holds nothing saves and restores nothing.
  const auto empty = dir / "empty.kv";
  Session::for_text(*model, test_tokenizer(), kBook)->save(empty);
  EXPECT_EQ(reopened->restore(empty), 0);
  EXPECT_EQ(reopened->cached_tokens(), 0);

  // Another source keeps only what the two share (the template's start), never foreign tokens.
  const auto other = Session::for_text(*model, test_tokenizer(), "A different book entirely.");
  const std::int64_t kept = other->restore(snapshot);
  EXPECT_LT(kept, other->plan().source_tokens);
  const auto fresh = Session::for_text(*model, test_tokenizer(), "A different book entirely.");
  EXPECT_EQ(other->ask("Why?", greedy()).generation.tokens,
            fresh->ask("Why?", greedy()).generation.tokens);
}

TEST(SessionSnapshot, TruncatedCorruptOrForeignSnapshotsAreRefused) {
  std::mt19937_64 rng(test::test_seed());
  test::TempDir dir;
  const auto model = make_model(dir / "model", 7);
  const auto saved = Session::for_text(*model, test_tokenizer(), kBook);
  saved->ingest();
  const auto snapshot = dir / "chat.kv";
  saved->save(snapshot);
  const std::string whole = read_bytes(snapshot);
  const auto expected = Session::for_text(*model, test_tokenizer(), kBook)->ask("Who?", greedy());

  const auto session = Session::for_text(*model, test_tokenizer(), kBook);
  const auto broken = dir / "broken.kv";
  for (int trial = 0; trial < 12; ++trial) {
    std::string bytes = whole;
    if (trial % 2 == 0) {
      bytes.resize(rng() % whole.size());
    } else {
      const std::size_t at = rng() % bytes.size();
      bytes[at] = static_cast<char>(bytes[at] ^ (1 + rng() % 255));
    }
    write_bytes(broken, bytes);
    const Error error = capture_error([&] { session->restore(broken); });
    EXPECT_EQ(error.kind(), ErrorKind::file_format) << error.what();
    EXPECT_EQ(session->cached_tokens(), 0);
  }
  EXPECT_EQ(session->ask("Who?", greedy()).generation.tokens, expected.generation.tokens);
  EXPECT_EQ(capture_error([&] { session->restore(dir / "missing.kv"); }).kind(), ErrorKind::io);

  const auto bigger = make_model(dir / "bigger", 7, 3);
  const auto foreign = Session::for_text(*bigger, test_tokenizer(), kBook);
  const Error error = capture_error([&] { foreign->restore(snapshot); });
  EXPECT_EQ(error.kind(), ErrorKind::file_format);
  EXPECT_NE(std::string(error.what()).find("another model"), std::string::npos) << error.what();

  // A session whose context is smaller than the snapshot.
  const auto small = Session::for_text(*model, test_tokenizer(), "Short.",
                                       SessionOptions{.context = saved->plan().source_tokens - 1});
  EXPECT_EQ(capture_error([&] { small->restore(snapshot); }).kind(), ErrorKind::out_of_memory);
}

}  // namespace
}  // namespace lwm
