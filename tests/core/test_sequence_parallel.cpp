// A whole model run sequence-parallel over P in-process ranks (sequence_parallel.h) against the
// same model on one device: chunked prefill through the ring and decode steps through the
// (out, log-sum-exp) merge give the single-device logits, on every rank alike, while each rank
// holds only its shard of the KV cache.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "lwm/communicator.h"
#include "lwm/error.h"
#include "lwm/kv_cache.h"
#include "lwm/model.h"
#include "lwm/model_maker.h"
#include "lwm/sequence_parallel.h"
#include "test_support.h"

namespace lwm {
namespace {

using namespace std::chrono_literals;

// The tiny model of test_model.cpp: GQA (4 query heads over 2 kv heads), two layers, f32 weights
// with init_std 0.2 so attention is peaked and a wrong mask or position moves logits by O(1).
ModelConfig tiny_config() {
  ModelConfig c = ModelConfig::preset("tiny");
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.intermediate_size = 88;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.max_sequence_length = 256;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 1e4;
  c.tie_word_embeddings = false;
  c.convention = WeightConvention::jax;
  c.convention_known = true;
  c.torch_dtype = DType::f32;
  return c;
}

class SequenceParallelModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    ModelMakerOptions options;
    options.config = tiny_config();
    options.dtype = DType::f32;
    options.seed = test::test_seed();
    options.init_std = 0.2f;
    options.norm_weight_noise = 0.2f;
    make_random_model(dir_->path() / "model", options);
    ModelRuntimeOptions runtime;
    runtime.attention_query_chunk = 8;  // small chunks: every ring block is itself chunked
    runtime.attention_key_chunk = 8;
    model_ = Model::load(dir_->path() / "model", runtime).release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete dir_;
  }
  static test::TempDir* dir_;
  static Model* model_;
};
test::TempDir* SequenceParallelModel::dir_ = nullptr;
Model* SequenceParallelModel::model_ = nullptr;

std::vector<std::int32_t> random_tokens(std::size_t n, std::mt19937_64& rng) {
  std::uniform_int_distribution<std::int32_t> id(0, 96);
  std::vector<std::int32_t> tokens(n);
  for (auto& t : tokens) t = id(rng);
  return tokens;
}

// Logits are O(5); float32 differences in summation order through two layers stay ≲1e-5
// (test_model.cpp observes ≲1.2e-5 against fp64); a wrongly masked or mispositioned key moves
// them by O(0.1–1).
constexpr double kLogitTolerance = 1e-4;

double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    const double d = std::fabs(double{a[i]} - b[i]);
    if (!(d <= worst)) worst = d;
  }
  return worst;
}

