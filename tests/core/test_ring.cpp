// Ring attention, sharded decode, sequence sharding and the in-process communicator (spec
// ring-attention §1). The ring runs P = 1…8 ranks as threads and is checked against the
// single-device blockwise_attention and against a naive fp64 attention over global positions;
// each pitfall of §1.9 that applies on the CPU has a test here.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "lwm/attention.h"
#include "lwm/communicator.h"
#include "lwm/error.h"
#include "lwm/ring_attention.h"
#include "test_support.h"

namespace lwm {
namespace {

using namespace std::chrono_literals;

std::string seed_trace(std::uint64_t seed) {
  return "LWM_TEST_SEED=" + std::to_string(seed);
}

struct Problem {
  std::int64_t length = 1;
  AttentionShape shape{4, 2, 16};
  bool causal = true;
  bool segments = false;
  std::int64_t query_chunk = 16, key_chunk = 32;  // small, so every block is itself chunked
  float input_stddev = 1.0f;

  std::string describe() const {
    std::ostringstream s;
    s << "length " << length << " heads " << shape.num_heads << "/" << shape.num_kv_heads
      << " head_dim " << shape.head_dim << (causal ? " causal" : " non-causal")
      << (segments ? " packed segments" : "") << " chunks " << query_chunk << "x" << key_chunk
      << " stddev " << input_stddev;
    return s.str();
  }
};

struct Data {
  std::vector<float> q, k, v;
  std::vector<std::int32_t> segments;  // empty: none
};

// Non-decreasing ids with boundaries anywhere (documents of 1…~24 tokens), so that documents
// straddle shard and chunk boundaries.
std::vector<std::int32_t> packed_segments(std::int64_t n, std::mt19937_64& rng) {
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
  std::uniform_int_distribution<int> boundary(0, 11);
  std::int32_t id = 0;
  for (auto& x : ids) {
    if (boundary(rng) == 0) ++id;
    x = id;
  }
  return ids;
}

Data random_data(const Problem& p, std::mt19937_64& rng) {
  Data d;
  const auto n = static_cast<std::size_t>(p.length);
  d.q = test::random_normal(n * static_cast<std::size_t>(p.shape.num_heads * p.shape.head_dim), rng,
                            p.input_stddev);
  d.k = test::random_normal(n * static_cast<std::size_t>(p.shape.num_kv_heads * p.shape.head_dim),
                            rng, p.input_stddev);
  d.v = test::random_normal(n * static_cast<std::size_t>(p.shape.num_kv_heads * p.shape.head_dim),
                            rng);
  if (p.segments) d.segments = packed_segments(p.length, rng);
  return d;
}

struct Result {
  std::vector<double> out, lse;  // [queries, heads, dim], [heads, queries]
};

// Naive fp64 attention over explicit global positions: query i sees key j iff (not causal or
// key_positions[j] ≤ query_positions[i]) and the segment ids agree.
Result naive_attention(const AttentionShape& shape, bool causal, const float* q,
                       const std::vector<std::int64_t>& query_positions, const float* k,
                       const float* v, const std::vector<std::int64_t>& key_positions,
                       const std::int32_t* query_segments, const std::int32_t* key_segments) {
  const std::int64_t nq = static_cast<std::int64_t>(query_positions.size());
  const std::int64_t nk = static_cast<std::int64_t>(key_positions.size());
  const std::int64_t d = shape.head_dim, group = shape.num_heads / shape.num_kv_heads;
  const std::int64_t hq = shape.num_heads, hk = shape.num_kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  Result r;
  r.out.assign(static_cast<std::size_t>(nq * hq * d), 0.0);
  r.lse.assign(static_cast<std::size_t>(hq * nq), -INFINITY);
  std::vector<double> scores(static_cast<std::size_t>(nk));
  for (std::int64_t i = 0; i < nq; ++i) {
    for (std::int64_t h = 0; h < hq; ++h) {
      const std::int64_t g = h / group;
      double max = -INFINITY;
      for (std::int64_t j = 0; j < nk; ++j) {
        bool ok = !causal || key_positions[static_cast<std::size_t>(j)] <=
                                 query_positions[static_cast<std::size_t>(i)];
        if (query_segments != nullptr) ok = ok && query_segments[i] == key_segments[j];
        double dot = 0.0;
        for (std::int64_t e = 0; e < d; ++e)
          dot += double{q[(i * hq + h) * d + e]} * k[(j * hk + g) * d + e];
        scores[static_cast<std::size_t>(j)] = ok ? dot * scale : -INFINITY;
        max = std::max(max, scores[static_cast<std::size_t>(j)]);
      }
      if (max == -INFINITY) continue;
      double sum = 0.0;
      for (std::int64_t j = 0; j < nk; ++j) {
        if (scores[static_cast<std::size_t>(j)] == -INFINITY) continue;
        const double w = std::exp(scores[static_cast<std::size_t>(j)] - max);
        sum += w;
        for (std::int64_t e = 0; e < d; ++e)
          r.out[static_cast<std::size_t>((i * hq + h) * d + e)] += w * v[(j * hk + g) * d + e];
      }
      for (std::int64_t e = 0; e < d; ++e)
        r.out[static_cast<std::size_t>((i * hq + h) * d + e)] /= sum;
      r.lse[static_cast<std::size_t>(h * nq + i)] = max + std::log(sum);
    }
  }
  return r;
}

std::vector<std::int64_t> iota_positions(std::int64_t n, std::int64_t first = 0) {
  std::vector<std::int64_t> p(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) p[static_cast<std::size_t>(i)] = first + i;
  return p;
}

struct FloatResult {
  std::vector<float> out, lse;
};

FloatResult single_device(const Problem& p, const Data& d) {
  AttentionOptions o;
  o.causal = p.causal;
  o.query_chunk = p.query_chunk;
  o.key_chunk = p.key_chunk;
  if (!d.segments.empty()) {
    o.query_segments = d.segments.data();
    o.key_segments = d.segments.data();
  }
  FloatResult r;
  r.out.resize(static_cast<std::size_t>(p.length * p.shape.num_heads * p.shape.head_dim));
  r.lse.resize(static_cast<std::size_t>(p.length * p.shape.num_heads));
  blockwise_attention(d.q.data(), d.k.data(), d.v.data(), p.length, p.length, p.shape, o,
                      r.out.data(), r.lse.data());
  return r;
}

RingAttentionOptions ring_options(const Problem& p) {
  RingAttentionOptions o;
  o.causal = p.causal;
  o.segments = p.segments;
  o.query_chunk = p.query_chunk;
  o.key_chunk = p.key_chunk;
  return o;
}

// Delays every operation by a random few hundred microseconds, so that ranks arrive in a
// different order each run (the deterministic-mode test must not depend on timing).
class JitteryCommunicator final : public Communicator {
 public:
  JitteryCommunicator(std::unique_ptr<Communicator> inner, std::uint64_t seed)
      : inner_(std::move(inner)), rng_(seed) {}
  int rank() const noexcept override { return inner_->rank(); }
  int world_size() const noexcept override { return inner_->world_size(); }
  std::chrono::milliseconds timeout() const noexcept override { return inner_->timeout(); }
  std::string name() const override { return inner_->name(); }
  std::unique_ptr<PendingExchange> start_ring_exchange(std::span<const std::byte> send,
                                                       std::span<std::byte> receive,
                                                       std::string_view what) override {
    pause();
    return inner_->start_ring_exchange(send, receive, what);
  }
  void all_gather(std::span<const std::byte> send, std::span<std::byte> receive,
                  std::string_view what) override {
    pause();
    inner_->all_gather(send, receive, what);
  }
  void broadcast(std::span<std::byte> data, int root, std::string_view what) override {
    pause();
    inner_->broadcast(data, root, what);
  }
  void barrier(std::string_view what) override {
    pause();
    inner_->barrier(what);
  }
  void abort(const std::string& reason) noexcept override { inner_->abort(reason); }

