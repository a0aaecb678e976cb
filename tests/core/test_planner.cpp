// The ingest planner (planner.h) and the device list (devices.h): token counts against real
// sessions on fresh random shapes, frame choices against independent references, and the fit and
// suggestion logic on its edges, each suggestion checked by planning what it suggests.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "lwm/devices.h"
#include "lwm/model.h"
#include "lwm/model_maker.h"
#include "lwm/planner.h"
#include "lwm/session.h"
#include "lwm/video.h"
#include "test_support.h"
#include "text_test_tokenizer.h"

namespace lwm {
namespace {

using test::capture_error;
using test::test_tokenizer;

DeviceInfo gpu(int index, std::int64_t free_bytes) {
  DeviceInfo info;
  info.kind = DeviceKind::cuda;
  info.index = index;
  info.name = "test GPU";
  info.total_bytes = free_bytes;
  info.available_bytes = free_bytes;
  return info;
}

DeviceList machine(std::vector<std::int64_t> gpu_free, std::int64_t cpu_free = 64ll << 30) {
  DeviceList list;
  DeviceInfo cpu;
  cpu.name = "test CPU";
  cpu.cores = 8;
  cpu.total_bytes = cpu.available_bytes = cpu_free;
  list.devices.push_back(cpu);
  for (std::size_t i = 0; i < gpu_free.size(); ++i) {
    list.devices.push_back(gpu(static_cast<int>(i), gpu_free[i]));
  }
  list.cuda_built = true;
  list.cuda_status = gpu_free.empty() ? "no CUDA device: test machine" : "test GPUs";
  return list;
}

// LWM-7B-vision shapes with LWM's VQGAN, an hour of 30 fps video, on `devices`.
PlanRequest video_request(const DeviceList& list, const std::string& devices) {
  PlanRequest request;
  request.model = ModelConfig::preset("7b-vision");
  request.model.max_sequence_length = 1 << 20;
  request.vqgan = VqganConfig::preset("lwm");
  request.layout = {.fixed_tokens = 40, .tokens_per_frame = 257};
  request.video = VideoSourceInfo{3600.0, 30.0, 108'000, 1280, 720};
  request.devices = parse_device_list(devices, list);
  request.all_devices = list.devices;
  return request;
}

// ---- token counts against real sessions --------------------------------------------------

TEST(Planner, VideoTokensEqualTheSessionsOnRandomShapes) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE("seed " + std::to_string(test::test_seed()));
  test::TempDir dir;
  for (int trial = 0; trial < 4; ++trial) {
    VqganConfig vqgan = VqganConfig::preset("tiny");
    vqgan.resolution = std::vector<std::int64_t>{16, 32, 48}[rng() % 3];
    vqgan.num_embeddings = 8 + static_cast<std::int64_t>(rng() % 40);
    ModelMakerOptions maker;
    maker.config = ModelConfig::preset("tiny");
    maker.config.vocab_size = test::kTestVocabSize;
    maker.config.vision_vocab_size =
        vqgan.num_embeddings + 2 + static_cast<std::int64_t>(rng() % 5);
    maker.config.max_sequence_length = 2048;
    maker.seed = rng();
    const auto model_dir = dir / ("model" + std::to_string(trial));
    make_random_model(model_dir, maker);
    const auto model = Model::load(model_dir);

    const std::int64_t frames = 1 + static_cast<std::int64_t>(rng() % 6);
    VideoCodes codes;
    codes.codes_per_frame = vqgan.tokens_per_frame();
    codes.vocabulary.codebook_size = static_cast<std::int32_t>(vqgan.num_embeddings);
    for (std::int64_t i = 0; i < frames * codes.codes_per_frame; ++i) {
      codes.codes.push_back(static_cast<std::int32_t>(rng() % vqgan.num_embeddings));
    }
    const std::int64_t reserve = static_cast<std::int64_t>(rng() % 300);
    const auto session = Session::for_video(*model, test_tokenizer(), codes,
                                            SessionOptions{.answer_reserve = reserve});

    PlanRequest request;
    request.model = model->config();
    request.vqgan = vqgan;
    request.layout = video_prompt_layout(test_tokenizer(), vqgan);
    request.video = VideoSourceInfo{10.0, 25.0, 250, 64, 48};
    request.frames = frames;
    request.answer_reserve = reserve;
    const DeviceList list = machine({});
    request.devices = parse_device_list("cpu", list);
    const IngestPlan plan = plan_ingest(request);
    SCOPED_TRACE("trial " + std::to_string(trial));
    ASSERT_EQ(static_cast<std::int64_t>(plan.frames.size()), frames);
    EXPECT_EQ(plan.source_tokens, session->plan().source_tokens);
    EXPECT_EQ(plan.vision_tokens,
              static_cast<std::int64_t>(session->source_prompt().frames().size()) *
                  (codes.codes_per_frame + 1));
    EXPECT_EQ(plan.context, session->plan().context);
    ASSERT_EQ(plan.devices.size(), 1u);
    EXPECT_EQ(plan.devices[0].kv_cache_bytes, session->plan().kv_cache_bytes);
    EXPECT_TRUE(plan.tokens_exact);
  }
}

TEST(Planner, TextTokensEqualTheSessions) {
  std::mt19937_64 rng(test::test_seed());
  test::TempDir dir;
  ModelMakerOptions maker;
  maker.config = ModelConfig::preset("tiny");
  maker.config.vocab_size = test::kTestVocabSize;
  maker.config.max_sequence_length = 4096;
  make_random_model(dir / "model", maker);
  const auto model = Model::load(dir / "model");
  const std::string corpus = test::test_corpus_generated();
  for (int trial = 0; trial < 4; ++trial) {
    const std::size_t begin = rng() % 1000;
    const std::string text = corpus.substr(begin, 1 + rng() % 2000);
    const std::string template_name = trial % 2 ? "document-qa" : "text-chat";
    const auto session = Session::for_text(*model, test_tokenizer(), text,
                                           SessionOptions{.template_name = template_name});
    PlanRequest request;
    request.model = model->config();
    request.text = TextSourceInfo{};
    request.text->source_tokens = text_source_tokens(test_tokenizer(), text, template_name);
    const DeviceList list = machine({});
    request.devices = parse_device_list("cpu", list);
    const IngestPlan plan = plan_ingest(request);
    EXPECT_EQ(plan.source_tokens, session->plan().source_tokens) << template_name;
    EXPECT_EQ(plan.context, session->plan().context);
    EXPECT_EQ(plan.devices[0].kv_cache_bytes, session->plan().kv_cache_bytes);
    EXPECT_TRUE(plan.frames.empty());
  }
}

// ---- frames ------------------------------------------------------------------------------

TEST(Planner, UniformFramesAreLwmsLinspace) {
  const VideoSourceInfo video{12.0, 24.0, 288, 64, 64};
  const auto frames = plan_frames(video, 7, 0.0);
  const auto indices = uniform_frame_indices(288, 7);
  ASSERT_EQ(frames.size(), indices.size());
  for (std::size_t i = 0; i < frames.size(); ++i) {
    EXPECT_EQ(frames[i].frame_index, indices[i]);
    EXPECT_DOUBLE_EQ(frames[i].time_seconds, static_cast<double>(indices[i]) / 24.0);
  }
  EXPECT_EQ(plan_frames(video, 1000, 0.0).size(), 288u);  // never more than the video has
}

TEST(Planner, RateFramesAreTheFramesOnScreenAtEachInstant) {
  std::mt19937_64 rng(test::test_seed());
  for (int trial = 0; trial < 50; ++trial) {
    const double rate = std::vector<double>{24.0, 25.0, 29.97, 30.0, 60.0}[rng() % 5];
    const std::int64_t count = 1 + static_cast<std::int64_t>(rng() % 500);
    const double fps = 0.1 + static_cast<double>(rng() % 400) / 10.0;
    const VideoSourceInfo video{count / rate, rate, count, 32, 32};
    // Reference: frame i is taken when an instant k/fps falls within its display interval.
    std::vector<std::int64_t> expected;
    for (std::int64_t i = 0; i < count; ++i) {
      const double begin = i / rate;
      const double end = (i + 1) / rate;
      const double k = std::ceil(begin * fps - 1e-9);
      if (k / fps < end - 1e-9) expected.push_back(i);
    }
    std::vector<std::int64_t> actual;
    for (const auto& frame : plan_frames(video, 0, fps)) actual.push_back(frame.frame_index);
    EXPECT_EQ(actual, expected) << count << " frames at " << rate << " fps sampled at " << fps;
  }
}

// ---- fit and suggestions -----------------------------------------------------------------

TEST(Planner, FitsExactlyAtTheBoundary) {
  DeviceList list = machine({80ll << 30});
  PlanRequest request = video_request(list, "cuda:0");
  request.kv_precision = KvPrecision::bf16;
  request.frames = 64;
  const IngestPlan probe = plan_ingest(request);
  const std::int64_t needed = probe.devices[0].total_bytes;
  EXPECT_EQ(needed, probe.devices[0].weight_bytes + probe.devices[0].kv_cache_bytes +
                        probe.devices[0].workspace_bytes);
  list.devices[1].available_bytes = needed;
  request.devices = parse_device_list("cuda:0", list);
  EXPECT_TRUE(plan_ingest(request).fits);
  list.devices[1].available_bytes = needed - 1;
  request.devices = parse_device_list("cuda:0", list);
  const IngestPlan tight = plan_ingest(request);
  EXPECT_FALSE(tight.fits);
  EXPECT_NE(tight.problem.find("cuda:0"), std::string::npos) << tight.problem;
  EXPECT_EQ(tight.max_frames, 63) << tight.suggestion;
}

TEST(Planner, SuggestsTheMostFramesThatFitAndTheyDo) {
  std::mt19937_64 rng(test::test_seed());
  for (int trial = 0; trial < 6; ++trial) {
    const std::int64_t free_bytes = (20ll << 30) + static_cast<std::int64_t>(rng() % (40ll << 30));
    const DeviceList list = machine({free_bytes});
    PlanRequest request = video_request(list, "cuda:0");
    request.kv_precision = KvPrecision::int8;  // nothing smaller to suggest
    request.frames = 20'000;
    const IngestPlan plan = plan_ingest(request);
    ASSERT_FALSE(plan.fits);
    ASSERT_GT(plan.max_frames, 0) << plan.suggestion;
    EXPECT_NE(plan.suggestion.find("at most " + std::to_string(plan.max_frames) + " frames"),
              std::string::npos)
        << plan.suggestion;
    request.frames = plan.max_frames;
    EXPECT_TRUE(plan_ingest(request).fits);
    request.frames = plan.max_frames + 1;
    EXPECT_FALSE(plan_ingest(request).fits);
  }
}

TEST(Planner, SuggestsARateThatFits) {
  const DeviceList list = machine({40ll << 30});
  PlanRequest request = video_request(list, "cuda:0");
  request.kv_precision = KvPrecision::int8;
  request.fps = 2.0;
  const IngestPlan plan = plan_ingest(request);
  ASSERT_FALSE(plan.fits);
  ASSERT_GT(plan.max_fps, 0.0) << plan.suggestion;
  EXPECT_LT(plan.max_fps, 2.0);
  request.fps = plan.max_fps;
  const IngestPlan slower = plan_ingest(request);
  EXPECT_TRUE(slower.fits) << slower.problem;
  EXPECT_LE(static_cast<std::int64_t>(slower.frames.size()), plan.max_frames);
  EXPECT_NE(plan.suggestion.find("frames per second"), std::string::npos) << plan.suggestion;
}

TEST(Planner, SuggestsASmallerKvCacheOnlyWhenItFits) {
  const DeviceList list = machine({80ll << 30});
  PlanRequest request = video_request(list, "cuda:0");
  request.frames = 400;  // ~100K tokens: 50 GiB in f32, 25 GiB in bf16 for LWM-7B
  const IngestPlan plan = plan_ingest(request);
  ASSERT_FALSE(plan.fits);
  ASSERT_TRUE(plan.smaller_kv_that_fits.has_value());
  EXPECT_EQ(*plan.smaller_kv_that_fits, KvPrecision::bf16);
  EXPECT_NE(plan.suggestion.find("bf16 KV cache"), std::string::npos) << plan.suggestion;
  request.kv_precision = KvPrecision::bf16;
  EXPECT_TRUE(plan_ingest(request).fits);

  request.kv_precision = KvPrecision::f32;
  request.frames = 2000;  // too much even for 8 bits on one GPU
  const IngestPlan huge = plan_ingest(request);
  EXPECT_FALSE(huge.smaller_kv_that_fits.has_value()) << huge.suggestion;
  request.kv_precision = KvPrecision::int8;
  EXPECT_FALSE(plan_ingest(request).fits);
}

TEST(Planner, SuggestsMoreGpusAndShardsTheSequence) {
  const DeviceList list = machine({80ll << 30, 80ll << 30, 70ll << 30, 80ll << 30});
  PlanRequest request = video_request(list, "cuda:1");
  request.frames = 1500;  // ~386K tokens
  request.kv_precision = KvPrecision::bf16;
  const IngestPlan plan = plan_ingest(request);
  ASSERT_FALSE(plan.fits);
  ASSERT_GT(plan.gpus_that_fit, 1) << plan.suggestion;
  // The suggested set (largest free memory first) fits, one GPU fewer does not.
  request.devices = parse_device_list(
      std::vector<std::string>{"", "", "cuda:0,1", "cuda:0,1,3",
                               "cuda:0,1,2,3"}[static_cast<std::size_t>(plan.gpus_that_fit)],
      list);
  const IngestPlan sharded = plan_ingest(request);
  EXPECT_TRUE(sharded.fits) << sharded.problem;
  EXPECT_NE(plan.suggestion.find(request.devices.to_string()), std::string::npos)
      << plan.suggestion;
  // Weights on every GPU, the KV cache split: every rank holds about context / P rows.
  for (const auto& device : sharded.devices) {
    EXPECT_EQ(device.weight_bytes,
              sharded.devices.back().weight_bytes +
                  (&device == &sharded.devices.front() ? request.vqgan->parameter_count() * 4 : 0));
    EXPECT_LE(device.context_tokens * plan.gpus_that_fit, sharded.context + 4 * plan.gpus_that_fit);
    EXPECT_GE(device.context_tokens * plan.gpus_that_fit, sharded.context);
  }
}

TEST(Planner, ContextBeyondTheModelIsNamedAndFramesAreSuggested) {
  const DeviceList list = machine({80ll << 30});
  PlanRequest request = video_request(list, "cuda:0");
  request.model.max_sequence_length = 32'768;
  request.frames = 200;  // 51K tokens
  const IngestPlan plan = plan_ingest(request);
  ASSERT_FALSE(plan.fits);
  EXPECT_NE(plan.problem.find("32768"), std::string::npos) << plan.problem;
  // Brute force: the most frames whose tokens fit below the model's maximum.
  std::int64_t best = 0;
  for (std::int64_t n = 1; n <= 200; ++n) {
    if (request.layout.fixed_tokens + n * 257 < 32'768) best = n;
  }
  EXPECT_EQ(plan.max_frames, best);
}

TEST(Planner, TextTooLongSuggestsAShorterTextAndEstimatesFromBytes) {
  const DeviceList list = machine({}, 4ll << 30);
  PlanRequest request;
  request.model = ModelConfig::preset("7b");
  request.model.max_sequence_length = 32'768;
  request.model.torch_dtype = DType::bf16;
  request.text = TextSourceInfo{.source_tokens = -1, .bytes = 400'000, .bytes_per_token = 4.0};
  request.layout.fixed_tokens = 30;
  request.devices = parse_device_list("cpu", list);
  const IngestPlan plan = plan_ingest(request);
  EXPECT_FALSE(plan.tokens_exact);
  EXPECT_EQ(plan.source_tokens, 100'030);
  ASSERT_FALSE(plan.fits);
  // 7B bf16 weights alone (13 GB) exceed the 4 GiB: nothing on this machine holds it.
  EXPECT_NE(plan.suggestion.find("Nothing on this machine"), std::string::npos) << plan.suggestion;

  request.devices.devices[0].available_bytes = 20ll << 30;
  const IngestPlan bigger = plan_ingest(request);
  ASSERT_FALSE(bigger.fits);
  EXPECT_NE(bigger.suggestion.find("a text of at most"), std::string::npos) << bigger.suggestion;
}

TEST(Planner, RefusesImpossibleRequests) {
  const DeviceList list = machine({});
  PlanRequest request = video_request(list, "cpu");
  request.vqgan.reset();
  EXPECT_EQ(capture_error([&] { plan_ingest(request); }).kind(), ErrorKind::invalid_argument);
  request = video_request(list, "cpu");
  request.text = TextSourceInfo{};
  EXPECT_EQ(capture_error([&] { plan_ingest(request); }).kind(), ErrorKind::invalid_argument);
  request = video_request(list, "cpu");
  request.frames = 0;
  EXPECT_EQ(capture_error([&] { plan_ingest(request); }).kind(), ErrorKind::invalid_argument);
  request = video_request(list, "cpu");
  request.video->frame_count = 0;
  EXPECT_EQ(capture_error([&] { plan_ingest(request); }).kind(), ErrorKind::invalid_argument);
  request = video_request(list, "cpu");
  request.devices.devices.clear();
  EXPECT_EQ(capture_error([&] { plan_ingest(request); }).kind(), ErrorKind::invalid_argument);
  EXPECT_EQ(capture_error([] { parse_kv_precision("fp8"); }).kind(), ErrorKind::invalid_argument);
}

TEST(Planner, KvBytesPerTokenByPrecision) {
  const ModelConfig config = ModelConfig::preset("7b");
  // LWM-7B: 32 layers × 32 heads × 128 dims × K and V.
  EXPECT_EQ(kv_bytes_per_token(config, KvPrecision::f32), 2 * 32 * 32 * 128 * 4);
  EXPECT_EQ(kv_bytes_per_token(config, KvPrecision::bf16), 2 * 32 * 32 * 128 * 2);
  EXPECT_EQ(kv_bytes_per_token(config, KvPrecision::int8), 2 * 32 * 32 * (128 + 4));
}

// The default throughput reproduces the benchmark it was fitted to (tests/bench/RESULTS.md,
// lwm_bench_cpu run 3: preset 100m, 2,048 tokens in 6.19 s, 8,192 in 31.95 s).
TEST(Planner, DefaultThroughputReproducesTheCpuBenchmark) {
  const DeviceList list = machine({});
  for (const auto& [tokens, seconds] : {std::pair{2048, 6.19}, std::pair{8192, 31.95}}) {
    PlanRequest request;
    request.model = ModelConfig::preset("100m");
    request.text = TextSourceInfo{.source_tokens = tokens};
    request.devices = parse_device_list("cpu", list);
    const IngestPlan plan = plan_ingest(request);
    ASSERT_TRUE(plan.seconds.has_value());
    EXPECT_NEAR(plan.seconds->prefill, seconds, 0.03 * seconds) << tokens;
    EXPECT_EQ(plan.seconds->decoding, 0.0);
  }
  // GPUs without measured numbers: no invented time.
  const DeviceList gpus = machine({80ll << 30});
  PlanRequest request = video_request(gpus, "cuda:0");
  EXPECT_FALSE(plan_ingest(request).seconds.has_value());
  request.devices = parse_device_list("cpu:2", gpus);
  const IngestPlan cpu = plan_ingest(request);
  ASSERT_TRUE(cpu.seconds.has_value());
  EXPECT_GT(cpu.seconds->decoding, 0.0);
  EXPECT_GT(cpu.seconds->tokenizing, 0.0);
}

// ---- devices -----------------------------------------------------------------------------

TEST(Devices, ParsesChoicesAndNamesWhatExists) {
  const DeviceList list = machine({1ll << 30, 2ll << 30});
  const auto both = parse_device_list("cuda:1,0", list);
  EXPECT_EQ(both.kind, DeviceKind::cuda);
  EXPECT_EQ(both.ranks, 2);
  EXPECT_EQ(both.devices[0].index, 1);
  EXPECT_EQ(both.to_string(), "cuda:1,0");
  EXPECT_EQ(parse_device_list("cuda", list).ranks, 2);
  EXPECT_EQ(parse_device_list("cpu:4", list).ranks, 4);
  EXPECT_EQ(parse_device_list("cpu:4", list).to_string(), "cpu:4");
  EXPECT_EQ(parse_device_list("cpu", list).devices[0].name, "test CPU");
  for (const std::string bad : {"cuda:2", "cuda:0,0", "tpu", "cuda:", "cpu:0", "cpu:x", "cuda:a",
                                "cpu:257", "cuda:0,", ""}) {
    const Error error = capture_error([&] { parse_device_list(bad, list); });
    EXPECT_EQ(error.kind(), ErrorKind::invalid_argument) << bad;
    EXPECT_NE(std::string(error.what()).find("cuda:0, cuda:1"), std::string::npos) << error.what();
  }
  const DeviceList none = machine({});
  const Error error = capture_error([&] { parse_device_list("cuda:0", none); });
  EXPECT_NE(std::string(error.what()).find("no CUDA device: test machine"), std::string::npos)
      << error.what();
}

TEST(Devices, ListsTheCpuAndSaysWhyThereIsNoGpu) {
  const DeviceList list = list_devices();
  ASSERT_FALSE(list.devices.empty());
  const DeviceInfo& cpu = list.devices.front();
  EXPECT_EQ(cpu.kind, DeviceKind::cpu);
  EXPECT_EQ(cpu.id(), "cpu");
  EXPECT_GT(cpu.cores, 0);
  EXPECT_GT(cpu.total_bytes, 0);
  EXPECT_GT(cpu.available_bytes, 0);
  EXPECT_LE(cpu.available_bytes, cpu.total_bytes);
  EXPECT_FALSE(list.cuda_status.empty());
  if (list.gpus().empty()) {
    EXPECT_TRUE(list.cuda_status.rfind("no CUDA device: ", 0) == 0 ||
                list.cuda_status.rfind("built without CUDA", 0) == 0)
        << list.cuda_status;
  }
  for (const auto& device : list.gpus()) {
    EXPECT_GT(device.total_bytes, 0) << device.id();
    EXPECT_GE(device.compute_major, 1) << device.id();
  }
}

}  // namespace
}  // namespace lwm
