// Backward kernels and the whole training model's gradient against central finite differences
// of independent fp64 forwards (fp64_reference.h), on fresh random data with odd shapes.
#include <gtest/gtest.h>

#include <functional>
#include <random>
#include <string>
#include <vector>

#include "fp64_reference.h"
#include "lwm/backward.h"
#include "lwm/ops.h"
#include "lwm/train/trainable_model.h"
#include "test_support.h"

namespace lwm {
namespace {

using test::numeric_gradient;
using test::widen;

// Σ R ∘ y: a scalar whose gradient with respect to y is R, so op backward(R) must equal the
// finite-difference gradient of this through the fp64 op.
double weighted_sum(const std::vector<double>& y, const std::vector<float>& r) {
  double s = 0;
  for (std::size_t i = 0; i < y.size(); ++i) s += y[i] * r[i];
  return s;
}

void expect_close(const std::vector<float>& actual, const std::vector<double>& expected,
                  double atol, double rtol, const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  const test::Closeness c =
      test::compare(actual.data(), expected.data(), actual.size(), atol, rtol);
  EXPECT_TRUE(c.ok) << what << ": worst index " << c.worst_index << " (" << actual[c.worst_index]
                    << " vs " << expected[c.worst_index] << "), max abs error " << c.max_abs_error;
}

TEST(Backward, LinearMatchesFiniteDifferences) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (auto [m, in, out] : {std::tuple{1, 3, 5}, {7, 13, 9}, {4, 33, 65}}) {
    const auto x = test::random_normal(static_cast<std::size_t>(m * in), rng);
    const auto w = test::random_normal(static_cast<std::size_t>(in * out), rng);
    const auto r = test::random_normal(static_cast<std::size_t>(m * out), rng);
    std::vector<float> dx(x.size()), dw(w.size(), 0.5f);
    cpu::linear_backward_input(r.data(), m, w.data(), in, out, dx.data());
    cpu::linear_backward_weight(x.data(), r.data(), m, in, out, dw.data());
    const auto wd = widen(w), xd = widen(x);
    const auto gx = numeric_gradient(
        [&](const auto& xs) { return weighted_sum(test::matmul(xs, wd.data(), m, in, out), r); },
        xd);
    auto gw = numeric_gradient(
        [&](const auto& ws) { return weighted_sum(test::matmul(xd, ws.data(), m, in, out), r); },
        wd);
    for (double& g : gw) g += 0.5;  // the weight gradient accumulates onto what was there
    expect_close(dx, gx, 1e-4, 1e-4, "dx " + std::to_string(in));
    expect_close(dw, gw, 1e-4, 1e-4, "dw " + std::to_string(in));
  }
}

TEST(Backward, RmsNormMatchesFiniteDifferences) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (auto [m, n] : {std::pair{1, 2}, {5, 7}, {3, 33}}) {
    const auto x = test::random_normal(static_cast<std::size_t>(m * n), rng);
    const auto gain = test::random_normal(static_cast<std::size_t>(n), rng);
    const auto r = test::random_normal(x.size(), rng);
    const double eps = 1e-5;
    std::vector<float> dx(x.size()), dg(gain.size(), 0.0f);
    cpu::rms_norm_backward(x.data(), r.data(), m, n, gain.data(), static_cast<float>(eps),
                           dx.data(), dg.data());
    const auto xd = widen(x), gd = widen(gain);
    const auto gx = numeric_gradient(
        [&](const auto& xs) { return weighted_sum(test::rms_norm(xs, gd.data(), m, n, eps), r); },
        xd);
    const auto gg = numeric_gradient(
        [&](const auto& gs) { return weighted_sum(test::rms_norm(xd, gs.data(), m, n, eps), r); },
        gd);
    expect_close(dx, gx, 1e-4, 1e-4, "dx");
    expect_close(dg, gg, 1e-4, 1e-4, "dgain");
  }
}