 private:
  void pause() {
    std::this_thread::sleep_for(
        std::chrono::microseconds(std::uniform_int_distribution<int>(0, 400)(rng_)));
  }
  std::unique_ptr<Communicator> inner_;
  std::mt19937_64 rng_;
};

std::vector<std::unique_ptr<Communicator>> group_of(int world, bool jittery = false,
                                                    std::chrono::milliseconds timeout = 30s) {
  std::vector<std::unique_ptr<Communicator>> group = make_in_process_group(world, timeout);
  if (jittery) {
    for (std::size_t r = 0; r < group.size(); ++r) {
      group[r] = std::make_unique<JitteryCommunicator>(std::move(group[r]), 1000 + r);
    }
  }
  return group;
}

struct RingRun {
  FloatResult full;  // assembled back into sequence order
  std::vector<RingStatistics> stats;
};

// Shards the problem over `world` ranks, runs the ring, and assembles the outputs in sequence
// order. Outputs start as NaN so a row the ring forgets to write shows up.
RingRun run_ring(const Problem& p, const Data& d, int world, ShardLayout layout,
                 bool jittery = false) {
  const SequenceSharding sharding(p.length, world, layout);
  const std::int64_t hq = p.shape.num_heads, dim = p.shape.head_dim;
  const std::int64_t q_width = hq * dim, kv_width = p.shape.num_kv_heads * dim;
  RingRun run;
  run.full.out.assign(static_cast<std::size_t>(p.length * q_width), std::nanf(""));
  run.full.lse.assign(static_cast<std::size_t>(p.length * hq), std::nanf(""));
  run.stats.resize(static_cast<std::size_t>(world));
  std::vector<std::vector<float>> outs(static_cast<std::size_t>(world));
  std::vector<std::vector<float>> lses(static_cast<std::size_t>(world));
  auto group = group_of(world, jittery);
  const RankOutcomes outcomes = run_ranks(group, [&](Communicator& c) {
    const int r = c.rank();
    const std::int64_t rows = sharding.rows(r);
    const std::vector<float> q = sharding.take(d.q.data(), q_width, r);
    const std::vector<float> k = sharding.take(d.k.data(), kv_width, r);
    const std::vector<float> v = sharding.take(d.v.data(), kv_width, r);
    std::vector<std::int32_t> segments;
    if (!d.segments.empty()) segments = sharding.take(d.segments.data(), 1, r);
    const ShardRows mine{sharding.runs(r), segments.empty() ? nullptr : segments.data()};
    auto& out = outs[static_cast<std::size_t>(r)];
    auto& lse = lses[static_cast<std::size_t>(r)];
    out.assign(static_cast<std::size_t>(rows * q_width), std::nanf(""));
    lse.assign(static_cast<std::size_t>(rows * hq), std::nanf(""));
    run.stats[static_cast<std::size_t>(r)] =
        ring_attention(c, q.data(), mine, k.data(), v.data(), mine, p.shape, ring_options(p),
                       out.data(), lse.data());
  });
  outcomes.rethrow_first_error();
  for (int r = 0; r < world; ++r) {
    const auto& out = outs[static_cast<std::size_t>(r)];
    const auto& lse = lses[static_cast<std::size_t>(r)];
    sharding.put(out.data(), q_width, r, run.full.out.data());
    // lse is [heads, rows] per rank: transpose to rows so put() can place it.
    const std::int64_t rows = sharding.rows(r);
    std::vector<float> by_row(static_cast<std::size_t>(rows * hq));
    for (std::int64_t h = 0; h < hq; ++h)
      for (std::int64_t i = 0; i < rows; ++i)
        by_row[static_cast<std::size_t>(i * hq + h)] = lse[static_cast<std::size_t>(h * rows + i)];
    std::vector<float> full_by_row(static_cast<std::size_t>(p.length * hq), std::nanf(""));
    for (std::int64_t i = 0; i < p.length * hq; ++i) {
      full_by_row[static_cast<std::size_t>(i)] =
          run.full.lse[static_cast<std::size_t>((i % hq) * p.length + i / hq)];
    }
    sharding.put(by_row.data(), hq, r, full_by_row.data());
    for (std::int64_t i = 0; i < p.length * hq; ++i) {
      run.full.lse[static_cast<std::size_t>((i % hq) * p.length + i / hq)] =
          full_by_row[static_cast<std::size_t>(i)];
    }
  }
  return run;
}

double max_abs_error(const std::vector<float>& actual, const std::vector<double>& expected) {
  double worst = 0.0;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (std::isinf(expected[i]) && actual[i] == static_cast<float>(expected[i])) continue;
    const double e = std::fabs(double{actual[i]} - expected[i]);
    if (!(e <= worst)) worst = e;  // NaN wins
  }
  return worst;
}

// What a ring run must reproduce: the fp64 reference and the single-device kernel's result.
struct Expected {
  Result reference;
  FloatResult single;
};

Expected expected_for(const Problem& p, const Data& d) {
  const std::int32_t* segments = d.segments.empty() ? nullptr : d.segments.data();
  return {naive_attention(p.shape, p.causal, d.q.data(), iota_positions(p.length), d.k.data(),
                          d.v.data(), iota_positions(p.length), segments, segments),
          single_device(p, d)};
}

// Ring against fp64 and against the single-device kernel. Tolerances as in test_attention.cpp:
// float32 scores and sums give ~1e-6 absolute error for unit-variance inputs; a key masked wrongly
// among 257 moves an output by ~1e-2, far above 2e-5.
void expect_ring_matches(const Problem& p, const Expected& expected, const FloatResult& ring,
                         const std::string& what) {
  const double tolerance = 2e-5 * p.input_stddev * p.input_stddev;
  EXPECT_LE(max_abs_error(ring.out, expected.reference.out), tolerance) << what << ": out vs fp64";
  EXPECT_LE(max_abs_error(ring.lse, expected.reference.lse), tolerance) << what << ": lse vs fp64";
  const std::vector<double> single_out(expected.single.out.begin(), expected.single.out.end());
  const std::vector<double> single_lse(expected.single.lse.begin(), expected.single.lse.end());
  EXPECT_LE(max_abs_error(ring.out, single_out), tolerance) << what << ": out vs blockwise";
  EXPECT_LE(max_abs_error(ring.lse, single_lse), tolerance) << what << ": lse vs blockwise";
  for (std::size_t i = 0; i < expected.reference.lse.size(); ++i) {
    if (expected.reference.lse[i] == -INFINITY) {
      ASSERT_TRUE(std::isinf(ring.lse[i]) && ring.lse[i] < 0) << what << ": empty row lse " << i;
    }
  }
}

void expect_ring_matches(const Problem& p, const Data& d, const FloatResult& ring,
                         const std::string& what) {
  expect_ring_matches(p, expected_for(p, d), ring, what);
}

// ---------------------------------------------------------------------------------------------
// Sequence sharding

TEST(SequenceSharding, EveryPositionExactlyOnceInAscendingRunsForAnyLength) {
  for (const ShardLayout layout :
       {ShardLayout::zigzag, ShardLayout::contiguous, ShardLayout::striped}) {
    for (int world = 1; world <= 8; ++world) {
      for (const std::int64_t length : {0L, 1L, 7L, 13L, 2L * world - 1, 2L * world + 1, 257L}) {
        SCOPED_TRACE(std::string(to_string(layout)) + " P " + std::to_string(world) + " length " +
                     std::to_string(length));
        const std::int64_t first = 5;
        const SequenceSharding s(length, world, layout, first);
        std::vector<int> seen(static_cast<std::size_t>(length), 0);
        std::int64_t total = 0, most = 0, least = length;
        for (int r = 0; r < world; ++r) {
          std::int64_t previous = -1;
          for (std::int64_t row = 0; row < s.rows(r); ++row) {
            const std::int64_t position = s.position(r, row);
            ASSERT_GE(position, first);
            ASSERT_LT(position, first + length);
            ASSERT_GT(position, previous) << "rows of a rank are in ascending position order";
            previous = position;
            ++seen[static_cast<std::size_t>(position - first)];
            const SequenceSharding::Location where = s.locate(position);
            ASSERT_EQ(where.rank, r);
            ASSERT_EQ(where.row, row);
          }
          total += s.rows(r);
          most = std::max(most, s.rows(r));
          least = std::min(least, s.rows(r));
        }
        EXPECT_EQ(total, length);
        for (std::int64_t i = 0; i < length; ++i) EXPECT_EQ(seen[static_cast<std::size_t>(i)], 1);
        EXPECT_LE(most - least, layout == ShardLayout::zigzag ? 2 : 1) << "shards stay balanced";
        EXPECT_THROW(s.locate(first + length), Error);
        EXPECT_THROW(s.position(0, s.rows(0)), Error);
      }
    }
  }
}

TEST(SequenceSharding, ZigzagGivesEveryRankTheSameCausalWork) {
  // §1.4: with 2P equal chunks every rank's queries see the same number of keys; contiguous
  // shards do not (the last rank does ~2P−1 times the first one's work).
  for (int world = 2; world <= 8; ++world) {
    const std::int64_t length = 2 * world * 5;
    auto work = [&](ShardLayout layout, int r) {
      const SequenceSharding s(length, world, layout);
      std::int64_t visible = 0;
      for (std::int64_t row = 0; row < s.rows(r); ++row) visible += s.position(r, row) + 1;
      return visible;
    };
    for (int r = 1; r < world; ++r) {
      EXPECT_EQ(work(ShardLayout::zigzag, r), work(ShardLayout::zigzag, 0)) << "P " << world;
    }
    EXPECT_GT(work(ShardLayout::contiguous, world - 1), 2 * work(ShardLayout::contiguous, 0));
  }
}

TEST(SequenceSharding, LeftoverRowsGoToTheRanksHoldingLeast) {
  // A KV cache filled chunk by chunk (chunked prefill) stays balanced: the total context is the
  // sum of the shards, each within two rows of the others.
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(seed_trace(test::test_seed()));
  for (const ShardLayout layout :
       {ShardLayout::zigzag, ShardLayout::contiguous, ShardLayout::striped}) {
    for (int world = 2; world <= 8; ++world) {
      SCOPED_TRACE(to_string(layout));
      std::vector<std::int64_t> held(static_cast<std::size_t>(world), 0);
      std::int64_t position = 0;
      for (int chunk = 0; chunk < 50; ++chunk) {
        const std::int64_t length = std::uniform_int_distribution<std::int64_t>(1, 40)(rng);
        const SequenceSharding s(length, world, layout, position, held);
        for (int r = 0; r < world; ++r) held[static_cast<std::size_t>(r)] += s.rows(r);
        position += length;
        const auto [least, most] = std::minmax_element(held.begin(), held.end());
        ASSERT_LE(*most - *least, 2) << "P " << world << " after chunk " << chunk;
      }
    }
  }
  const std::vector<std::int64_t> wrong_size(3, 0);
  EXPECT_THROW(SequenceSharding(10, 4, ShardLayout::zigzag, 0, wrong_size), Error);
  EXPECT_THROW(SequenceSharding(10, 0, ShardLayout::zigzag), Error);
}

// ---------------------------------------------------------------------------------------------
// Ring prefill

TEST(RingAttention, MatchesSingleDeviceAndFp64ForEveryWorldSizeAndLength) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(seed_trace(test::test_seed()));
  for (int world = 1; world <= 8; ++world) {
    for (const std::int64_t length : {1L, 7L, 13L, 2L * world - 1, 2L * world + 1, 257L}) {
      for (const bool causal : {true, false}) {
        Problem p;
        p.length = length;
        p.causal = causal;
        const Data d = random_data(p, rng);
        const Expected expected = expected_for(p, d);
        const std::string what = p.describe() + " P " + std::to_string(world);
        expect_ring_matches(p, expected, run_ring(p, d, world, ShardLayout::zigzag).full,
                            what + " zigzag");
        if (length == 257 || length == 13) {
          expect_ring_matches(p, expected, run_ring(p, d, world, ShardLayout::striped).full,
                              what + " striped");
          expect_ring_matches(p, expected, run_ring(p, d, world, ShardLayout::contiguous).full,
                              what + " contiguous");
        }
      }
    }
  }
}

