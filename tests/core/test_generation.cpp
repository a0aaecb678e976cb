// Sampling (spec §2.5); prefill and generation with a small random model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "lwm/chat_template.h"
#include "lwm/error.h"
#include "lwm/generation.h"
#include "lwm/model_maker.h"
#include "test_support.h"
#include "text_test_tokenizer.h"

namespace lwm {
namespace {

using test::capture_error;

std::int32_t argmax(const std::vector<float>& logits) {
  return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

TEST(Sampler, ZeroTemperatureIsArgmax) {
  std::mt19937_64 rng(test::test_seed());
  Sampler sampler(SamplingParams{});
  for (int trial = 0; trial < 50; ++trial) {
    const auto logits = test::random_normal(1000, rng, 3.0f);
    EXPECT_EQ(sampler.sample(logits), argmax(logits));
  }
}

TEST(Sampler, TopKOfOneIsArgmax) {
  std::mt19937_64 rng(test::test_seed());
  Sampler sampler(SamplingParams{.temperature = 1.5f, .top_k = 1, .seed = 7});
  for (int trial = 0; trial < 50; ++trial) {
    const auto logits = test::random_normal(1000, rng, 3.0f);
    EXPECT_EQ(sampler.sample(logits), argmax(logits));
  }
}

TEST(Sampler, TinyTopPIsArgmax) {
  std::mt19937_64 rng(test::test_seed());
  Sampler sampler(SamplingParams{.temperature = 1.0f, .top_p = 1e-6f, .seed = 3});
  for (int trial = 0; trial < 50; ++trial) {
    const auto logits = test::random_normal(500, rng, 3.0f);
    EXPECT_EQ(sampler.sample(logits), argmax(logits));
  }
}

TEST(Sampler, SameSeedGivesSameSequence) {
  std::mt19937_64 rng(test::test_seed());
  const auto logits = test::random_normal(300, rng, 1.0f);
  const SamplingParams params{.temperature = 0.8f, .top_k = 50, .top_p = 0.95f, .seed = 1234};
  Sampler first(params);
  Sampler second(params);
  Sampler other(SamplingParams{.temperature = 0.8f, .top_k = 50, .top_p = 0.95f, .seed = 99});
  std::vector<std::int32_t> a, b, c;
  for (int i = 0; i < 200; ++i) {
    a.push_back(first.sample(logits));
    b.push_back(second.sample(logits));
    c.push_back(other.sample(logits));
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(Sampler, FixedSeedGivesTheSameDrawsOnEveryPlatform) {
  // Pinned values, reproduced independently in Python (splitmix64, 53-bit uniforms, inverse CDF
  // over ids in order): our own generator makes them the same with any standard library.
  const std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.5f, 0.7f, 1.9f, -0.3f, 0.0f};
  Sampler sampler(SamplingParams{.temperature = 1.0f, .seed = 42});
  std::vector<std::int32_t> draws;
  for (int i = 0; i < 12; ++i) draws.push_back(sampler.sample(logits));
  EXPECT_EQ(draws, (std::vector<std::int32_t>{5, 1, 1, 1, 0, 5, 1, 5, 1, 4, 1, 3}));
}

// Softmax(logits / T) restricted to the top-k, then to the smallest nucleus reaching top_p, in
// double precision: the distribution the sampler must follow.
std::vector<double> expected_distribution(const std::vector<float>& logits,
                                          const SamplingParams& params) {
  std::vector<std::size_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](auto a, auto b) { return logits[a] > logits[b]; });
  if (params.top_k > 0 && static_cast<std::size_t>(params.top_k) < order.size()) {
    order.resize(static_cast<std::size_t>(params.top_k));
  }
  std::vector<double> weight(order.size());
  double total = 0.0;
  for (std::size_t i = 0; i < order.size(); ++i) {
    weight[i] = std::exp((logits[order[i]] - logits[order[0]]) / double{params.temperature});
    total += weight[i];
  }
  std::size_t kept = 0;
  double mass = 0.0;
  while (kept < order.size() && mass < params.top_p * total) mass += weight[kept++];
  std::vector<double> probability(logits.size(), 0.0);
  for (std::size_t i = 0; i < kept; ++i) probability[order[i]] = weight[i] / mass;
  return probability;
}

void expect_sampler_follows(const std::vector<float>& logits, const SamplingParams& params) {
  const auto expected = expected_distribution(logits, params);
  Sampler sampler(params);
  constexpr int kDraws = 100000;
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < kDraws; ++i) ++counts[static_cast<std::size_t>(sampler.sample(logits))];