TEST(Backward, SwigluAndEmbeddingMatchFiniteDifferences) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::size_t n = 37;
  const auto gate = test::random_normal(n, rng, 3.0f), up = test::random_normal(n, rng),
             r = test::random_normal(n, rng);
  std::vector<float> dgate(n), dup(n);
  cpu::swiglu_backward(gate.data(), up.data(), r.data(), static_cast<std::int64_t>(n), dgate.data(),
                       dup.data());
  auto swiglu = [](const std::vector<double>& g, const std::vector<double>& u) {
    std::vector<double> y(g.size());
    for (std::size_t i = 0; i < g.size(); ++i) y[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
    return y;
  };
  const auto gd = widen(gate), ud = widen(up);
  expect_close(dgate,
               numeric_gradient([&](const auto& g) { return weighted_sum(swiglu(g, ud), r); }, gd),
               1e-4, 1e-4, "dgate");
  expect_close(dup,
               numeric_gradient([&](const auto& u) { return weighted_sum(swiglu(gd, u), r); }, ud),
               1e-4, 1e-4, "dup");

  // Embedding: repeated ids add up.
  const std::int64_t vocab = 6, dim = 5;
  const std::vector<std::int32_t> ids{3, 0, 3, 5, 3};
  const auto table = test::random_normal(static_cast<std::size_t>(vocab * dim), rng);
  const auto re = test::random_normal(ids.size() * dim, rng);
  std::vector<float> dtable(table.size(), 0.0f);
  cpu::embedding_backward(ids, re.data(), dim, dtable.data());
  auto lookup = [&](const std::vector<double>& t) {
    std::vector<double> y;
    for (auto id : ids) y.insert(y.end(), t.begin() + id * dim, t.begin() + (id + 1) * dim);
    return y;
  };
  expect_close(
      dtable,
      numeric_gradient([&](const auto& t) { return weighted_sum(lookup(t), re); }, widen(table)),
      1e-4, 1e-4, "dtable");
}

TEST(Backward, RopeMatchesFiniteDifferences) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::int64_t tokens = 5, heads = 3, d = 6;
  const std::vector<std::int64_t> positions{0, 7, 1, 1000, 65537};
  const RotaryEmbedding rope(d, 1e4, RopePairing::interleaved);
  std::vector<float> cos_t(tokens * d / 2), sin_t(tokens * d / 2);
  rope.angles(positions, cos_t.data(), sin_t.data());
  const auto x = test::random_normal(static_cast<std::size_t>(tokens * heads * d), rng);
  auto dx = test::random_normal(x.size(), rng);
  const auto r = dx;
  cpu::rope_backward(rope, dx.data(), tokens, heads, cos_t.data(), sin_t.data());
  const auto g = numeric_gradient(
      [&](const auto& xs) {
        auto y = xs;
        test::rope(y, positions, heads, d, 1e4);
        return weighted_sum(y, r);
      },
      widen(x));
  // Angles near 65537 rad: float32 vs float64 angle rounding differs by ~4e-3 rad.
  expect_close(dx, g, 2e-2, 1e-3, "drope");
}

struct AttentionCase {
  std::int64_t nq, nk, heads, kv_heads, d, offset, q_chunk, k_chunk;
  bool segments;
};