TEST(RingAttention, PackedSegmentsStraddlingShards) {
  // §1.5: segment ids travel with the keys; documents cross shard, chunk and hop boundaries.
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(seed_trace(test::test_seed()));
  for (int world = 1; world <= 8; ++world) {
    for (const std::int64_t length : {13L, 2L * world + 1, 257L}) {
      for (const bool causal : {true, false}) {
        Problem p;
        p.length = length;
        p.causal = causal;
        p.segments = true;
        const Data d = random_data(p, rng);
        const Expected expected = expected_for(p, d);
        const std::string what = p.describe() + " P " + std::to_string(world);
        expect_ring_matches(p, expected, run_ring(p, d, world, ShardLayout::zigzag).full, what);
        if (length == 257) {
          expect_ring_matches(p, expected, run_ring(p, d, world, ShardLayout::striped).full,
                              what + " striped");
        }
      }
    }
  }
}

TEST(RingAttention, GroupedQueryAttentionShapes) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(seed_trace(test::test_seed()));
  const AttentionShape shapes[] = {{1, 1, 8}, {4, 4, 8}, {4, 1, 8}, {6, 2, 12}, {2, 2, 64}};
  for (const AttentionShape& shape : shapes) {
    for (const int world : {2, 3, 5}) {
      Problem p;
      p.length = 61;
      p.shape = shape;
      const Data d = random_data(p, rng);
      expect_ring_matches(p, d, run_ring(p, d, world, ShardLayout::zigzag).full,
                          p.describe() + " P " + std::to_string(world));
    }
  }
}

