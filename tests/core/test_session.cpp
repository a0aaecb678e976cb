// Sessions (design.md: ingest once, ask many): every answer equals a fresh run over the whole
// prompt, while the source is computed once and reused.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "lwm/chat_template.h"
#include "lwm/devices.h"
#include "lwm/error.h"
#include "lwm/generation.h"
#include "lwm/model.h"
#include "lwm/model_maker.h"
#include "lwm/session.h"
#include "test_support.h"
#include "text_test_tokenizer.h"

namespace lwm {
namespace {

using test::capture_error;
using test::test_tokenizer;

constexpr std::int64_t kMaxSequence = 400;

// f32 weights wide enough (init_std) for clearly separated logits, so greedy choices do not hinge
// on rounding differences between a reused cache and a fresh computation.
std::unique_ptr<Model> make_model(const test::TempDir& dir, std::int64_t vision_vocab) {
  ModelMakerOptions options;
  options.config = ModelConfig::preset("tiny");
  options.config.vocab_size = test::kTestVocabSize;
  options.config.max_sequence_length = kMaxSequence;
  options.config.vision_vocab_size = vision_vocab;
  options.config.convention = WeightConvention::jax;
  options.config.convention_known = true;
  options.config.torch_dtype = DType::f32;
  options.dtype = DType::f32;
  options.seed = 2025;
  options.init_std = 0.25f;
  options.norm_weight_noise = 0.1f;
  make_random_model(dir / "model", options);
  return Model::load(dir / "model");
}

const std::string kBook =
    "The keeper climbed the stairs of the lighthouse every evening. She wrote the weather in the "
    "logbook, trimmed the wick and watched the ships pass the northern rocks until dawn.";

GenerationOptions greedy(std::int64_t tokens) {
  GenerationOptions options;
  options.max_new_tokens = tokens;
  options.stop_at_eos = false;
  options.prefill_chunk = 7;
  return options;
}

// The answer of a fresh cache over the whole rendered prompt.
std::vector<std::int32_t> fresh_answer(const Model& model, const Prompt& prompt,
                                       std::int64_t tokens) {
  KVCache cache(model.config(), kMaxSequence);
  return generate(model, test_tokenizer(), cache, prompt, greedy(tokens)).tokens;
}

Prompt document_prompt(const std::string& question) {
  return render_prompt(ChatTemplates::builtin().get("document-qa"), test_tokenizer(),
                       {{"context", kBook}, {"question", question}}, nullptr);
}

TEST(Session, IngestsOnceAndAnswersEveryQuestionLikeAFreshRun) {
  test::TempDir dir;
  const auto model = make_model(dir, 0);
  const auto session =
      Session::for_text(*model, test_tokenizer(), kBook, SessionOptions{.prefill_chunk = 7});
  const std::int64_t source = session->plan().source_tokens;
  // The source is what every prompt shares: the system text and the whole book.
  const Prompt whole = document_prompt("Who?");
  EXPECT_EQ(whole.common_prefix(session->source_prompt().tokens(), {}), source);
  EXPECT_GE(source, static_cast<std::int64_t>(test_tokenizer().encode(kBook).size()));
  EXPECT_EQ(session->plan().context, std::min(source + 1024, kMaxSequence));

  std::int64_t last_done = 0, reports = 0;
  session->ingest([&](const Progress& p) {
    EXPECT_EQ(p.total, source);
    EXPECT_GT(p.done, last_done);
    last_done = p.done;
    ++reports;
    return true;
  });
  EXPECT_EQ(last_done, source);
  EXPECT_GT(reports, 1);
  EXPECT_EQ(session->cached_tokens(), source);

  for (const std::string question :
       {"What did the keeper write?", "Where did the ships pass?", "What did the keeper write?"}) {
    SCOPED_TRACE(question);
    const AskResult result = session->ask(question, greedy(6));
    EXPECT_GE(result.reused_tokens, source) << "the source must not be computed again";
    EXPECT_EQ(result.generation.tokens, fresh_answer(*model, document_prompt(question), 6));
    EXPECT_EQ(result.generation.prompt_tokens + result.reused_tokens,
              document_prompt(question).size());
  }
  // Asking the same question again reuses its whole prompt except the last token.
  const AskResult again = session->ask("What did the keeper write?", greedy(6));
  EXPECT_EQ(again.reused_tokens, document_prompt("What did the keeper write?").size() - 1);
}

TEST(Session, AskWithoutIngestComputesTheWholePrompt) {
  test::TempDir dir;
  const auto model = make_model(dir, 0);
  const auto session = Session::for_text(*model, test_tokenizer(), kBook);
  const AskResult result = session->ask("Who climbed the stairs?", greedy(4));
  EXPECT_EQ(result.reused_tokens, 0);
  EXPECT_EQ(result.generation.tokens,
            fresh_answer(*model, document_prompt("Who climbed the stairs?"), 4));
}

TEST(Session, CancelledIngestKeepsWholeChunksAndResumes) {
  test::TempDir dir;
  const auto model = make_model(dir, 0);
  const auto session =
      Session::for_text(*model, test_tokenizer(), kBook, SessionOptions{.prefill_chunk = 7});
  int calls = 0;
  const Error error =
      capture_error([&] { session->ingest([&](const Progress&) { return ++calls < 2; }); });
  EXPECT_EQ(error.kind(), ErrorKind::cancelled);
  EXPECT_EQ(session->cached_tokens(), 14);  // the two chunks computed before the cancel
  std::int64_t resumed_total = 0;
  session->ingest([&](const Progress& p) {
    resumed_total = p.total;
    return true;
  });
  EXPECT_EQ(resumed_total, session->plan().source_tokens - 14);
  EXPECT_EQ(session->cached_tokens(), session->plan().source_tokens);
  EXPECT_EQ(session->ask("What did the keeper write?", greedy(5)).generation.tokens,
            fresh_answer(*model, document_prompt("What did the keeper write?"), 5));
}

// Devices: the CPU runs through the same runner a GPU would use; what cannot run where it was
// asked is refused by name, never moved to the CPU.
TEST(Session, RunsWhereItIsToldOrSaysWhyNot) {
  test::TempDir dir;
  const auto model = make_model(dir, 0);
  const auto session = Session::for_text(*model, test_tokenizer(), kBook);
  EXPECT_EQ(session->runner().device(), "cpu");
  EXPECT_EQ(session->runner().kv_precision(), KvPrecision::f32);
  EXPECT_EQ(session->runner().kv_cache_bytes(), session->plan().kv_cache_bytes);

  // A GPU: in a build without CUDA the session says so; with CUDA but no GPU here, the device
  // says why. Either way an error, never a CPU session.
  DeviceInfo gpu;
  gpu.kind = DeviceKind::cuda;
  gpu.index = 0;
  DeviceSelection on_gpu{.kind = DeviceKind::cuda, .ranks = 1, .devices = {gpu}};
  if (list_devices().gpus().empty()) {
    const Error no_gpu = capture_error(
        [&] { Session::for_text(*model, test_tokenizer(), kBook, {.devices = on_gpu}); });
    EXPECT_TRUE(no_gpu.kind() == ErrorKind::unsupported || no_gpu.kind() == ErrorKind::device)
        << no_gpu.what();
    EXPECT_NE(std::string(no_gpu.what()).find("cuda"), std::string::npos) << no_gpu.what();
  }
  // The CPU keeps f32; several ranks wait for sequence-parallel sessions.
  EXPECT_EQ(capture_error([&] {
              Session::for_text(*model, test_tokenizer(), kBook,
                                {.kv_precision = KvPrecision::int8});
            }).kind(),
            ErrorKind::unsupported);
  const DeviceSelection ring = parse_device_list("cpu:2", list_devices());
  EXPECT_EQ(capture_error([&] {
              Session::for_text(*model, test_tokenizer(), kBook, {.devices = ring});
            }).kind(),
            ErrorKind::unsupported);
  EXPECT_EQ(capture_error([&] { check_runnable(ring); }).kind(), ErrorKind::unsupported);
}

TEST(Session, RefusesWhatCannotFit) {
  test::TempDir dir;
  const auto model = make_model(dir, 0);
  std::string long_book;
  for (int i = 0; i < 12; ++i) long_book += kBook + " ";
  const Error too_long =
      capture_error([&] { Session::for_text(*model, test_tokenizer(), long_book); });
  EXPECT_EQ(too_long.kind(), ErrorKind::out_of_memory);
  EXPECT_NE(std::string(too_long.what()).find("context holds 400"), std::string::npos)
      << too_long.what();
  const Error beyond_model = capture_error([&] {
    Session::for_text(*model, test_tokenizer(), kBook, SessionOptions{.context = kMaxSequence + 1});
  });
  EXPECT_EQ(beyond_model.kind(), ErrorKind::invalid_argument);
  const Error video_template = capture_error([&] {
    Session::for_text(*model, test_tokenizer(), kBook,
                      SessionOptions{.template_name = "video-chat"});
  });
  EXPECT_NE(std::string(video_template.what()).find("needs a video"), std::string::npos);
  const Error text_model_video =
      capture_error([&] { Session::for_video(*model, test_tokenizer(), VideoCodes{}); });
  EXPECT_NE(std::string(text_model_video.what()).find("text-only"), std::string::npos);
}

TEST(Session, VideoSessionsReuseTheVideoAcrossQuestions) {
  test::TempDir dir;
  const auto model = make_model(dir, 40);
  VideoCodes video;
  video.codes_per_frame = 16;
  video.vocabulary.codebook_size = 32;
  std::mt19937_64 rng(test::test_seed());
  std::uniform_int_distribution<std::int32_t> code(0, 31);
  for (int i = 0; i < 5 * 16; ++i) video.codes.push_back(code(rng));

  const auto session = Session::for_video(*model, test_tokenizer(), video);
  EXPECT_EQ(session->chat_template().name, "video-chat-media-first");
  EXPECT_GT(session->plan().source_tokens, 5 * 17);
  EXPECT_EQ(session->source_prompt().frames().size(), 5u);
  session->ingest();
  for (const std::string question : {"What colour is the boat?", "How many frames are there?"}) {
    const AskResult result = session->ask(question, greedy(5));
    EXPECT_GE(result.reused_tokens, 5 * 17);
    const Prompt whole = render_prompt(ChatTemplates::builtin().get("video-chat-media-first"),
                                       test_tokenizer(), {{"question", question}}, &video);
    EXPECT_EQ(result.generation.tokens, fresh_answer(*model, whole, 5)) << question;
  }
}

}  // namespace
}  // namespace lwm