TEST(Backward, BlockwiseAttentionMatchesFiniteDifferences) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const AttentionCase cases[] = {
      {11, 11, 4, 2, 6, 0, 3, 4, true},   // GQA, segments, odd chunks
      {7, 7, 2, 2, 4, 0, 16, 16, false},  // one chunk
      {5, 12, 3, 1, 2, 7, 2, 5, false},   // chunked prefill: queries after 7 cached keys
      {9, 9, 2, 1, 8, 0, 4, 3, true},     // segments with a fully separate first token
  };
  for (const AttentionCase& c : cases) {
    SCOPED_TRACE("nq " + std::to_string(c.nq) + " nk " + std::to_string(c.nk) + " heads " +
                 std::to_string(c.heads) + "/" + std::to_string(c.kv_heads));
    const auto q = test::random_normal(static_cast<std::size_t>(c.nq * c.heads * c.d), rng);
    const auto k = test::random_normal(static_cast<std::size_t>(c.nk * c.kv_heads * c.d), rng);
    const auto v = test::random_normal(k.size(), rng);
    const auto r = test::random_normal(q.size(), rng);
    std::vector<std::int32_t> kseg(static_cast<std::size_t>(c.nk));
    for (std::int64_t j = 0; j < c.nk; ++j)
      kseg[j] = static_cast<std::int32_t>(j == 0 ? 0 : 1 + (j - 1) / 4);
    const std::int32_t* qs = c.segments ? kseg.data() + (c.nk - c.nq) : nullptr;
    const std::int32_t* ks = c.segments ? kseg.data() : nullptr;
    const AttentionShape shape{c.heads, c.kv_heads, c.d};
    AttentionOptions opt;
    opt.query_chunk = c.q_chunk;
    opt.key_chunk = c.k_chunk;
    opt.query_offset = c.offset;
    opt.query_segments = qs;
    opt.key_segments = ks;
    std::vector<float> out(q.size()), lse(static_cast<std::size_t>(c.heads * c.nq));
    blockwise_attention(q.data(), k.data(), v.data(), c.nq, c.nk, shape, opt, out.data(),
                        lse.data());
    std::vector<float> dq(q.size(), 0.0f), dk(k.size(), 0.0f), dv(v.size(), 0.0f);
    cpu::blockwise_attention_backward(q.data(), k.data(), v.data(), out.data(), lse.data(),
                                      r.data(), c.nq, c.nk, shape, opt, dq.data(), dk.data(),
                                      dv.data());
    const auto qd = widen(q), kd = widen(k), vd = widen(v);
    auto att = [&](const auto& a, const auto& b, const auto& cc) {
      return weighted_sum(
          test::attention(a, b, cc, c.nq, c.nk, c.heads, c.kv_heads, c.d, c.offset, qs, ks), r);
    };
    expect_close(dq, numeric_gradient([&](const auto& x) { return att(x, kd, vd); }, qd), 1e-4,
                 1e-3, "dq");
    expect_close(dk, numeric_gradient([&](const auto& x) { return att(qd, x, vd); }, kd), 1e-4,
                 1e-3, "dk");
    expect_close(dv, numeric_gradient([&](const auto& x) { return att(qd, kd, x); }, vd), 1e-4,
                 1e-3, "dv");
  }
}

// Shapes large enough for the kernels' multi-threaded paths, checked through directional
// derivatives: (f(x + hδ) − f(x − hδ)) / 2h = ⟨∇f, δ⟩ for a random direction δ.
double directional(const std::function<double(const std::vector<double>&)>& f,
                   const std::vector<float>& x, const std::vector<float>& direction,
                   double h = 1e-5) {
  std::vector<double> up(x.begin(), x.end()), down(x.begin(), x.end());
  for (std::size_t i = 0; i < x.size(); ++i) {
    up[i] += h * direction[i];
    down[i] -= h * direction[i];
  }
  return (f(up) - f(down)) / (2 * h);
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

TEST(Backward, LargeShapesMatchDirectionalDerivatives) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  {
    const std::int64_t m = 70, in = 130, out = 190;
    const auto x = test::random_normal(static_cast<std::size_t>(m * in), rng);
    const auto w = test::random_normal(static_cast<std::size_t>(in * out), rng);
    const auto r = test::random_normal(static_cast<std::size_t>(m * out), rng);
    std::vector<float> dx(x.size()), dw(w.size(), 0.0f);
    cpu::linear_backward_input(r.data(), m, w.data(), in, out, dx.data());
    cpu::linear_backward_weight(x.data(), r.data(), m, in, out, dw.data());
    const auto wd = widen(w), xd = widen(x);
    const auto dir_x = test::random_normal(x.size(), rng),
               dir_w = test::random_normal(w.size(), rng);
    const double ex = directional(
        [&](const auto& xs) { return weighted_sum(test::matmul(xs, wd.data(), m, in, out), r); }, x,
        dir_x);
    const double ew = directional(
        [&](const auto& ws) { return weighted_sum(test::matmul(xd, ws.data(), m, in, out), r); }, w,
        dir_w);
    EXPECT_NEAR(dot(dx, dir_x), ex, 1e-4 * std::abs(ex) + 1e-3);
    EXPECT_NEAR(dot(dw, dir_w), ew, 1e-4 * std::abs(ew) + 1e-3);
  }
  {
    const std::int64_t n = 150, heads = 4, kv_heads = 2, d = 16;
    const auto q = test::random_normal(static_cast<std::size_t>(n * heads * d), rng);
    const auto k = test::random_normal(static_cast<std::size_t>(n * kv_heads * d), rng);
    const auto v = test::random_normal(k.size(), rng);
    const auto r = test::random_normal(q.size(), rng);
    std::vector<std::int32_t> seg(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) seg[i] = static_cast<std::int32_t>(i / 37);
    const AttentionShape shape{heads, kv_heads, d};
    AttentionOptions opt;
    opt.query_chunk = 32;
    opt.key_chunk = 48;
    opt.query_segments = seg.data();
    opt.key_segments = seg.data();
    std::vector<float> out(q.size()), lse(static_cast<std::size_t>(heads * n));
    blockwise_attention(q.data(), k.data(), v.data(), n, n, shape, opt, out.data(), lse.data());
    std::vector<float> dq(q.size(), 0.0f), dk(k.size(), 0.0f), dv(v.size(), 0.0f);
    cpu::blockwise_attention_backward(q.data(), k.data(), v.data(), out.data(), lse.data(),
                                      r.data(), n, n, shape, opt, dq.data(), dk.data(), dv.data());
    const auto qd = widen(q), kd = widen(k), vd = widen(v);
    auto att = [&](const auto& a, const auto& b, const auto& c) {
      return weighted_sum(
          test::attention(a, b, c, n, n, heads, kv_heads, d, 0, seg.data(), seg.data()), r);
    };
    const auto dir_q = test::random_normal(q.size(), rng),
               dir_k = test::random_normal(k.size(), rng),
               dir_v = test::random_normal(v.size(), rng);
    const double eq = directional([&](const auto& x) { return att(x, kd, vd); }, q, dir_q);
    const double ek = directional([&](const auto& x) { return att(qd, x, vd); }, k, dir_k);
    const double ev = directional([&](const auto& x) { return att(qd, kd, x); }, v, dir_v);
    EXPECT_NEAR(dot(dq, dir_q), eq, 1e-4 * std::abs(eq) + 1e-3);
    EXPECT_NEAR(dot(dk, dir_k), ek, 1e-4 * std::abs(ek) + 1e-3);
    EXPECT_NEAR(dot(dv, dir_v), ev, 1e-4 * std::abs(ev) + 1e-3);
  }
}