  double chi_square = 0.0;
  int categories = 0;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    if (expected[i] == 0.0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " is outside top-k/top-p but was drawn";
      continue;
    }
    const double mean = expected[i] * kDraws;
    chi_square += (counts[i] - mean) * (counts[i] - mean) / mean;
    ++categories;
  }
  // Chi-square with (categories - 1) degrees of freedom; mean + 8 standard deviations is far
  // beyond any plausible chance deviation yet catches a wrong distribution at once.
  const double dof = std::max(1, categories - 1);
  EXPECT_LT(chi_square, dof + 8.0 * std::sqrt(2.0 * dof) + 10.0)
      << "T=" << params.temperature << " k=" << params.top_k << " p=" << params.top_p;
}

TEST(Sampler, DrawsFollowTheRestrictedSoftmax) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("LWM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const auto logits = test::random_normal(12, rng, 1.5f);
  expect_sampler_follows(logits, {.temperature = 1.0f, .seed = seed});
  expect_sampler_follows(logits, {.temperature = 0.6f, .seed = seed + 1});
  expect_sampler_follows(logits, {.temperature = 2.0f, .top_k = 5, .seed = seed + 2});
  expect_sampler_follows(logits, {.temperature = 0.9f, .top_p = 0.7f, .seed = seed + 3});
  expect_sampler_follows(logits,
                         {.temperature = 1.3f, .top_k = 8, .top_p = 0.85f, .seed = seed + 4});
}

TEST(Sampler, NeverDrawsMaskedLogits) {
  std::vector<float> logits(20, -INFINITY);
  logits[3] = 0.0f;
  logits[11] = 0.5f;
  Sampler sampler(SamplingParams{.temperature = 1.0f, .seed = test::test_seed()});
  for (int i = 0; i < 1000; ++i) {
    const auto token = sampler.sample(logits);
    EXPECT_TRUE(token == 3 || token == 11) << token;
  }
}

TEST(Sampler, RejectsImpossibleParameters) {
  EXPECT_EQ(capture_error([] { Sampler s(SamplingParams{.temperature = -1.0f}); }).kind(),
            ErrorKind::invalid_argument);
  EXPECT_EQ(capture_error([] { Sampler s(SamplingParams{.temperature = NAN}); }).kind(),
            ErrorKind::invalid_argument);
  EXPECT_EQ(capture_error([] { Sampler s(SamplingParams{.top_k = -2}); }).kind(),
            ErrorKind::invalid_argument);
  EXPECT_EQ(capture_error([] { Sampler s(SamplingParams{.top_p = 0.0f}); }).kind(),
            ErrorKind::invalid_argument);
  EXPECT_EQ(capture_error([] { Sampler s(SamplingParams{.top_p = 1.5f}); }).kind(),
            ErrorKind::invalid_argument);
  Sampler sampler(SamplingParams{});
  EXPECT_EQ(capture_error([&] { sampler.sample({}); }).kind(), ErrorKind::invalid_argument);
}

TEST(StopReason, HasReadableNames) {
  EXPECT_STREQ(to_string(StopReason::end_of_sequence), "end of sequence");
  EXPECT_STREQ(to_string(StopReason::max_tokens), "max tokens");
  EXPECT_STREQ(to_string(StopReason::context_full), "context full");
  EXPECT_STREQ(to_string(StopReason::stopped_by_caller), "stopped by caller");
}

// ---------------------------------------------------------------------------------------------
// Prefill and generation with a tiny random model whose vocabulary matches the test tokenizer.

constexpr std::int64_t kMaxSequence = 96;

ModelConfig tiny_config() {
  ModelConfig config = ModelConfig::preset("tiny");
  config.vocab_size = test::kTestVocabSize;
  config.max_sequence_length = kMaxSequence;
  config.convention = WeightConvention::jax;
  config.convention_known = true;
  config.torch_dtype = DType::f32;
  return config;
}