TEST_F(SequenceParallelModel, ChunkedPrefillAndDecodeMatchOneDevice) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("LWM_TEST_SEED=" + std::to_string(seed));
  std::mt19937_64 rng(seed + 1);
  const std::vector<std::int32_t> prompt = random_tokens(37, rng);
  const std::vector<std::int32_t> answer = random_tokens(4, rng);
  const std::int64_t chunk = 15;  // 15 + 15 + 7: none divides by P or 2P for most P
  const std::int64_t capacity = 48;

  // One device: the same chunks, every logit of the prompt, then decode steps.
  std::vector<std::vector<float>> expected;  // per call
  {
    KVCache cache(model_->config(), capacity);
    for (std::size_t done = 0; done < prompt.size(); done += chunk) {
      const std::size_t n = std::min<std::size_t>(chunk, prompt.size() - done);
      expected.emplace_back();
      model_->forward(std::span(prompt).subspan(done, n), cache, LogitsFor::all, &expected.back());
    }
    for (const std::int32_t token : answer) {
      expected.emplace_back();
      model_->forward(std::span(&token, 1), cache, LogitsFor::last, &expected.back());
    }
  }

  for (const ShardLayout layout : {ShardLayout::zigzag, ShardLayout::striped}) {
    for (int world = 1; world <= 8; ++world) {
      if (layout == ShardLayout::striped && world % 3 != 0) continue;  // a few striped cases
      SCOPED_TRACE(std::string(to_string(layout)) + " P " + std::to_string(world));
      std::vector<std::vector<std::vector<float>>> got(static_cast<std::size_t>(world));
      std::vector<std::int64_t> local_rows(static_cast<std::size_t>(world));
      std::vector<std::int64_t> local_capacity(static_cast<std::size_t>(world));
      auto group = make_in_process_group(world, 30s);
      run_ranks(group, [&](Communicator& c) {
        SequenceParallelRank rank(*model_, c, capacity, layout);
        auto& mine = got[static_cast<std::size_t>(c.rank())];
        for (std::size_t done = 0; done < prompt.size(); done += chunk) {
          const std::size_t n = std::min<std::size_t>(chunk, prompt.size() - done);
          mine.emplace_back();
          rank.forward(std::span(prompt).subspan(done, n), LogitsFor::all, &mine.back());
        }
        for (const std::int32_t token : answer) {
          mine.emplace_back();
          rank.forward(std::span(&token, 1), LogitsFor::last, &mine.back());
        }
        EXPECT_EQ(rank.size(), static_cast<std::int64_t>(prompt.size() + answer.size()));
        local_rows[static_cast<std::size_t>(c.rank())] = rank.local_cache().size();
        local_capacity[static_cast<std::size_t>(c.rank())] = rank.local_cache().capacity();
      }).rethrow_first_error();

      for (std::size_t call = 0; call < expected.size(); ++call) {
        EXPECT_LE(max_difference(got[0][call], expected[call]), kLogitTolerance)
            << "call " << call << (call * chunk < prompt.size() ? " (prefill)" : " (decode)");
        for (int r = 1; r < world; ++r) {
          ASSERT_EQ(got[static_cast<std::size_t>(r)][call].size(), got[0][call].size());
          EXPECT_EQ(std::memcmp(got[static_cast<std::size_t>(r)][call].data(), got[0][call].data(),
                                got[0][call].size() * sizeof(float)),
                    0)
              << "rank " << r << " call " << call << " differs from rank 0";
        }
      }
      // The context is the sum of the shards, each about capacity / P.
      std::int64_t total = 0;
      for (int r = 0; r < world; ++r) {
        total += local_rows[static_cast<std::size_t>(r)];
        EXPECT_LE(local_capacity[static_cast<std::size_t>(r)], (capacity + world - 1) / world + 3);
      }
      EXPECT_EQ(total, static_cast<std::int64_t>(prompt.size() + answer.size()));
    }
  }
}

TEST_F(SequenceParallelModel, LastTokenLogitsAndPositionsFollowTheSharding) {
  // LogitsFor::last returns the last prompt token's row on every rank, and each rank's cache
  // rows carry the global positions the sharding gave them (§1.9 pitfall 7: RoPE by global
  // position).
  std::mt19937_64 rng(test::test_seed() + 2);
  const std::vector<std::int32_t> prompt = random_tokens(23, rng);
  std::vector<float> all;
  {
    KVCache cache(model_->config(), 32);
    model_->forward(prompt, cache, LogitsFor::all, &all);
  }
  const std::vector<float> last(all.end() - 97, all.end());
  const int world = 4;
  std::vector<std::vector<float>> got(world);
  std::vector<std::vector<PositionRun>> positions(world);
  auto group = make_in_process_group(world, 30s);
  run_ranks(group, [&](Communicator& c) {
    SequenceParallelRank rank(*model_, c, 32);
    rank.forward(prompt, LogitsFor::last, &got[static_cast<std::size_t>(c.rank())]);
    const auto runs = rank.local_positions();
    positions[static_cast<std::size_t>(c.rank())].assign(runs.begin(), runs.end());
  }).rethrow_first_error();
  const SequenceSharding sharding(23, world, ShardLayout::zigzag);
  for (int r = 0; r < world; ++r) {
    EXPECT_LE(max_difference(got[static_cast<std::size_t>(r)], last), kLogitTolerance);
    std::vector<std::int64_t> held, expected_positions;
    for (const PositionRun& run : positions[static_cast<std::size_t>(r)])
      for (std::int64_t i = 0; i < run.count; ++i) held.push_back(run.position + i * run.stride);
    for (std::int64_t row = 0; row < sharding.rows(r); ++row)
      expected_positions.push_back(sharding.position(r, row));
    EXPECT_EQ(held, expected_positions) << "rank " << r;
  }
}

