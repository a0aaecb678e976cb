// The needle training-data generator: one needle at the asked depth, lengths in range, prompts
// identical to what a Session renders for a book, loss only on the answer, determinism, errors.
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "lwm/chat_template.h"
#include "lwm/error.h"
#include "lwm/train/data.h"
#include "lwm/train/needle_data.h"
#include "test_support.h"

namespace lwm::train {
namespace {

// A tokenizer trained once per process on the sample story.
std::shared_ptr<const Tokenizer> tokenizer() {
  static test::TempDir* dir = new test::TempDir();
  static std::shared_ptr<const Tokenizer> t = [] {
    const auto model = dir->path() / "t.model";
    train_tokenizer({test::sample_text_file()}, model, {.vocab_size = 400});
    return std::make_shared<const Tokenizer>(model);
  }();
  return t;
}

// Fresh random prose: sentences of 3–8 words, each ending with a full stop.
std::string random_haystack(std::mt19937_64& rng, int sentences) {
  static const char* words[] = {"the",  "keeper", "light", "sea",  "stone", "walked",
                                "over", "night",  "ship",  "bell", "cold",  "storm"};
  std::string text;
  for (int s = 0; s < sentences; ++s) {
    const int n = 3 + static_cast<int>(rng() % 6);
    for (int w = 0; w < n; ++w) {
      if (w > 0) text += ' ';
      text += words[rng() % std::size(words)];
    }
    text += s % 5 == 4 ? ".\n" : ". ";
  }
  return text;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(NeedleData, OneNeedleAtItsDepthAndLengthsInRange) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("LWM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const NeedleExampleGenerator generator({random_haystack(rng, 400), random_haystack(rng, 30)},
                                         tokenizer(),
                                         {.min_tokens = 200, .max_tokens = 600, .seed = seed});
  const auto& t = *tokenizer();
  for (std::int64_t i = 0; i < 40; ++i) {
    const NeedleExample ex = generator.make(i);
    SCOPED_TRACE("example " + std::to_string(i));
    EXPECT_GE(ex.total_tokens(), 200);
    EXPECT_LE(ex.total_tokens(), 600);
    const std::string needle = "\nThe special magic " + ex.city + " number is: " + ex.number + "\n";
    ASSERT_EQ(count(ex.context, "special magic"), 1u);
    ASSERT_EQ(ex.context.compare(ex.needle_offset, needle.size(), needle), 0);
    ASSERT_EQ(ex.number.size(), 7u);
    EXPECT_GE(ex.number[0], '1');
    EXPECT_EQ(ex.number.find_first_not_of("0123456789"), std::string::npos);
    // Inserted right after a full stop (or at the start), at or before the asked depth and at
    // most one sentence (≤ 8 words and the stop, well under 40 tokens) before it.
    const std::string before = ex.context.substr(0, ex.needle_offset);
    const std::string after = ex.context.substr(ex.needle_offset + needle.size());
    if (!before.empty() && ex.depth < 1.0) {
      EXPECT_EQ(before.back(), '.');
    }
    const auto b = static_cast<double>(t.encode(before).size());
    const auto a = static_cast<double>(t.encode(after).size());
    // Encoded on its own, `before` may gain one token (the dummy prefix before a leading "."),
    // which in a window of a few dozen tokens is more than the 2% slack.
    EXPECT_LE((b - 1.0) / (a + b), ex.depth + 0.02);
    EXPECT_GE(b / (a + b), ex.depth - 40.0 / (a + b));
    EXPECT_EQ(ex.question, "What is the special magic " + ex.city + " number?");
    EXPECT_NE(t.decode(ex.answer_ids).find(ex.number), std::string::npos);
  }
}

TEST(NeedleData, PromptIsTheSessionPromptAndLossCoversOnlyTheAnswer) {
  std::mt19937_64 rng(test::test_seed());
  const NeedleExampleGenerator generator({random_haystack(rng, 200)}, tokenizer(),
                                         {.min_tokens = 100, .max_tokens = 300, .seed = 7});
  const ChatTemplate& document_qa = ChatTemplates::builtin().get("document-qa");
  const ExampleProcessor processor({.fields = "[prompt],answer", .add_bos_token = false},
                                   tokenizer(), tokenizer()->bos_id(), tokenizer()->eos_id());
  for (std::int64_t i = 0; i < 10; ++i) {
    const NeedleExample ex = generator.make(i);
    EXPECT_EQ(ex.prompt, render_prompt(document_qa, *tokenizer(),
                                       {{"context", ex.context}, {"question", ex.question}}));
    ASSERT_EQ(ex.prompt.front(), tokenizer()->bos_id());
    // Through JSON text, as the trainer reads the file.
    const Example e = processor.process(nlohmann::json::parse(to_json(ex).dump()), i);
    const std::size_t p = ex.prompt.size(), a = ex.answer_ids.size();
    ASSERT_EQ(e.tokens.size(), p + a + 1);
    EXPECT_EQ(static_cast<std::int64_t>(e.tokens.size()), ex.total_tokens());
    EXPECT_EQ(e.tokens.back(), tokenizer()->eos_id());
    for (std::size_t k = 0; k < e.tokens.size(); ++k) {
      EXPECT_EQ(e.loss_mask[k], k >= p ? 1 : 0) << k;
      EXPECT_EQ(e.tokens[k], k < p       ? ex.prompt[k]
                             : k < p + a ? ex.answer_ids[k - p]
                                         : tokenizer()->eos_id());
    }
  }
}

TEST(NeedleData, DeterministicPerSeedAndWritesJsonl) {
  std::mt19937_64 rng(test::test_seed());
  const std::string hay = random_haystack(rng, 100);
  const NeedleDataOptions options{.examples = 6, .min_tokens = 250, .max_tokens = 400, .seed = 3};
  const NeedleExampleGenerator a({hay}, tokenizer(), options), b({hay}, tokenizer(), options);
  NeedleDataOptions other = options;
  other.seed = 4;
  const NeedleExampleGenerator c({hay}, tokenizer(), other);
  int differ = 0;
  for (std::int64_t i = 0; i < 6; ++i) {
    EXPECT_EQ(a.make(i).prompt, b.make(i).prompt);
    EXPECT_EQ(a.make(i).number, b.make(i).number);
    differ += a.make(i).number != c.make(i).number;
  }
  EXPECT_GT(differ, 0);

  test::TempDir dir;
  std::ofstream(dir / "hay.txt") << hay;
  const auto model = dir / "t.model";
  train_tokenizer({test::sample_text_file()}, model, {.vocab_size = 400});
  write_needle_data({dir / "hay.txt"}, model, dir / "d.jsonl", options);
  std::ifstream in(dir / "d.jsonl");
  std::string line;
  std::int64_t lines = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j.at("number").get<std::string>(), a.make(lines).number);
    ++lines;
  }
  EXPECT_EQ(lines, 6);
}

TEST(NeedleData, BadInputsAreClearErrors) {
  const auto t = tokenizer();
  EXPECT_EQ(test::capture_error([&] { NeedleExampleGenerator({}, t, {}); }).kind(),
            ErrorKind::invalid_argument);
  EXPECT_NE(std::string(test::capture_error([&] {
                          NeedleExampleGenerator({"a. b."}, t, {.min_tokens = 9, .max_tokens = 3});
                        }).what())
                .find("min-tokens"),
            std::string::npos);
  EXPECT_EQ(test::capture_error([&] { NeedleExampleGenerator({" \n"}, t, {}); }).kind(),
            ErrorKind::invalid_argument);
  // Too short for even the template, question and answer.
  const NeedleExampleGenerator tiny({"The sea. The light."}, t,
                                    {.min_tokens = 5, .max_tokens = 20});
  EXPECT_NE(std::string(test::capture_error([&] { tiny.make(0); }).what()).find("max-tokens"),
            std::string::npos);
  test::TempDir dir;
  EXPECT_EQ(test::capture_error([&] {
              write_needle_data({dir / "missing.txt"}, dir / "t.model", dir / "o.jsonl", {});
            }).kind(),
            ErrorKind::io);
}

}  // namespace
}  // namespace lwm::train