// Made once per run: f32 weights wide enough (init_std) for clearly separated logits, so greedy
// choices do not hinge on rounding differences between chunked and whole computations.
const std::filesystem::path& tiny_model_dir() {
  static test::TempDir dir;
  static const std::filesystem::path model = [] {
    ModelMakerOptions options;
    options.config = tiny_config();
    options.dtype = DType::f32;
    options.seed = 2024;
    options.init_std = 0.25f;
    options.norm_weight_noise = 0.1f;
    options.tokenizer_model = test::test_tokenizer_path();
    make_random_model(dir / "tiny", options);
    return dir / "tiny";
  }();
  return model;
}

const Model& tiny_model() {
  static const std::unique_ptr<Model> model = Model::load(tiny_model_dir());
  return *model;
}

std::vector<std::int32_t> test_prompt() {
  return render_prompt(ChatTemplates::builtin().get("text-chat"), test::test_tokenizer(),
                       {{"question", "Where did the keeper see the distant light?"}});
}

std::vector<float> last_logits_from_scratch(const Model& model,
                                            const std::vector<std::int32_t>& tokens) {
  KVCache cache(model.config(), static_cast<std::int64_t>(tokens.size()));
  std::vector<float> logits;
  model.forward(tokens, cache, LogitsFor::last, &logits);
  return logits;
}

void expect_logits_close(const std::vector<float>& actual, const std::vector<float>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  const std::vector<double> reference(expected.begin(), expected.end());
  const auto closeness = test::compare(actual.data(), reference.data(), actual.size(), 1e-4, 1e-4);
  EXPECT_TRUE(closeness.ok) << "worst index " << closeness.worst_index << ", max abs error "
                            << closeness.max_abs_error;
}

GenerationOptions greedy(std::int64_t max_new_tokens) {
  GenerationOptions options;
  options.max_new_tokens = max_new_tokens;
  options.prefill_chunk = 5;
  options.stop_at_eos = false;
  return options;
}

TEST(Generation, GreedyEqualsArgmaxOfFullRecomputation) {
  const Model& model = tiny_model();
  const Tokenizer& tokenizer = test::test_tokenizer();
  const auto prompt = test_prompt();
  KVCache cache(model.config(), kMaxSequence);
  std::string streamed;
  const auto result = generate(model, tokenizer, cache, prompt, greedy(12),
                               [&](std::int32_t, std::string_view text) {
                                 streamed += text;
                                 return true;
                               });
  ASSERT_EQ(result.tokens.size(), 12u);
  EXPECT_EQ(result.stop_reason, StopReason::max_tokens);
  EXPECT_EQ(result.prompt_tokens, static_cast<std::int64_t>(prompt.size()));

  std::vector<std::int32_t> sequence = prompt;
  for (const auto token : result.tokens) {
    const auto logits = last_logits_from_scratch(model, sequence);
    EXPECT_EQ(token, argmax(logits)) << "after " << sequence.size() << " tokens";
    sequence.push_back(token);
  }
  EXPECT_EQ(result.text, tokenizer.decode(result.tokens));
  EXPECT_EQ(tokenizer.decode(result.tokens).rfind(streamed, 0), 0u);  // streamed is a prefix
  // The last sampled token never ran through the model.
  EXPECT_EQ(cache.size(), static_cast<std::int64_t>(prompt.size() + result.tokens.size() - 1));
  EXPECT_GT(result.prefill_seconds, 0.0);
  EXPECT_GE(result.time_to_first_token_seconds, result.prefill_seconds);
  EXPECT_GT(result.decode_seconds, 0.0);
}

TEST(Generation, SampledGenerationIsReproducible) {
  const Model& model = tiny_model();
  GenerationOptions options = greedy(10);
  options.sampling = {.temperature = 0.9f, .top_k = 40, .top_p = 0.95f, .seed = 77};
  KVCache first(model.config(), kMaxSequence);
  KVCache second(model.config(), kMaxSequence);
  const auto a = generate(model, test::test_tokenizer(), first, test_prompt(), options);
  const auto b = generate(model, test::test_tokenizer(), second, test_prompt(), options);
  EXPECT_EQ(a.tokens, b.tokens);
}