TEST(RingAttention, LargeLogitsNeitherOverflowNorLoseAccuracy) {
  // Pitfall 1: merging partials with a naive exp overflows for large logits (|s| ≫ 88).
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(seed_trace(test::test_seed()));
  Problem p;
  p.length = 97;
  p.input_stddev = 6.0f;  // logits of several hundred
  const Data d = random_data(p, rng);
  for (const int world : {2, 4, 7}) {
    const FloatResult ring = run_ring(p, d, world, ShardLayout::zigzag).full;
    for (const float x : ring.out) ASSERT_TRUE(std::isfinite(x));
    // Logits of ~500 carry float32 error ~5e-5 into each weight: tolerance scales with stddev².
    expect_ring_matches(p, d, ring, p.describe() + " P " + std::to_string(world));
  }
}

TEST(RingAttention, ErrorAgainstFp64DoesNotGrowWithWorldSize) {
  // Pitfall 2 and goal 4 of §4: the ring's error stays within 1.5× the single-device kernel's
  // error (plus one float32 rounding of the output) for every P.
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(seed_trace(test::test_seed()));
  Problem p;
  p.length = 509;
  p.shape = {4, 2, 32};
  const Data d = random_data(p, rng);
  const Result reference =
      naive_attention(p.shape, p.causal, d.q.data(), iota_positions(p.length), d.k.data(),
                      d.v.data(), iota_positions(p.length), nullptr, nullptr);
  const FloatResult single = single_device(p, d);
  const double single_out = max_abs_error(single.out, reference.out);
  const double single_lse = max_abs_error(single.lse, reference.lse);
  std::ostringstream table;
  table << "max |error| vs fp64: single device out " << single_out << " lse " << single_lse;
  for (int world = 1; world <= 8; ++world) {
    const FloatResult ring = run_ring(p, d, world, ShardLayout::zigzag).full;
    const double out_error = max_abs_error(ring.out, reference.out);
    const double lse_error = max_abs_error(ring.lse, reference.lse);
    table << "; P " << world << " out " << out_error << " lse " << lse_error << " (vs single "
          << max_abs_error(ring.out, std::vector<double>(single.out.begin(), single.out.end()))
          << ")";
    // One float32 rounding of an output of magnitude ≤ ~4 is ≤ 2.4e-7.
    EXPECT_LE(out_error, 1.5 * single_out + 2.4e-7) << "P " << world;
    EXPECT_LE(lse_error, 1.5 * single_lse + 4.8e-7) << "P " << world;
  }
  std::printf("%s\n", table.str().c_str());
}

