// blockwise_attention and merge_attention against a naive double-precision
// softmax(Q·Kᵀ·scale + mask)·V that materialises every score (spec lwm-reference §7,
// ring-attention §1.1 and the pitfalls of §1.9).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "lwm/attention.h"
#include "test_support.h"

namespace lwm {
namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

std::string seed_trace(std::uint64_t seed) {
  return "LWM_TEST_SEED=" + std::to_string(seed);
}

struct Case {
  std::int64_t queries = 1, keys = 1;
  std::int64_t heads = 1, kv_heads = 1, head_dim = 8;
  std::int64_t query_chunk = 256, key_chunk = 512;
  bool causal = true;
  std::int64_t query_offset = 0;
  std::vector<std::int32_t> query_segments, key_segments;  // empty: none
  float scale = 0.0f;
  float input_stddev = 1.0f;

  std::string describe() const {
    std::ostringstream s;
    s << "queries " << queries << " keys " << keys << " heads " << heads << "/" << kv_heads
      << " head_dim " << head_dim << " chunks " << query_chunk << "x" << key_chunk
      << (causal ? " causal" : " full") << " offset " << query_offset
      << (query_segments.empty() ? "" : " segments") << " scale " << scale << " stddev "
      << input_stddev;
    return s.str();
  }
};

struct Reference {
  std::vector<double> out;  // [queries, heads, head_dim]
  std::vector<double> lse;  // [heads, queries]
  double max_abs_logit = 0.0;
};

// Plain attention in double. GQA: query head h reads kv head h / (heads / kv_heads), the grouping
// of Hugging Face's repeat_kv and llama.cpp (consecutive query heads share a kv head).
Reference naive_attention(const Case& c, const std::vector<float>& q, const std::vector<float>& k,
                          const std::vector<float>& v) {
  const std::int64_t d = c.head_dim, group = c.heads / c.kv_heads;
  const double scale = c.scale != 0.0f ? c.scale : 1.0 / std::sqrt(static_cast<double>(d));
  Reference r;
  r.out.assign(static_cast<std::size_t>(c.queries * c.heads * d), 0.0);
  r.lse.assign(static_cast<std::size_t>(c.heads * c.queries), -INFINITY);
  std::vector<double> scores(static_cast<std::size_t>(c.keys));
  std::vector<bool> allowed(static_cast<std::size_t>(c.keys));
  for (std::int64_t i = 0; i < c.queries; ++i) {
    for (std::int64_t h = 0; h < c.heads; ++h) {
      const std::int64_t g = h / group;
      double max = -INFINITY;
      for (std::int64_t j = 0; j < c.keys; ++j) {
        bool ok = !c.causal || j <= c.query_offset + i;
        if (!c.query_segments.empty()) ok = ok && c.query_segments[i] == c.key_segments[j];
        allowed[j] = ok;
        double dot = 0.0;
        for (std::int64_t e = 0; e < d; ++e)
          dot += double{q[(i * c.heads + h) * d + e]} * k[(j * c.kv_heads + g) * d + e];
        scores[j] = dot * scale;
        r.max_abs_logit = std::max(r.max_abs_logit, std::fabs(scores[j]));
        if (ok) max = std::max(max, scores[j]);
      }
      if (max == -INFINITY) continue;  // no key allowed: out 0, lse −inf
      double sum = 0.0;
      for (std::int64_t j = 0; j < c.keys; ++j) {
        if (!allowed[j]) continue;
        const double p = std::exp(scores[j] - max);
        sum += p;
        for (std::int64_t e = 0; e < d; ++e)
          r.out[(i * c.heads + h) * d + e] += p * v[(j * c.kv_heads + g) * d + e];
      }
      for (std::int64_t e = 0; e < d; ++e) r.out[(i * c.heads + h) * d + e] /= sum;
      r.lse[h * c.queries + i] = max + std::log(sum);
    }
  }
  return r;
}

struct Inputs {
  std::vector<float> q, k, v;
};

Inputs random_inputs(const Case& c, std::mt19937_64& rng) {
  Inputs in;
  in.q = test::random_normal(static_cast<std::size_t>(c.queries * c.heads * c.head_dim), rng,
                             c.input_stddev);
  in.k = test::random_normal(static_cast<std::size_t>(c.keys * c.kv_heads * c.head_dim), rng,
                             c.input_stddev);
  in.v = test::random_normal(static_cast<std::size_t>(c.keys * c.kv_heads * c.head_dim), rng);
  return in;
}

AttentionOptions options_of(const Case& c) {
  AttentionOptions o;
  o.query_chunk = c.query_chunk;
  o.key_chunk = c.key_chunk;
  o.causal = c.causal;
  o.query_offset = c.query_offset;
  o.query_segments = c.query_segments.empty() ? nullptr : c.query_segments.data();
  o.key_segments = c.key_segments.empty() ? nullptr : c.key_segments.data();
  o.scale = c.scale;
  return o;
}

AttentionShape shape_of(const Case& c) {
  return AttentionShape{c.heads, c.kv_heads, c.head_dim};
}

// Tolerances. Scores carry float32 error of about sqrt(d)·u relative to their magnitude (≤ 1e-6
// of max|logit|); an output row moves by that times the spread of v (|v| ≲ 5), and the float32
// weighted sum adds ~1e-6. So outputs get 2e-5·(1 + max|logit|) absolute, LSE gets
// 2e-6·(1 + max|logit|) + 1e-6·|lse|. A wrongly masked key among 257 moves an output by ~4e-3,
// 40× the tolerance of ordinary cases.
void expect_matches(const Case& c, const Reference& r, const std::vector<float>& out,
                    const std::vector<float>& lse, const std::string& what) {
  const double out_atol = 2e-5 * (1.0 + r.max_abs_logit);
  const double lse_atol = 2e-6 * (1.0 + r.max_abs_logit);
  for (std::size_t i = 0; i < out.size(); ++i)
    ASSERT_TRUE(std::isfinite(out[i])) << what << " output " << i << " is " << out[i];
  const test::Closeness co = test::compare(out.data(), r.out.data(), out.size(), out_atol, 1e-5);
  EXPECT_TRUE(co.ok) << what << ": output element " << co.worst_index << " (query "
                     << co.worst_index / static_cast<std::size_t>(c.heads * c.head_dim) << ") is "
                     << out[co.worst_index] << ", expected " << r.out[co.worst_index]
                     << "; max abs error " << co.max_abs_error;
  for (std::int64_t h = 0; h < c.heads; ++h) {
    for (std::int64_t i = 0; i < c.queries; ++i) {
      const std::size_t at = static_cast<std::size_t>(h * c.queries + i);
      const double expected = r.lse[at];
      if (expected == -INFINITY) {
        ASSERT_TRUE(std::isinf(lse[at]) && lse[at] < 0)
            << what << ": head " << h << " query " << i << " has no allowed key, lse " << lse[at];
        for (std::int64_t e = 0; e < c.head_dim; ++e)
          ASSERT_EQ(out[(i * c.heads + h) * c.head_dim + e], 0.0f)
              << what << ": empty row must be 0";
      } else {
        ASSERT_NEAR(lse[at], expected, lse_atol + 1e-6 * std::fabs(expected))
            << what << ": lse head " << h << " query " << i;
      }
    }
  }
}

void run_case(const Case& c, std::mt19937_64& rng) {
  SCOPED_TRACE(c.describe());
  const Inputs in = random_inputs(c, rng);
  const Reference r = naive_attention(c, in.q, in.k, in.v);
  // Outputs start as NaN so a row the kernel forgets to write shows up.
  std::vector<float> out(r.out.size(), kNaN), lse(r.lse.size(), kNaN);
  blockwise_attention(in.q.data(), in.k.data(), in.v.data(), c.queries, c.keys, shape_of(c),
                      options_of(c), out.data(), lse.data());
  expect_matches(c, r, out, lse, "blockwise");
  // lse is optional: the same output without it.
  std::vector<float> out_only(r.out.size(), kNaN);
  blockwise_attention(in.q.data(), in.k.data(), in.v.data(), c.queries, c.keys, shape_of(c),
                      options_of(c), out_only.data(), nullptr);
  const test::Closeness same = test::compare(out_only.data(), r.out.data(), out_only.size(),
                                             2e-5 * (1.0 + r.max_abs_logit), 1e-5);
  EXPECT_TRUE(same.ok) << "without lse: element " << same.worst_index;
}

// Non-decreasing segment ids with random boundaries (packed documents).
std::vector<std::int32_t> packed_segments(std::int64_t n, std::mt19937_64& rng) {
  std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
  std::uniform_int_distribution<int> boundary(0, 9);
  std::int32_t id = 0;
  for (auto& x : ids) {
    if (boundary(rng) == 0) ++id;
    x = id;
  }
  return ids;
}

std::vector<Case> generated_cases(std::mt19937_64& rng) {
  const std::int64_t token_counts[] = {1, 2, 7, 33, 130, 257};
  const std::int64_t head_configs[][2] = {{1, 1}, {2, 1}, {4, 2}, {4, 4}, {3, 1}, {4, 1}};
  const std::int64_t chunks[] = {1, 2, 3, 7, 16, 64, 100, 512};
  std::uniform_int_distribution<std::size_t> pick_chunk(0, std::size(chunks) - 1);
  std::uniform_int_distribution<std::size_t> pick_heads(0, std::size(head_configs) - 1);
  std::uniform_int_distribution<std::int64_t> pick_offset(1, 40);
  std::vector<Case> cases;
  int serial = 0;
  for (std::int64_t tokens : token_counts) {
    for (int variant = 0; variant < 8; ++variant) {
      Case c;
      const auto& heads = head_configs[pick_heads(rng)];
      c.heads = heads[0];
      c.kv_heads = heads[1];
      // head_dim 128 only on every third case: the largest cost of the naive reference.
      c.head_dim = serial % 3 == 0 ? 128 : serial % 3 == 1 ? 64 : 8;
      ++serial;
      c.query_chunk = chunks[pick_chunk(rng)];
      c.key_chunk = chunks[pick_chunk(rng)];
      c.queries = c.keys = tokens;
      switch (variant) {
        case 0:
          c.causal = true;
          break;
        case 1:
          c.causal = false;
          break;
        case 2:  // chunked prefill: the queries are the last rows of the keys
          c.causal = true;
          c.query_offset = pick_offset(rng);
          c.keys = tokens + c.query_offset;
          break;
        case 3:  // the same, non-causal (the offset must then not matter)
          c.causal = false;
          c.query_offset = pick_offset(rng);
          c.keys = tokens + c.query_offset;
          break;
        case 4:  // packed sequences, causal
        case 5:  // packed sequences, non-causal
          c.causal = variant == 4;
          c.key_segments = packed_segments(c.keys, rng);
          c.query_segments = c.key_segments;
          break;
        case 6: {  // packed, chunked prefill: query ids are the last rows' ids
          c.causal = true;
          c.query_offset = pick_offset(rng);
          c.keys = tokens + c.query_offset;
          c.key_segments = packed_segments(c.keys, rng);
          c.query_segments.assign(c.key_segments.end() - tokens, c.key_segments.end());
          break;
        }
        case 7: {  // explicit scale, causal, keys beyond the diagonal of the last query exist
          c.causal = true;
          c.scale = 0.3f;
          c.query_offset = pick_offset(rng) % 5;
          c.keys = tokens + c.query_offset + 3;
          break;
        }
      }
      cases.push_back(c);
    }
  }
  return cases;
}

TEST(BlockwiseAttention, MatchesNaiveFp64OverRandomShapes) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (const Case& c : generated_cases(rng)) run_case(c, rng);
}