TEST(Prefill, ChunkSizeDoesNotChangeTheLogits) {
  const Model& model = tiny_model();
  const auto prompt = test_prompt();
  const auto expected = last_logits_from_scratch(model, prompt);
  for (const std::int64_t chunk : {1, 3, 7, 1000}) {
    KVCache cache(model.config(), kMaxSequence);
    expect_logits_close(prefill(model, cache, prompt, chunk), expected);
    EXPECT_EQ(cache.size(), static_cast<std::int64_t>(prompt.size()));
  }
}

TEST(Prefill, ReportsProgressAfterEveryChunk) {
  const Model& model = tiny_model();
  const std::vector<std::int32_t> tokens(23, 100);
  KVCache cache(model.config(), kMaxSequence);
  std::vector<Progress> reports;
  prefill(model, cache, tokens, 5, [&](const Progress& progress) {
    reports.push_back(progress);
    return true;
  });
  ASSERT_EQ(reports.size(), 5u);
  const std::vector<std::int64_t> done = {5, 10, 15, 20, 23};
  for (std::size_t i = 0; i < reports.size(); ++i) {
    EXPECT_EQ(reports[i].done, done[i]);
    EXPECT_EQ(reports[i].total, 23);
    EXPECT_GE(reports[i].elapsed_seconds, i == 0 ? 0.0 : reports[i - 1].elapsed_seconds);
  }
  EXPECT_EQ(reports.back().eta_seconds(), 0.0);
}

TEST(Prefill, CancellationThrowsAndLeavesTheCacheAsItWas) {
  const Model& model = tiny_model();
  const auto prompt = test_prompt();
  ASSERT_GT(prompt.size(), 8u);
  const std::span<const std::int32_t> head(prompt.data(), 4);
  const std::span<const std::int32_t> rest(prompt.data() + 4, prompt.size() - 4);
  KVCache cache(model.config(), kMaxSequence);
  prefill(model, cache, head, 4);

  int calls = 0;
  const Error error = capture_error(
      [&] { prefill(model, cache, rest, 2, [&](const Progress&) { return ++calls < 2; }); });
  EXPECT_EQ(error.kind(), ErrorKind::cancelled);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(cache.size(), 4);

  // The cache is still good: finishing the prompt now matches a prefill from scratch.
  expect_logits_close(prefill(model, cache, rest, 3), last_logits_from_scratch(model, prompt));
}

TEST(Generation, CancelledPrefillPropagatesFromGenerate) {
  const Model& model = tiny_model();
  KVCache cache(model.config(), kMaxSequence);
  const Error error = capture_error([&] {
    generate(model, test::test_tokenizer(), cache, test_prompt(), greedy(5), {},
             [](const Progress&) { return false; });
  });
  EXPECT_EQ(error.kind(), ErrorKind::cancelled);
  EXPECT_EQ(cache.size(), 0);
}

TEST(Generation, StopsWhenTheCallerSaysSo) {
  const Model& model = tiny_model();
  KVCache cache(model.config(), kMaxSequence);
  int seen = 0;
  const auto result = generate(model, test::test_tokenizer(), cache, test_prompt(), greedy(20),
                               [&](std::int32_t, std::string_view) { return ++seen < 3; });
  EXPECT_EQ(result.stop_reason, StopReason::stopped_by_caller);
  EXPECT_EQ(result.tokens.size(), 3u);
}

TEST(Generation, HonoursMaxNewTokens) {
  const Model& model = tiny_model();
  for (const std::int64_t limit : {0, 1, 4}) {
    KVCache cache(model.config(), kMaxSequence);
    const auto result =
        generate(model, test::test_tokenizer(), cache, test_prompt(), greedy(limit));
    EXPECT_EQ(static_cast<std::int64_t>(result.tokens.size()), limit);
    EXPECT_EQ(result.stop_reason, StopReason::max_tokens);
  }
}

TEST(Generation, StopsWhenTheCacheIsFull) {
  const Model& model = tiny_model();
  const auto prompt = test_prompt();
  const auto capacity = static_cast<std::int64_t>(prompt.size()) + 3;
  KVCache cache(model.config(), capacity);
  const auto result = generate(model, test::test_tokenizer(), cache, prompt, greedy(50));
  EXPECT_EQ(result.stop_reason, StopReason::context_full);
  // Three tokens ran through the model after the prompt; a fourth was sampled from the last logits.
  EXPECT_EQ(result.tokens.size(), 4u);
  EXPECT_EQ(cache.size(), capacity);
}

