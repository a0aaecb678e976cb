// AdamW, clipping, schedules and gradient accumulation; JSONL reading, LWM's field syntax,
// vision fields, masked and naive packing with their loss weights, and exact data resume.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <numbers>
#include <set>

#include "../core/text_test_tokenizer.h"
#include "lwm/train/data.h"
#include "lwm/train/optimizer.h"
#include "lwm/train/packing.h"
#include "lwm/train/trainer.h"
#include "test_support.h"

namespace lwm::train {
namespace {

TEST(Optimizer, AdamWMatchesHandComputedSteps) {
  std::vector<float> p{1.0f, -2.0f, 0.5f};
  const std::vector<float> g1{0.5f, -0.25f, 0.0f};
  AdamW adamw(3, {.beta1 = 0.9, .beta2 = 0.95, .epsilon = 1e-8, .weight_decay = 0.1});
  adamw.step(p, g1, 0.1);
  // Step 1: bias-corrected m̂ = g, v̂ = g², so the update is g/(|g|+ε) ≈ sign(g), plus wd·p.
  EXPECT_NEAR(p[0], 1.0 - 0.1 * (1.0 + 0.1 * 1.0), 1e-6);
  EXPECT_NEAR(p[1], -2.0 - 0.1 * (-1.0 + 0.1 * -2.0), 1e-6);
  EXPECT_NEAR(p[2], 0.5 - 0.1 * (0.0 + 0.1 * 0.5), 1e-6);
  // Step 2 against the formula written out in double.
  const std::vector<float> g2{-1.0f, 0.75f, 2.0f};
  const std::vector<double> before(p.begin(), p.end());
  adamw.step(p, g2, 0.05);
  for (int i = 0; i < 3; ++i) {
    const double m = 0.9 * (0.1 * g1[i]) + 0.1 * g2[i];
    const double v = 0.95 * (0.05 * g1[i] * g1[i]) + 0.05 * g2[i] * g2[i];
    const double mh = m / (1 - 0.81), vh = v / (1 - 0.95 * 0.95);
    EXPECT_NEAR(p[i], before[i] - 0.05 * (mh / (std::sqrt(vh) + 1e-8) + 0.1 * before[i]), 1e-6)
        << i;
  }
  EXPECT_EQ(adamw.steps(), 2);
}

TEST(Optimizer, ClipByGlobalNorm) {
  std::vector<float> g{3.0f, 0.0f, 4.0f};
  EXPECT_DOUBLE_EQ(clip_by_global_norm(g, 1.0), 5.0);
  EXPECT_NEAR(g[0], 0.6f, 1e-7);
  EXPECT_NEAR(g[2], 0.8f, 1e-7);
  std::vector<float> small{0.3f, 0.4f};
  EXPECT_NEAR(clip_by_global_norm(small, 1.0), 0.5, 1e-7);
  EXPECT_EQ(small[0], 0.3f);  // under the limit: untouched
}

TEST(Optimizer, WarmupCosineAndConstantSchedules) {
  LearningRateSchedule cosine{ScheduleKind::cosine, 1e-3, 1e-4, 10, 110};
  EXPECT_EQ(cosine.at(0), 0.0);
  EXPECT_NEAR(cosine.at(5), 5e-4, 1e-12);
  EXPECT_NEAR(cosine.at(10), 1e-3, 1e-12);
  EXPECT_NEAR(cosine.at(60), 0.5 * (1e-3 + 1e-4), 1e-12);
  EXPECT_NEAR(cosine.at(35), 1e-4 + 0.9e-3 * 0.5 * (1 + std::cos(std::numbers::pi * 0.25)), 1e-12);
  EXPECT_NEAR(cosine.at(110), 1e-4, 1e-12);
  EXPECT_NEAR(cosine.at(500), 1e-4, 1e-12);
  LearningRateSchedule constant{ScheduleKind::constant, 4e-5, 0.0, 4, 100};
  EXPECT_NEAR(constant.at(1), 1e-5, 1e-15);
  EXPECT_EQ(constant.at(4), 4e-5);
  EXPECT_EQ(constant.at(99), 4e-5);
  EXPECT_THROW(parse_schedule("linear"), Error);
}

Batch random_batch(std::mt19937_64& rng, std::int64_t rows, std::int64_t length,
                   std::int64_t vocab) {
  Batch b;
  b.rows = rows;
  b.length = length;
  for (std::int64_t i = 0; i < rows * length; ++i) {
    b.inputs.push_back(static_cast<std::int32_t>(rng() % vocab));
    b.targets.push_back(static_cast<std::int32_t>(rng() % vocab));
    b.loss_weights.push_back(static_cast<float>(rng() % 5) / 10.0f);
  }
  return b;
}

TEST(Optimizer, AccumulatingMicroBatchesEqualsOneBigBatch) {
  std::mt19937_64 rng(test::test_seed());
  ModelConfig c = ModelConfig::preset("tiny");
  c.vocab_size = 37;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.num_layers = 2;
  c.vision_vocab_size = 0;
  TrainableModel a(c), b(c);
  a.initialize(5);
  b.initialize(5);
  const Batch first = random_batch(rng, 2, 7, 37), second = random_batch(rng, 3, 7, 37);
  Batch merged = first;
  merged.rows += second.rows;
  merged.inputs.insert(merged.inputs.end(), second.inputs.begin(), second.inputs.end());
  merged.targets.insert(merged.targets.end(), second.targets.begin(), second.targets.end());
  merged.loss_weights.insert(merged.loss_weights.end(), second.loss_weights.begin(),
                             second.loss_weights.end());
  for (float& w : merged.loss_weights) w *= 0.5f;  // the mean of two micro-batch losses
  AdamW oa(a.parameters().size(), {}), ob(b.parameters().size(), {});
  const auto [loss_a, norm_a] = optimizer_step(a, oa, {first, second}, 1e-3, 1.0);
  const auto [loss_b, norm_b] = optimizer_step(b, ob, {merged}, 1e-3, 1.0);
  EXPECT_NEAR(loss_a, loss_b, 1e-5 * std::abs(loss_b));
  EXPECT_NEAR(norm_a, norm_b, 1e-5 * norm_b);
  for (std::size_t i = 0; i < a.parameters().size(); ++i) {
    ASSERT_NEAR(a.parameters()[i], b.parameters()[i], 2e-6) << i;
  }
}

class DataFiles : public ::testing::Test {
 protected:
  std::filesystem::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return dir_ / name;
  }
  test::TempDir dir_;
};

TEST_F(DataFiles, ReaderSkipsBadLinesWrapsAndSeeksExactly) {
  const auto path = write("d.jsonl", "{\"a\": 1}\n\nnot json\n{\"a\": 4}\r\n{\"a\": 5}");
  JsonlReader reader(path);
  std::vector<std::int64_t> seen;
  for (int i = 0; i < 3; ++i) seen.push_back(reader.next().index);
  EXPECT_EQ(seen, (std::vector<std::int64_t>{0, 3, 4}));
  const JsonlReader::Position at = reader.position();
  const auto wrapped = reader.next();  // wraps to the start: a new epoch
  EXPECT_EQ(wrapped.index, 0);
  EXPECT_EQ(wrapped.value["a"], 1);
  EXPECT_EQ(reader.position().epoch, 1);
  const auto after = reader.next();
  reader.seek(at);
  EXPECT_EQ(reader.next().value, wrapped.value);
  EXPECT_EQ(reader.next().value, after.value);
  const auto empty = write("e.jsonl", "\n\nnope\n");
  JsonlReader bad(empty);
  EXPECT_EQ(test::capture_error([&] { bad.next(); }).kind(), ErrorKind::file_format);
}

TEST(Fields, TextSyntaxLossMasksAndSpecialTokens) {
  const nlohmann::json ex = {{"question", {5, 6}}, {"answer", {7}}, {"extra", {9, 10}}};
  const ExampleProcessor p({.fields = "[question],answer"}, nullptr, 1, 2);
  const Example e = p.process(ex, 0);
  EXPECT_EQ(e.tokens, (std::vector<std::int32_t>{1, 5, 6, 7, 2}));
  EXPECT_EQ(e.loss_mask, (std::vector<std::uint8_t>{0, 0, 0, 1, 1}));
  EXPECT_EQ(e.vision_mask, (std::vector<std::uint8_t>(5, 0)));
  const ExampleProcessor joined(
      {.fields = "[question+extra],<|eos|>,answer", .add_bos_token = false}, nullptr, 1, 2);
  const Example j = joined.process(ex, 0);
  EXPECT_EQ(j.tokens, (std::vector<std::int32_t>{5, 6, 9, 10, 2, 7, 2}));
  EXPECT_EQ(j.loss_mask, (std::vector<std::uint8_t>{0, 0, 0, 0, 1, 1, 1}));
  const ExampleProcessor text({.fields = "answer"}, nullptr, 1, 2);
  EXPECT_NE(std::string(test::capture_error([&] {
                          text.process({{"answer", "hello"}}, 3);
                        }).what())
                .find("tokenizer"),
            std::string::npos);
  EXPECT_NE(std::string(test::capture_error([&] {
                          p.process({{"answer", {1}}}, 3);
                        }).what())
                .find("'question'"),
            std::string::npos);
}

TEST(Fields, TextFieldsAreTokenizedJoinedAndPrepended) {
  const auto tokenizer = std::make_shared<Tokenizer>(test::test_tokenizer_path());
  const nlohmann::json ex = {
      {"title", "The storm"}, {"question", "Who climbed the stairs?"}, {"answer", "the keeper"}};
  FieldFormat f{.fields = "[title+question],answer"};
  f.prepend_text = "Q: ";
  const Example e = ExampleProcessor(f, tokenizer, 1, 2).process(ex, 0);
  std::vector<std::int32_t> expected{1};
  const auto prompt = tokenizer->encode("Q: The storm Who climbed the stairs?");
  const auto answer = tokenizer->encode("the keeper");
  expected.insert(expected.end(), prompt.begin(), prompt.end());
  expected.insert(expected.end(), answer.begin(), answer.end());
  expected.push_back(2);
  EXPECT_EQ(e.tokens, expected);
  std::vector<std::uint8_t> loss(1 + prompt.size(), 0);
  loss.insert(loss.end(), answer.size() + 1, 1);
  EXPECT_EQ(e.loss_mask, loss);
}

TEST(Fields, VisionFieldsUseTheTrainingLayoutAndAlternatives) {
  std::vector<int> codes(12);
  for (int i = 0; i < 12; ++i) codes[i] = 100 + i;
  const nlohmann::json ex = {
      {"vision", codes}, {"caption", {7, 8}}, {"fields", {"[vision],caption", "[caption],vision"}}};
  FieldFormat f{.fields_from_example = "fields", .fields_index = 0};
  f.tokens_per_frame = 4;
  f.max_frames = 2;  // frames int(linspace(0, 2, 2)) = 0 and 2
  const Example e = ExampleProcessor(f, nullptr, 1, 2).process(ex, 0);
  EXPECT_EQ(e.tokens, (std::vector<std::int32_t>{1, 100, 101, 102, 103, 8192, 108, 109, 110, 111,
                                                 8193, 7, 8, 2}));
  EXPECT_EQ(e.vision_mask, (std::vector<std::uint8_t>{0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0}));
  EXPECT_EQ(e.loss_mask, (std::vector<std::uint8_t>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1}));
  // Random alternatives are a function of the line index.
  f.fields_index = -1;
  const ExampleProcessor random(f, nullptr, 1, 2);
  std::set<std::int32_t> seconds;
  for (int line = 0; line < 16; ++line) {
    EXPECT_EQ(random.process(ex, line).tokens, random.process(ex, line).tokens);
    seconds.insert(random.process(ex, line).tokens[1]);
  }
  EXPECT_EQ(seconds.size(), 2u);  // both orders occur
  EXPECT_THROW(
      ExampleProcessor(f, nullptr, 1, 2).process({{"vision", {1, 2, 3}}, {"fields", "vision"}}, 0),
      Error);
}