// A tiny vision-language model with GQA and odd sizes; a batch with two packed rows, restarted
// positions, segments, mixed text/vision inputs and targets and random loss weights.
struct TinySetup {
  ModelConfig config;
  train::Batch batch;
};

TinySetup tiny_setup(std::mt19937_64& rng, bool vision) {
  TinySetup s;
  ModelConfig& c = s.config;
  c.vocab_size = 11;
  c.hidden_size = 12;
  c.intermediate_size = 7;
  c.num_layers = 2;
  c.num_heads = 3;
  c.num_kv_heads = 1;
  c.max_sequence_length = 64;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-5;
  c.vision_vocab_size = vision ? 5 : 0;
  train::Batch& b = s.batch;
  b.rows = 2;
  b.length = 9;
  const std::size_t n = 18;
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const std::vector<std::int32_t> segments{0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  for (std::size_t i = 0; i < n; ++i) {
    const bool vin = vision && unit(rng) < 0.4f;
    const bool vout = vision && unit(rng) < 0.4f;
    b.input_vision.push_back(vin);
    b.target_vision.push_back(vout);
    b.inputs.push_back(static_cast<std::int32_t>(rng() % (vin ? 5 : 11)));
    b.targets.push_back(static_cast<std::int32_t>(rng() % (vout ? 5 : 11)));
    b.loss_weights.push_back(unit(rng) < 0.25f ? 0.0f : unit(rng));
    b.segments.push_back(segments[i]);
  }
  // Positions restart per segment.
  for (std::size_t i = 0; i < n; ++i) {
    const bool first = i % 9 == 0 || b.segments[i] != b.segments[i - 1];
    b.positions.push_back(first ? 0 : b.positions[i - 1] + 1);
  }
  return s;
}

test::ReferenceParams reference_params(const train::TrainableModel& m,
                                       const std::vector<double>& p) {
  auto at = [&](const std::string& name) { return p.data() + m.parameter(name).offset; };
  test::ReferenceParams r{};
  r.wte = at("transformer.wte.embedding");
  r.ln_f = at("transformer.ln_f.kernel");
  r.lm_head = at("lm_head.kernel");
  if (m.config().has_vision()) {
    r.vte = at("transformer.vte.embedding");
    r.vision_head = at("vision_head.kernel");
  }
  for (std::int64_t l = 0; l < m.config().num_layers; ++l) {
    const std::string pre = "transformer.h." + std::to_string(l) + ".";
    r.layers.push_back({at(pre + "attention_norm.kernel"), at(pre + "ffn_norm.kernel"),
                        at(pre + "attention.wq.kernel"), at(pre + "attention.wk.kernel"),
                        at(pre + "attention.wv.kernel"), at(pre + "attention.wo.kernel"),
                        at(pre + "feed_forward.w1.kernel"), at(pre + "feed_forward.w2.kernel"),
                        at(pre + "feed_forward.w3.kernel")});
  }
  return r;
}

TEST(TrainableModel, WholeModelGradientMatchesFiniteDifferences) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (const bool vision : {true, false}) {
    SCOPED_TRACE(vision ? "vision-language" : "text");
    TinySetup s = tiny_setup(rng, vision);
    train::TrainableModel model(
        s.config, {.attention_query_chunk = 4, .attention_key_chunk = 3, .logits_chunk = 5});
    model.initialize(rng(), 0.5f);
    // Norm gains away from one so their gradients are exercised in general position.
    for (const auto& info : model.parameter_table()) {
      if (info.shape.size() == 1) {
        for (std::size_t i = 0; i < info.size; ++i)
          model.parameters()[info.offset + i] +=
              0.3f * static_cast<float>(std::normal_distribution<>(0, 1)(rng));
      }
    }
    model.zero_gradients();
    const double loss = model.forward_backward(s.batch);
    std::vector<double> params(model.parameters().begin(), model.parameters().end());
    auto reference = [&](const std::vector<double>& p) {
      return test::reference_loss(model.config(), reference_params(model, p), s.batch);
    };
    const double expected_loss = reference(params);
    EXPECT_NEAR(loss, expected_loss, 1e-5 * (1 + std::abs(expected_loss)));
    EXPECT_DOUBLE_EQ(model.loss(s.batch), loss);
    // Every element of small tensors, a random 48 of each larger one.
    std::vector<std::size_t> which;
    for (const auto& info : model.parameter_table()) {
      for (std::size_t i = 0; i < info.size; ++i) {
        if (info.size <= 48 || rng() % info.size < 48) which.push_back(info.offset + i);
      }
    }
    const std::vector<double> fd = numeric_gradient(reference, params, which);
    const std::vector<float> grads(model.gradients().begin(), model.gradients().end());
    for (const auto& info : model.parameter_table()) {
      std::vector<float> a;
      std::vector<double> e;
      for (std::size_t i : which) {
        if (i >= info.offset && i < info.offset + info.size) {
          a.push_back(grads[i]);
          e.push_back(fd[i]);
        }
      }
      ASSERT_FALSE(a.empty()) << info.name;
      expect_close(a, e, 2e-5, 2e-3, info.name);
    }
  }
}