// Every chunking of the same problem (1, odd, equal to, and larger than the sequence) gives the
// reference result: the online softmax must not depend on where the blocks fall.
TEST(BlockwiseAttention, ChunkSizesDoNotChangeTheResult) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (bool causal : {true, false}) {
    for (std::int64_t qc : {1, 5, 33, 1000}) {
      for (std::int64_t kc : {1, 6, 33, 1000}) {
        Case c;
        c.queries = 33;
        c.keys = 45;
        c.query_offset = 12;
        c.heads = 4;
        c.kv_heads = 2;
        c.head_dim = 16;
        c.query_chunk = qc;
        c.key_chunk = kc;
        c.causal = causal;
        run_case(c, rng);
      }
    }
  }
}

// Segment ids that are not sorted (nothing in the contract says they must be): a kernel that
// skips blocks by comparing segment ranges would drop allowed keys here.
TEST(BlockwiseAttention, UnsortedSegmentIds) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<std::int32_t> id(0, 2);
  for (bool causal : {false, true}) {
    Case c;
    c.queries = c.keys = 40;
    c.heads = c.kv_heads = 2;
    c.head_dim = 8;
    c.query_chunk = 8;
    c.key_chunk = 8;
    c.causal = causal;
    for (int i = 0; i < 40; ++i) c.key_segments.push_back(id(rng));
    c.query_segments = c.key_segments;
    run_case(c, rng);
  }
}