// Examples with vision targets for the packing tests: a copy task whose second half is vision.
class VisionishSource final : public ExampleSource {
 public:
  Example next() override {
    Example e = inner_.next();
    for (std::size_t i = e.tokens.size() / 2; i + 1 < e.tokens.size(); ++i) e.vision_mask[i] = 1;
    return e;
  }
  nlohmann::json state() const override { return inner_.state(); }
  void restore(const nlohmann::json& s) override { inner_.restore(s); }

 private:
  CopyTaskSource inner_{CopyTask{.min_length = 2, .max_length = 9, .seed = 3}};
};

TEST(Packing, MaskedPackingSegmentsPositionsAndWeights) {
  for (const bool vision : {false, true}) {
    CopyTaskSource text_source(CopyTask{.min_length = 2, .max_length = 9, .seed = 3});
    VisionishSource vision_source;
    ExampleSource& source = vision ? static_cast<ExampleSource&>(vision_source) : text_source;
    Packer packer(source, {PackingMode::masked, 3, 32, vision, 0});
    const Batch b = packer.next();
    std::map<std::pair<std::int64_t, std::int32_t>, double> segment_weight;
    for (std::int64_t t = 0; t < b.tokens(); ++t) {
      const auto i = static_cast<std::size_t>(t);
      const bool first_of_row = t % b.length == 0;
      if (b.segments[i] < 0) {
        EXPECT_EQ(b.loss_weights[i], 0.0f);
        continue;
      }
      if (first_of_row || b.segments[i] != b.segments[i - 1]) {
        EXPECT_EQ(b.positions[i], 0);
        EXPECT_EQ(b.inputs[i], 1);  // each segment starts with its BOS
      } else {
        EXPECT_EQ(b.positions[i], b.positions[i - 1] + 1);
        EXPECT_EQ(b.inputs[i], b.targets[i - 1]);  // targets are the next token of the same example
      }
      segment_weight[{t / b.length, b.segments[i]}] += b.loss_weights[i];
    }
    // Every segment weighs the same, 1/segments (both heads present in vision segments).
    ASSERT_GT(segment_weight.size(), 3u);
    for (const auto& [segment, weight] : segment_weight) {
      EXPECT_NEAR(weight, 1.0 / static_cast<double>(segment_weight.size()), 1e-6);
    }
  }
}