TEST(TrainableModel, SavedModelLoadsBackExactly) {
  test::TempDir dir;
  std::mt19937_64 rng(test::test_seed());
  TinySetup s = tiny_setup(rng, true);
  train::TrainableModel model(s.config);
  model.initialize(7);
  model.save(dir / "m", DType::f32);
  train::TrainableModel again = train::TrainableModel::load(dir / "m");
  ASSERT_EQ(again.parameters().size(), model.parameters().size());
  EXPECT_TRUE(
      std::equal(model.parameters().begin(), model.parameters().end(), again.parameters().begin()));
  EXPECT_EQ(model.loss(s.batch), again.loss(s.batch));
}

TEST(TrainableModel, RejectsMalformedBatches) {
  std::mt19937_64 rng(test::test_seed());
  TinySetup s = tiny_setup(rng, false);
  train::TrainableModel model(s.config);
  train::Batch bad = s.batch;
  bad.inputs[3] = 11;
  EXPECT_NE(std::string(test::capture_error([&] { model.loss(bad); }).what())
                .find("outside its vocabulary"),
            std::string::npos);
  bad = s.batch;
  bad.input_vision.assign(bad.inputs.size(), 0);
  bad.input_vision[2] = 1;
  EXPECT_NE(std::string(test::capture_error([&] { model.loss(bad); }).what()).find("text-only"),
            std::string::npos);
  bad = s.batch;
  bad.targets.pop_back();
  EXPECT_EQ(test::capture_error([&] { model.loss(bad); }).kind(), ErrorKind::invalid_argument);
}

}  // namespace
}  // namespace lwm