// Rows that may attend to no key: out exactly 0 and lse −inf (never NaN, never a uniform average
// as the JAX reference would give with its dtype-min bias; attention.h chose 0/−inf so merges can
// ignore such rows).
TEST(BlockwiseAttention, RowsWithNoAllowedKey) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (bool causal : {false, true}) {
    for (std::int64_t kc : {1, 4, 64}) {
      Case c;
      c.queries = 9;
      c.keys = 12;
      c.query_offset = 3;
      c.heads = 2;
      c.kv_heads = 1;
      c.head_dim = 8;
      c.query_chunk = 4;
      c.key_chunk = kc;
      c.causal = causal;
      // Keys: segment 1 for the first 6, then 2. Queries: 7 (absent from the keys) on every
      // third row; the others in segment 2, which under the causal mask row 0 (sees keys 0..3)
      // cannot reach either.
      for (std::int64_t j = 0; j < c.keys; ++j) c.key_segments.push_back(j < 6 ? 1 : 2);
      for (std::int64_t i = 0; i < c.queries; ++i) c.query_segments.push_back(i % 3 == 0 ? 7 : 2);
      run_case(c, rng);
    }
  }
}

TEST(BlockwiseAttention, NoKeysAtAll) {
  const AttentionShape shape{2, 1, 8};
  AttentionOptions o;
  o.causal = false;
  std::vector<float> q(3 * 2 * 8, 1.0f), kv(8, 1.0f), out(q.size(), kNaN), lse(2 * 3, kNaN);
  blockwise_attention(q.data(), kv.data(), kv.data(), 3, 0, shape, o, out.data(), lse.data());
  for (float x : out) EXPECT_EQ(x, 0.0f);
  for (float x : lse) EXPECT_TRUE(std::isinf(x) && x < 0);
}