TEST(Packing, NaivePackingIsAStreamWithPerRowLoss) {
  CopyTaskSource source(CopyTask{.min_length = 2, .max_length = 9, .seed = 3});
  Packer packer(source, {PackingMode::naive, 2, 16, false, 0});
  const Batch a = packer.next(), b = packer.next();
  EXPECT_TRUE(a.segments.empty());
  for (std::int64_t t = 0; t + 1 < a.tokens(); ++t) EXPECT_EQ(a.inputs[t + 1], a.targets[t]);
  EXPECT_EQ(b.inputs[0], a.targets.back());  // the stream advances by rows·length
  for (std::int64_t row = 0; row < 2; ++row) {
    double sum = 0;
    for (std::int64_t t = 0; t < 16; ++t) sum += a.loss_weights[row * 16 + t];
    EXPECT_NEAR(sum, 0.5, 1e-6);
    EXPECT_EQ(a.positions[row * 16 + 5], 5);
  }
}

TEST_F(DataFiles, PackersResumeExactlyFromTheirState) {
  std::string lines;
  for (int i = 0; i < 9; ++i) {
    lines += "{\"q\": [" + std::to_string(3 + i) + ", 4, 5], \"a\": [";
    for (int k = 0; k <= i; ++k) lines += std::string(k ? ", " : "") + std::to_string(6 + k);
    lines += "]}\n";
  }
  const auto path = write("d.jsonl", lines);
  auto make_source = [&] {
    std::vector<std::unique_ptr<ExampleSource>> sources;
    sources.push_back(
        std::make_unique<JsonlSource>(path, ExampleProcessor({.fields = "[q],a"}, nullptr, 1, 2)));
    sources.push_back(std::make_unique<CopyTaskSource>(CopyTask{.seed = 9}));
    return MixtureSource(std::move(sources), {2.0, 1.0}, 17);
  };
  for (const PackingMode mode : {PackingMode::masked, PackingMode::naive}) {
    MixtureSource source = make_source();
    Packer packer(source, {mode, 2, 13, false, 0});
    for (int i = 0; i < 5; ++i) packer.next();
    const nlohmann::json state = packer.state();
    const Batch x = packer.next(), y = packer.next();
    MixtureSource again_source = make_source();
    Packer again(again_source, {mode, 2, 13, false, 0});
    again.restore(nlohmann::json::parse(state.dump()));  // through text, as a checkpoint stores it
    const Batch x2 = again.next(), y2 = again.next();
    EXPECT_EQ(x.inputs, x2.inputs);
    EXPECT_EQ(x.targets, x2.targets);
    EXPECT_EQ(x.loss_weights, x2.loss_weights);
    EXPECT_EQ(y.inputs, y2.inputs);
    EXPECT_EQ(y.segments, y2.segments);
  }
}

}  // namespace
}  // namespace lwm::train