TEST(RingAttention, RepeatsBitForBitWhateverTheArrivalOrder) {
  // Goal 4's deterministic mode: the ring folds hops in a fixed order and every kernel call is
  // deterministic, so results are bitwise identical however the ranks' messages interleave.
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(seed_trace(test::test_seed()));
  Problem p;
  p.length = 131;
  p.segments = true;
  const Data d = random_data(p, rng);
  for (const int world : {3, 8}) {
    const FloatResult first = run_ring(p, d, world, ShardLayout::zigzag).full;
    for (int repeat = 0; repeat < 3; ++repeat) {
      const FloatResult again = run_ring(p, d, world, ShardLayout::zigzag, true).full;
      ASSERT_EQ(std::memcmp(first.out.data(), again.out.data(), first.out.size() * sizeof(float)),
                0)
          << "P " << world << " repeat " << repeat;
      ASSERT_EQ(std::memcmp(first.lse.data(), again.lse.data(), first.lse.size() * sizeof(float)),
                0)
          << "P " << world << " repeat " << repeat;
    }
  }
}

TEST(RingAttention, CausalZigzagSkipsFutureBlocksAndBalancesWork) {
  // Goal 5: wholly masked block pairs are skipped and counted; with zigzag every rank hands the
  // kernel the same number of (query, key) pairs, with contiguous shards the last rank does
  // several times the first rank's work (§1.4).
  std::mt19937_64 rng(test::test_seed());
  Problem p;
  p.length = 8 * 2 * 6;
  const Data d = random_data(p, rng);
  const RingRun zigzag = run_ring(p, d, 8, ShardLayout::zigzag);
  for (const RingStatistics& s : zigzag.stats) {
    EXPECT_GT(s.block_pairs_skipped, 0);
    EXPECT_EQ(s.score_pairs, zigzag.stats[0].score_pairs);
  }
  const RingRun contiguous = run_ring(p, d, 8, ShardLayout::contiguous);
  EXPECT_GT(contiguous.stats[7].score_pairs, 4 * contiguous.stats[0].score_pairs);
  p.causal = false;
  for (const RingStatistics& s : run_ring(p, d, 8, ShardLayout::zigzag).stats) {
    EXPECT_EQ(s.block_pairs_skipped, 0);
    EXPECT_EQ(s.score_pairs, 12 * p.length);
  }
}

// ---------------------------------------------------------------------------------------------
// Decode: KV stationary, queries replicated, (out, lse) merged across ranks