TEST(Generation, StopsAtTheModelsContextLength) {
  const Model& model = tiny_model();
  KVCache cache(model.config(), kMaxSequence + 50);  // room beyond what the model supports
  const auto result = generate(model, test::test_tokenizer(), cache, test_prompt(), greedy(500));
  EXPECT_EQ(result.stop_reason, StopReason::context_full);
  EXPECT_EQ(cache.size(), kMaxSequence);
}

TEST(Generation, StopsAtEndOfSequence) {
  // A copy of the tiny model whose EOS id is a token greedy decoding reaches after a few steps.
  const Model& model = tiny_model();
  KVCache cache(model.config(), kMaxSequence);
  const auto free_run = generate(model, test::test_tokenizer(), cache, test_prompt(), greedy(8));
  std::size_t stop = 1;
  while (stop < free_run.tokens.size() &&
         std::find(free_run.tokens.begin(),
                   free_run.tokens.begin() + static_cast<std::ptrdiff_t>(stop),
                   free_run.tokens[stop]) !=
             free_run.tokens.begin() + static_cast<std::ptrdiff_t>(stop)) {
    ++stop;
  }
  ASSERT_LT(stop, free_run.tokens.size()) << "greedy run repeats a single token";

  test::TempDir dir;
  std::filesystem::copy(tiny_model_dir(), dir / "eos", std::filesystem::copy_options::recursive);
  ModelConfig config = model.config();
  config.eos_token_id = free_run.tokens[stop];
  std::filesystem::remove(dir / "eos" / "config.json");
  std::ofstream(dir / "eos" / "config.json") << config.to_json().dump(2);
  const auto eos_model = Model::load(dir / "eos");

  KVCache eos_cache(eos_model->config(), kMaxSequence);
  GenerationOptions options = greedy(8);
  options.stop_at_eos = true;
  const auto result =
      generate(*eos_model, test::test_tokenizer(), eos_cache, test_prompt(), options);
  EXPECT_EQ(result.stop_reason, StopReason::end_of_sequence);
  EXPECT_EQ(result.tokens,
            std::vector<std::int32_t>(free_run.tokens.begin(),
                                      free_run.tokens.begin() + static_cast<std::ptrdiff_t>(stop)));
}

TEST(Prefill, RefusesAContextTooLongForTheModel) {
  const Model& model = tiny_model();
  KVCache cache(model.config(), kMaxSequence + 50);
  const std::vector<std::int32_t> tokens(kMaxSequence + 1, 100);
  const Error error = capture_error([&] { prefill(model, cache, tokens, 16); });
  EXPECT_EQ(error.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(error.what()).find("too long"), std::string::npos) << error.what();
  EXPECT_NE(std::string(error.what()).find(std::to_string(kMaxSequence)), std::string::npos);
  EXPECT_EQ(cache.size(), 0);
}

TEST(Prefill, RefusesAPromptLargerThanTheCache) {
  const Model& model = tiny_model();
  KVCache cache(model.config(), 10);
  const std::vector<std::int32_t> tokens(11, 100);
  const Error error = capture_error([&] { prefill(model, cache, tokens, 4); });
  EXPECT_EQ(error.kind(), ErrorKind::out_of_memory);
  EXPECT_NE(std::string(error.what()).find("11"), std::string::npos) << error.what();
  EXPECT_NE(std::string(error.what()).find("10"), std::string::npos) << error.what();
  EXPECT_EQ(cache.size(), 0);
}

TEST(Prefill, RefusesBadArguments) {
  const Model& model = tiny_model();
  KVCache cache(model.config(), kMaxSequence);
  const std::vector<std::int32_t> out_of_vocabulary = {
      5, static_cast<std::int32_t>(test::kTestVocabSize)};
  EXPECT_EQ(capture_error([&] { prefill(model, cache, out_of_vocabulary, 4); }).kind(),
            ErrorKind::invalid_argument);
  EXPECT_EQ(capture_error([&] { prefill(model, cache, {}, 4); }).kind(),
            ErrorKind::invalid_argument);
  const std::vector<std::int32_t> tokens = {5, 6};
  EXPECT_EQ(capture_error([&] { prefill(model, cache, tokens, 0); }).kind(),
            ErrorKind::invalid_argument);
  EXPECT_EQ(cache.size(), 0);
}

}  // namespace
}  // namespace lwm