// Peaked softmax: logits in the hundreds (scale 4, head_dim 64) and in the tens of thousands
// (inputs ×30) must give finite results close to the reference; a kernel that exponentiates
// without subtracting the running max overflows here.
TEST(BlockwiseAttention, LargeLogitsStayFinite) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (float stddev : {1.0f, 30.0f}) {
    for (bool causal : {true, false}) {
      Case c;
      c.queries = 20;
      c.keys = 50;
      c.query_offset = 30;
      c.heads = 2;
      c.kv_heads = 2;
      c.head_dim = 64;
      c.query_chunk = 7;
      c.key_chunk = 9;
      c.causal = causal;
      c.scale = 4.0f;
      c.input_stddev = stddev;
      run_case(c, rng);
    }
  }
}

// --- merge_attention --------------------------------------------------------------------------

// Splitting the keys into disjoint ranges, attending to each and merging by LSE equals attending
// to all of them (the basis of the ring and of split decode).
TEST(MergeAttention, MergedPartsEqualTheWhole) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 12; ++trial) {
    Case c;
    c.causal = trial % 2 == 0;
    c.queries = trial < 6 ? 17 : 40;
    c.query_offset = trial < 6 ? 23 : 61;
    c.keys = c.queries + c.query_offset;
    c.heads = trial % 3 == 0 ? 4 : 2;
    c.kv_heads = trial % 3 == 0 ? 2 : 2;
    c.head_dim = trial % 4 == 0 ? 64 : 16;
    c.query_chunk = 5;
    c.key_chunk = 7;
    if (trial % 4 == 1) {  // packed segments: some rows see nothing inside some parts
      c.key_segments = packed_segments(c.keys, rng);
      c.query_segments.assign(c.key_segments.end() - c.queries, c.key_segments.end());
    }
    if (trial == 11)
      c.input_stddev = 20.0f;  // LSEs in the hundreds: a naive e^{lse} overflows float
    SCOPED_TRACE(c.describe());
    const int parts = 2 + trial % 3;
    // Split points strictly inside [1, query_offset] so every part starts at or before the first
    // query's diagonal and keeps a non-negative local offset (query_offset − part start).
    std::vector<std::int64_t> cuts;
    std::uniform_int_distribution<std::int64_t> cut(1, c.query_offset);
    while (static_cast<int>(cuts.size()) < parts - 1) {
      const std::int64_t x = cut(rng);
      if (std::find(cuts.begin(), cuts.end(), x) == cuts.end()) cuts.push_back(x);
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.insert(cuts.begin(), 0);
    cuts.push_back(c.keys);

    const Inputs in = random_inputs(c, rng);
    const Reference whole = naive_attention(c, in.q, in.k, in.v);
    const AttentionShape shape = shape_of(c);
    const std::size_t kv_row = static_cast<std::size_t>(c.kv_heads * c.head_dim);
    std::vector<float> out_a, lse_a;
    // Merge in a shuffled order: the result may not depend on it.
    std::vector<std::size_t> order(cuts.size() - 1);
    for (std::size_t p = 0; p < order.size(); ++p) order[p] = p;
    std::shuffle(order.begin(), order.end(), rng);
    for (std::size_t p : order) {
      const std::int64_t begin = cuts[p], end = cuts[p + 1];
      AttentionOptions o = options_of(c);
      o.query_offset = c.query_offset - begin;
      if (!c.key_segments.empty()) o.key_segments = c.key_segments.data() + begin;
      std::vector<float> out(whole.out.size(), kNaN), lse(whole.lse.size(), kNaN);
      blockwise_attention(in.q.data(), in.k.data() + begin * kv_row, in.v.data() + begin * kv_row,
                          c.queries, end - begin, shape, o, out.data(), lse.data());
      if (out_a.empty()) {
        out_a = out;
        lse_a = lse;
      } else {
        merge_attention(out_a.data(), lse_a.data(), out.data(), lse.data(), c.queries, shape);
      }
    }
    expect_matches(c, whole, out_a, lse_a, std::to_string(parts) + " merged parts");
  }
}