TEST(ShardedDecode, EqualsSingleDeviceDecodeOnEveryRank) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(seed_trace(test::test_seed()));
  const AttentionShape shape{4, 2, 16};
  for (int world = 1; world <= 8; ++world) {
    for (const std::int64_t context : {1L, 2L * world - 1, 130L}) {
      for (const std::int64_t new_tokens : {1L, 3L}) {
        for (const bool segments : {false, true}) {
          SCOPED_TRACE("P " + std::to_string(world) + " context " + std::to_string(context) +
                       " new tokens " + std::to_string(new_tokens) + (segments ? " segments" : ""));
          // The cache holds `context` tokens and the new tokens' own keys (which land on some
          // rank); the new tokens' queries are replicated.
          const std::int64_t keys = context + new_tokens;
          Problem p;
          p.length = keys;
          p.shape = shape;
          p.segments = segments;
          const Data d = random_data(p, rng);
          const std::int64_t q_width = shape.num_heads * shape.head_dim;
          const float* q = d.q.data() + context * q_width;  // the last new_tokens rows
          const std::int32_t* q_segments = segments ? d.segments.data() + context : nullptr;

          AttentionOptions single_options;
          single_options.query_offset = context;
          single_options.query_chunk = 16;
          single_options.key_chunk = 32;
          single_options.query_segments = q_segments;
          single_options.key_segments = segments ? d.segments.data() : nullptr;
          std::vector<float> single_out(static_cast<std::size_t>(new_tokens * q_width));
          std::vector<float> single_lse(static_cast<std::size_t>(new_tokens * shape.num_heads));
          blockwise_attention(q, d.k.data(), d.v.data(), new_tokens, keys, shape, single_options,
                              single_out.data(), single_lse.data());
          const Result reference = naive_attention(
              shape, true, q, iota_positions(new_tokens, context), d.k.data(), d.v.data(),
              iota_positions(keys), q_segments, single_options.key_segments);

          const SequenceSharding sharding(keys, world, ShardLayout::zigzag);
          const std::int64_t kv_width = shape.num_kv_heads * shape.head_dim;
          const std::vector<PositionRun> query_runs{{context, new_tokens, 1}};
          std::vector<std::vector<float>> outs(static_cast<std::size_t>(world)),
              lses(static_cast<std::size_t>(world));
          auto group = group_of(world);
          run_ranks(group, [&](Communicator& c) {
            const int r = c.rank();
            const std::vector<float> k = sharding.take(d.k.data(), kv_width, r);
            const std::vector<float> v = sharding.take(d.v.data(), kv_width, r);
            std::vector<std::int32_t> key_segments;
            if (segments) key_segments = sharding.take(d.segments.data(), 1, r);
            const ShardRows queries{query_runs, q_segments};
            const ShardRows mine{sharding.runs(r), segments ? key_segments.data() : nullptr};
            RingAttentionOptions o;
            o.segments = segments;
            o.query_chunk = 16;
            o.key_chunk = 32;
            auto& out = outs[static_cast<std::size_t>(r)];
            auto& lse = lses[static_cast<std::size_t>(r)];
            out.assign(single_out.size(), std::nanf(""));
            lse.assign(single_lse.size(), std::nanf(""));
            sharded_decode_attention(c, q, queries, k.data(), v.data(), mine, shape, o, out.data(),
                                     lse.data());
          }).rethrow_first_error();

          std::vector<double> single_out_d(single_out.begin(), single_out.end());
          std::vector<double> single_lse_d(single_lse.begin(), single_lse.end());
          EXPECT_LE(max_abs_error(outs[0], single_out_d), 2e-5);
          EXPECT_LE(max_abs_error(lses[0], single_lse_d), 2e-5);
          EXPECT_LE(max_abs_error(outs[0], reference.out), 2e-5);
          EXPECT_LE(max_abs_error(lses[0], reference.lse), 2e-5);
          for (int r = 1; r < world; ++r) {
            ASSERT_EQ(std::memcmp(outs[0].data(), outs[static_cast<std::size_t>(r)].data(),
                                  outs[0].size() * sizeof(float)),
                      0)
                << "rank " << r << " merged differently from rank 0";
            ASSERT_EQ(std::memcmp(lses[0].data(), lses[static_cast<std::size_t>(r)].data(),
                                  lses[0].size() * sizeof(float)),
                      0);
          }
        }
      }
    }
  }
}

// Counts the bytes each kind of operation sends.
class CountingCommunicator final : public Communicator {
 public:
  explicit CountingCommunicator(std::unique_ptr<Communicator> inner) : inner_(std::move(inner)) {}
  int rank() const noexcept override { return inner_->rank(); }
  int world_size() const noexcept override { return inner_->world_size(); }
  std::chrono::milliseconds timeout() const noexcept override { return inner_->timeout(); }
  std::string name() const override { return inner_->name(); }
  std::unique_ptr<PendingExchange> start_ring_exchange(std::span<const std::byte> send,
                                                       std::span<std::byte> receive,
                                                       std::string_view what) override {
    ring_bytes += send.size();
    return inner_->start_ring_exchange(send, receive, what);
  }
  void all_gather(std::span<const std::byte> send, std::span<std::byte> receive,
                  std::string_view what) override {
    gather_bytes += send.size();
    inner_->all_gather(send, receive, what);
  }
  void broadcast(std::span<std::byte> data, int root, std::string_view what) override {
    inner_->broadcast(data, root, what);
  }
  void barrier(std::string_view what) override { inner_->barrier(what); }
  void abort(const std::string& reason) noexcept override { inner_->abort(reason); }
  std::size_t ring_bytes = 0, gather_bytes = 0;

 private:
  std::unique_ptr<Communicator> inner_;
};

TEST(ShardedDecode, MovesOnlyThePartialResultsNeverTheCache) {
  // §1.7: decode traffic is P·H·d per query whatever the context; the KV cache stays put.
  const AttentionShape shape{4, 2, 16};
  const int world = 4;
  std::vector<std::size_t> gathered;
  for (const std::int64_t context : {16L, 400L}) {
    std::mt19937_64 rng(7);
    Problem p;
    p.length = context;
    p.shape = shape;
    const Data d = random_data(p, rng);
    const SequenceSharding sharding(context, world, ShardLayout::zigzag);
    auto group = make_in_process_group(world, 30s);
    std::vector<CountingCommunicator*> counters;
    for (auto& c : group) {
      auto counting = std::make_unique<CountingCommunicator>(std::move(c));
      counters.push_back(counting.get());
      c = std::move(counting);
    }
    const std::vector<PositionRun> query_runs{{context - 1, 1, 1}};
    run_ranks(group, [&](Communicator& c) {
      const int r = c.rank();
      const std::vector<float> k = sharding.take(d.k.data(), 32, r);
      const std::vector<float> v = sharding.take(d.v.data(), 32, r);
      std::vector<float> out(64), lse(4);
      sharded_decode_attention(c, d.q.data() + (context - 1) * 64, ShardRows{query_runs}, k.data(),
                               v.data(), ShardRows{sharding.runs(r)}, shape, RingAttentionOptions{},
                               out.data(), lse.data());
    }).rethrow_first_error();
    for (const CountingCommunicator* c : counters) EXPECT_EQ(c->ring_bytes, 0u);
    gathered.push_back(counters[0]->gather_bytes);
  }
  EXPECT_EQ(gathered[0], gathered[1]) << "decode traffic must not grow with the context";
  // The partial itself: out (H·d) and lse (H) floats, plus the configuration header.
  EXPECT_LT(gathered[0], (64 + 4) * sizeof(float) + 256);
}