TEST_F(SequenceParallelModel, PrefillCancelsTogetherAndTruncateReasks) {
  // Cancel between chunks stops every rank after the same chunk and restores the context;
  // truncating to a shared prefix and asking again gives the one-device logits.
  std::mt19937_64 rng(test::test_seed() + 3);
  const std::vector<std::int32_t> prefix = random_tokens(19, rng);
  const std::vector<std::int32_t> first = random_tokens(9, rng), second = random_tokens(7, rng);
  auto one_device = [&](const std::vector<std::int32_t>& question) {
    KVCache cache(model_->config(), 64);
    std::vector<float> logits;
    model_->forward(prefix, cache, LogitsFor::none, nullptr);
    model_->forward(question, cache, LogitsFor::last, &logits);
    return logits;
  };
  const std::vector<float> expected_first = one_device(first), expected_second = one_device(second);
  const int world = 3;
  std::vector<std::vector<float>> got_first(world), got_second(world);
  std::vector<int> cancelled(world, 0), progress_calls(world, 0);
  std::vector<std::int64_t> size_after_cancel(world);
  auto group = make_in_process_group(world, 30s);
  run_ranks(group, [&](Communicator& c) {
    const auto r = static_cast<std::size_t>(c.rank());
    SequenceParallelRank rank(*model_, c, 64);
    rank.prefill(prefix, 8);
    try {
      rank.prefill(first, 4, [&](const Progress& p) {
        ++progress_calls[r];
        return p.done < 8;  // cancel after the second chunk
      });
    } catch (const Error& e) {
      cancelled[r] = e.kind() == ErrorKind::cancelled ? 1 : 0;
    }
    size_after_cancel[r] = rank.size();
    got_first[r] = rank.prefill(first, 4);
    rank.truncate(static_cast<std::int64_t>(prefix.size()));
    got_second[r] = rank.prefill(second, 5);
  }).rethrow_first_error();
  EXPECT_EQ(progress_calls[0], 2);
  for (int r = 0; r < world; ++r) {
    const auto i = static_cast<std::size_t>(r);
    if (r > 0) {
      EXPECT_EQ(progress_calls[i], 0) << "progress runs on rank 0 only";
    }
    EXPECT_EQ(cancelled[i], 1) << "rank " << r;
    EXPECT_EQ(size_after_cancel[i], static_cast<std::int64_t>(prefix.size())) << "rank " << r;
    EXPECT_LE(max_difference(got_first[i], expected_first), kLogitTolerance) << "rank " << r;
    EXPECT_LE(max_difference(got_second[i], expected_second), kLogitTolerance) << "rank " << r;
  }
}

TEST_F(SequenceParallelModel, OverflowAndDisagreementFailOnEveryRank) {
  const int world = 3;
  {  // More tokens than the whole context: refused on every rank before any work, and the
     // group stays usable for a prompt that fits.
    auto group = make_in_process_group(world, 30s);
    std::vector<int> refused(world, 0);
    std::vector<std::vector<float>> logits(world);
    run_ranks(group, [&](Communicator& c) {
      SequenceParallelRank rank(*model_, c, 10);
      try {
        rank.forward(std::vector<std::int32_t>(11, 1), LogitsFor::last,
                     &logits[static_cast<std::size_t>(c.rank())]);
      } catch (const Error& e) {
        refused[static_cast<std::size_t>(c.rank())] = e.kind() == ErrorKind::invalid_argument;
      }
      EXPECT_EQ(rank.size(), 0);
      rank.forward(std::vector<std::int32_t>(10, 1), LogitsFor::last,
                   &logits[static_cast<std::size_t>(c.rank())]);
    }).rethrow_first_error();
    for (int r = 0; r < world; ++r) {
      EXPECT_EQ(refused[static_cast<std::size_t>(r)], 1) << "rank " << r;
      EXPECT_EQ(logits[static_cast<std::size_t>(r)].size(), 97u);
    }
  }
  {  // Ranks given different prompts: every rank names the disagreement, nobody hangs.
    auto group = make_in_process_group(world, 60s);
    const auto start = std::chrono::steady_clock::now();
    const RankOutcomes outcomes = run_ranks(group, [&](Communicator& c) {
      SequenceParallelRank rank(*model_, c, 20);
      std::vector<std::int32_t> tokens(9, 3);
      if (c.rank() == 2) tokens[4] = 5;
      std::vector<float> logits;
      rank.forward(tokens, LogitsFor::last, &logits);
    });
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    for (int r = 0; r < world; ++r) {
      ASSERT_TRUE(outcomes.errors[static_cast<std::size_t>(r)]);
      try {
        std::rethrow_exception(outcomes.errors[static_cast<std::size_t>(r)]);
      } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::communication);
        EXPECT_NE(std::string(e.what()).find("disagree"), std::string::npos) << e.what();
      }
    }
  }
}

}  // namespace
}  // namespace lwm