// merge_attention on its own, against the formula in double, with LSEs far apart, large, and −inf
// on either or both sides.
TEST(MergeAttention, FormulaWithExtremeAndEmptyPartials) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  const AttentionShape shape{3, 1, 5};
  const std::int64_t queries = 8;
  const std::size_t n_out = static_cast<std::size_t>(queries * shape.num_heads * shape.head_dim);
  const std::size_t n_lse = static_cast<std::size_t>(queries * shape.num_heads);
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> out_a = test::random_normal(n_out, rng),
                     out_b = test::random_normal(n_out, rng);
  std::vector<float> lse_a(n_lse), lse_b(n_lse);
  const float pairs[][2] = {{0.0f, 0.0f},          {1.0f, -2.0f},        {1e4f, 1e4f - 3.0f},
                            {-1e4f, -1e4f + 1.0f}, {-inf, 2.0f},         {2.0f, -inf},
                            {-inf, -inf},          {100.0f, -100.0f},    {5e4f, 4.9e4f},
                            {-5.0f, 80.0f},        {3.0f, 3.0f + 1e-3f}, {88.0f, 89.0f}};
  for (std::size_t i = 0; i < n_lse; ++i) {
    lse_a[i] = pairs[i % std::size(pairs)][0];
    lse_b[i] = pairs[i % std::size(pairs)][1];
  }
  // Partial outputs of empty rows are 0 by contract.
  for (std::int64_t h = 0; h < shape.num_heads; ++h)
    for (std::int64_t i = 0; i < queries; ++i)
      for (std::int64_t e = 0; e < shape.head_dim; ++e) {
        const std::size_t at =
            static_cast<std::size_t>((i * shape.num_heads + h) * shape.head_dim + e);
        if (lse_a[h * queries + i] == -inf) out_a[at] = 0.0f;
        if (lse_b[h * queries + i] == -inf) out_b[at] = 0.0f;
      }
  std::vector<double> expected_out(n_out), expected_lse(n_lse);
  for (std::int64_t h = 0; h < shape.num_heads; ++h) {
    for (std::int64_t i = 0; i < queries; ++i) {
      const double la = lse_a[h * queries + i], lb = lse_b[h * queries + i];
      const double m = std::max(la, lb);
      double wa = 0.0, wb = 0.0, lse = -INFINITY;
      if (m != -INFINITY) {
        const double ea = std::exp(la - m), eb = std::exp(lb - m);
        wa = ea / (ea + eb);
        wb = eb / (ea + eb);
        lse = m + std::log(ea + eb);
      }
      expected_lse[h * queries + i] = lse;
      for (std::int64_t e = 0; e < shape.head_dim; ++e) {
        const std::size_t at =
            static_cast<std::size_t>((i * shape.num_heads + h) * shape.head_dim + e);
        expected_out[at] = wa * out_a[at] + wb * out_b[at];
      }
    }
  }
  merge_attention(out_a.data(), lse_a.data(), out_b.data(), lse_b.data(), queries, shape);
  const test::Closeness c = test::compare(out_a.data(), expected_out.data(), n_out, 1e-6, 1e-5);
  EXPECT_TRUE(c.ok) << "output element " << c.worst_index << " is " << out_a[c.worst_index]
                    << ", expected " << expected_out[c.worst_index];
  for (std::size_t i = 0; i < n_lse; ++i) {
    if (expected_lse[i] == -INFINITY) {
      EXPECT_TRUE(std::isinf(lse_a[i]) && lse_a[i] < 0) << "both empty: lse " << lse_a[i];
    } else {
      // 1 float ulp of |lse| ≤ 5e4 is 4e-3; allow two.
      EXPECT_NEAR(lse_a[i], expected_lse[i], 1e-6 + 2.5e-7 * std::fabs(expected_lse[i]))
          << "lse " << i;
    }
  }
}

}  // namespace
}  // namespace lwm