// ---------------------------------------------------------------------------------------------
// Communicator: timeouts, mismatches and failures end with an error on every rank, never a hang

void expect_communication_error(const std::exception_ptr& error, const std::string& needle,
                                const std::string& what) {
  ASSERT_TRUE(error) << what << ": no error";
  try {
    std::rethrow_exception(error);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::communication) << what << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << what << ": '" << e.what() << "' does not mention '" << needle << "'";
  }
}

TEST(Communicator, RingExchangeAllGatherBroadcastAndBarrierMoveTheRightBytes) {
  for (int world = 1; world <= 8; ++world) {
    auto group = group_of(world, true);
    run_ranks(group, [&](Communicator& c) {
      const int r = c.rank();
      // Two ring hops in flight order, as the ring attention posts them.
      for (int hop = 0; hop < 2; ++hop) {
        std::vector<int> send(5, r * 10 + hop), receive(5, -1);
        auto pending = c.start_ring_exchange(std::as_bytes(std::span(send)),
                                             std::as_writable_bytes(std::span(receive)),
                                             "hop " + std::to_string(hop));
        pending->wait();
        const int previous = (r + world - 1) % world;
        for (const int x : receive) ASSERT_EQ(x, previous * 10 + hop);
      }
      const std::int64_t mine = 100 + r;
      std::vector<std::int64_t> all(static_cast<std::size_t>(world));
      c.all_gather(std::as_bytes(std::span(&mine, 1)), std::as_writable_bytes(std::span(all)),
                   "gather");
      for (int i = 0; i < world; ++i) ASSERT_EQ(all[static_cast<std::size_t>(i)], 100 + i);
      std::int64_t value = r == world - 1 ? 4242 : 0;
      c.broadcast(std::as_writable_bytes(std::span(&value, 1)), world - 1, "broadcast");
      ASSERT_EQ(value, 4242);
      c.barrier("end");
      check_same_configuration(c, "same everywhere");
    }).rethrow_first_error();
  }
}

TEST(Communicator, PostingARingExchangeDoesNotWaitForThePeer) {
  // Overlap (§1.6): start_ring_exchange returns at once, so the caller computes while the peer
  // is still busy; only wait() blocks.
  auto group = group_of(2, false, 10s);
  std::vector<std::chrono::steady_clock::duration> post_time(2), wait_time(2);
  run_ranks(group, [&](Communicator& c) {
    if (c.rank() == 1) std::this_thread::sleep_for(300ms);  // a slow peer
    std::vector<std::byte> send(1024), receive(1024);
    const auto start = std::chrono::steady_clock::now();
    auto pending = c.start_ring_exchange(send, receive, "hop 1");
    const auto posted = std::chrono::steady_clock::now();
    pending->wait();
    post_time[static_cast<std::size_t>(c.rank())] = posted - start;
    wait_time[static_cast<std::size_t>(c.rank())] = std::chrono::steady_clock::now() - posted;
  }).rethrow_first_error();
  EXPECT_LT(post_time[0], 100ms);
  EXPECT_GT(wait_time[0], 150ms) << "rank 0 waited for its slow peer in wait(), not in the post";
}

TEST(RingAttention, RefusesTheWholeSequenceOnEveryRank) {
  // Pitfall 6: every rank passing all positions (instead of its shard) is refused on every rank.
  const int world = 3;
  auto group = group_of(world, false, 10s);
  const RankOutcomes outcomes = run_ranks(group, [&](Communicator& c) {
    const AttentionShape shape{2, 2, 8};
    const std::int64_t n = 10;
    std::vector<float> q(n * 16), k(n * 16), v(n * 16), out(n * 16), lse(n * 2);
    const std::vector<PositionRun> everything{{0, n, 1}};
    const ShardRows all{everything};
    ring_attention(c, q.data(), all, k.data(), v.data(), all, shape, RingAttentionOptions{},
                   out.data(), lse.data());
  });
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(outcomes.errors[static_cast<std::size_t>(r)]) << "rank " << r;
    try {
      std::rethrow_exception(outcomes.errors[static_cast<std::size_t>(r)]);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("only its shard"), std::string::npos) << e.what();
    }
  }
}

TEST(Communicator, AMissingRankTimesOutOnEveryWaitingRankWithoutHanging) {
  auto group = group_of(4, false, 150ms);
  const auto start = std::chrono::steady_clock::now();
  const RankOutcomes outcomes = run_ranks(group, [&](Communicator& c) {
    if (c.rank() == 2) return;  // a rank that never joins (crashed, or stuck elsewhere)
    Problem p;
    p.length = 40;
    std::mt19937_64 rng(1);
    const Data d = random_data(p, rng);
    const SequenceSharding s(p.length, 4, ShardLayout::zigzag);
    const std::int64_t w = p.shape.num_heads * p.shape.head_dim;
    const std::int64_t kw = p.shape.num_kv_heads * p.shape.head_dim;
    const auto q = s.take(d.q.data(), w, c.rank());
    const auto k = s.take(d.k.data(), kw, c.rank());
    const auto v = s.take(d.v.data(), kw, c.rank());
    std::vector<float> out(q.size()), lse(static_cast<std::size_t>(s.rows(c.rank()) * 4));
    const ShardRows mine{s.runs(c.rank())};
    ring_attention(c, q.data(), mine, k.data(), v.data(), mine, p.shape, ring_options(p),
                   out.data(), lse.data());
  });
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, 5s);
  EXPECT_FALSE(outcomes.errors[2]);
  for (const int r : {0, 1, 3}) {
    expect_communication_error(outcomes.errors[static_cast<std::size_t>(r)], "rank",
                               "rank " + std::to_string(r));
  }
  // The cause names the operation and the silent peer.
  ASSERT_GE(outcomes.first_failed_rank, 0);
  expect_communication_error(outcomes.errors[static_cast<std::size_t>(outcomes.first_failed_rank)],
                             "timed out after 150 ms waiting for rank 2", "cause");
}

TEST(Communicator, MismatchedConfigurationFailsOnEveryRank) {
  // One rank believes in a different head count: every rank throws, naming both configurations.
  for (const int world : {2, 5}) {
    auto group = group_of(world, false, 10s);
    const auto start = std::chrono::steady_clock::now();
    const RankOutcomes outcomes = run_ranks(group, [&](Communicator& c) {
      AttentionShape shape{4, 2, 8};
      if (c.rank() == 1) shape.num_heads = 2;
      std::vector<float> q(4 * 8), k(2 * 8), v(2 * 8), out(4 * 8), lse(4);
      const std::vector<PositionRun> runs{{static_cast<std::int64_t>(c.rank()), 1, 1}};
      const ShardRows mine{runs};
      ring_attention(c, q.data(), mine, k.data(), v.data(), mine, shape, RingAttentionOptions{},
                     out.data(), lse.data());
    });
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
    for (int r = 0; r < world; ++r) {
      expect_communication_error(outcomes.errors[static_cast<std::size_t>(r)], "disagree",
                                 "rank " + std::to_string(r));
    }
  }
  auto group = group_of(3, false, 10s);
  const RankOutcomes outcomes = run_ranks(group, [&](Communicator& c) {
    check_same_configuration(c, c.rank() == 2 ? "bf16 KV" : "f32 KV");
  });
  for (int r = 0; r < 3; ++r) {
    expect_communication_error(outcomes.errors[static_cast<std::size_t>(r)],
                               "ranks 0, 1 [f32 KV]; rank 2 [bf16 KV]", "handshake");
  }
}

TEST(Communicator, DifferentOperationSequencesFailOnBothSides) {
  // Pitfall 8: ranks issuing different collectives must not hang.
  auto group = group_of(2, false, 10s);
  const auto start = std::chrono::steady_clock::now();
  const RankOutcomes outcomes = run_ranks(group, [&](Communicator& c) {
    if (c.rank() == 0) {
      c.barrier("layer 3");
    } else {
      std::int64_t x = 1;
      std::vector<std::int64_t> all(2);
      c.all_gather(std::as_bytes(std::span(&x, 1)), std::as_writable_bytes(std::span(all)),
                   "layer 3");
    }
  });
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  for (int r = 0; r < 2; ++r) {
    expect_communication_error(outcomes.errors[static_cast<std::size_t>(r)], "different sequences",
                               "rank " + std::to_string(r));
  }
  // A ring exchange whose sizes disagree.
  auto pair = group_of(2, false, 10s);
  const RankOutcomes sizes = run_ranks(pair, [&](Communicator& c) {
    std::vector<std::byte> send(c.rank() == 0 ? 8 : 16), receive(8);
    c.start_ring_exchange(send, receive, "hop 1")->wait();
  });
  // The receiver detects it; rank 1 may have finished its exchange before the abort (sizes are
  // agreed by the handshake before any exchange in ring_attention, so this is a transport check).
  expect_communication_error(sizes.errors[0], "sent 16 bytes, expected 8", "size");
}

TEST(Communicator, ARankThatFailsLocallyReleasesTheOthersAtOnce) {
  // With a long timeout, the other ranks must learn of the failure from the abort, not wait.
  auto group = group_of(4, false, 60s);
  const auto start = std::chrono::steady_clock::now();
  const RankOutcomes outcomes = run_ranks(group, [&](Communicator& c) {
    std::vector<float> q(2 * 8), k(2 * 8), v(2 * 8), out(2 * 8), lse(2);
    std::vector<PositionRun> runs{{static_cast<std::int64_t>(c.rank()), 1, 1}};
    if (c.rank() == 3) runs[0].stride = 0;  // impossible: invalid_argument on this rank only
    const ShardRows mine{runs};
    ring_attention(c, q.data(), mine, k.data(), v.data(), mine, AttentionShape{2, 2, 8},
                   RingAttentionOptions{}, out.data(), lse.data());
  });
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  ASSERT_EQ(outcomes.first_failed_rank, 3);
  try {
    std::rethrow_exception(outcomes.errors[3]);
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
  }
  for (int r = 0; r < 3; ++r) {
    expect_communication_error(outcomes.errors[static_cast<std::size_t>(r)], "rank 3 failed",
                               "rank " + std::to_string(r));
  }
  EXPECT_THROW(make_in_process_group(0), Error);
  EXPECT_THROW(make_in_process_group(2, 0ms), Error);
}

}  // namespace
}  // namespace lwm
