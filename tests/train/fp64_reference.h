// Independent fp64 references for the trainer's tests: finite differences and a plain,
// unoptimised LWM forward (spec §1.2-1.4, §2.2) computing the weighted cross-entropy loss.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "lwm/model_config.h"
#include "lwm/train/batch.h"

namespace lwm::test {

// Central differences of f at x for the coordinates in `which` (all when empty).
inline std::vector<double> numeric_gradient(
    const std::function<double(const std::vector<double>&)>& f, std::vector<double> x,
    const std::vector<std::size_t>& which = {}, double h = 1e-6) {
  std::vector<double> grad(x.size(), 0.0);
  auto one = [&](std::size_t i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double up = f(x);
    x[i] = saved - h;
    const double down = f(x);
    x[i] = saved;
    grad[i] = (up - down) / (2 * h);
  };
  if (which.empty()) {
    for (std::size_t i = 0; i < x.size(); ++i) one(i);
  } else {
    for (std::size_t i : which) one(i);
  }
  return grad;
}

inline std::vector<double> widen(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

// y[m, out] = x[m, in] · W[in, out]
inline std::vector<double> matmul(const std::vector<double>& x, const double* w, std::int64_t m,
                                  std::int64_t in, std::int64_t out) {
  std::vector<double> y(static_cast<std::size_t>(m * out), 0.0);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t k = 0; k < in; ++k)
      for (std::int64_t j = 0; j < out; ++j) y[i * out + j] += x[i * in + k] * w[k * out + j];
  return y;
}

inline std::vector<double> rms_norm(const std::vector<double>& x, const double* gain,
                                    std::int64_t m, std::int64_t n, double eps) {
  std::vector<double> y(x.size());
  for (std::int64_t i = 0; i < m; ++i) {
    double s = 0;
    for (std::int64_t j = 0; j < n; ++j) s += x[i * n + j] * x[i * n + j];
    const double r = 1.0 / std::sqrt(s / n + eps);
    for (std::int64_t j = 0; j < n; ++j) y[i * n + j] = x[i * n + j] * r * gain[j];
  }
  return y;
}

// Interleaved RoPE (spec §1.3) with float64 angles; x [tokens, heads, d].
inline void rope(std::vector<double>& x, const std::vector<std::int64_t>& pos, std::int64_t heads,
                 std::int64_t d, double theta) {
  for (std::size_t t = 0; t < pos.size(); ++t)
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t i = 0; i < d / 2; ++i) {
        const double inv =
            1.0 / std::pow(static_cast<double>(static_cast<float>(theta)), (2.0 * i) / d);
        const double a = static_cast<double>(pos[t]) * inv;
        double* v = &x[(t * heads + h) * d + 2 * i];
        const double x0 = v[0], x1 = v[1];
        v[0] = x0 * std::cos(a) - x1 * std::sin(a);
        v[1] = x0 * std::sin(a) + x1 * std::cos(a);
      }
}

// Attention with a causal mask (query i sees keys j <= offset + i) and optional segment ids.
inline std::vector<double> attention(const std::vector<double>& q, const std::vector<double>& k,
                                     const std::vector<double>& v, std::int64_t nq, std::int64_t nk,
                                     std::int64_t heads, std::int64_t kv_heads, std::int64_t d,
                                     std::int64_t offset, const std::int32_t* qseg,
                                     const std::int32_t* kseg) {
  std::vector<double> out(static_cast<std::size_t>(nq * heads * d), 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (std::int64_t h = 0; h < heads; ++h) {
    const std::int64_t kh = h / (heads / kv_heads);
    for (std::int64_t i = 0; i < nq; ++i) {
      std::vector<double> s;
      std::vector<std::int64_t> js;
      for (std::int64_t j = 0; j < nk; ++j) {
        if (j > offset + i) continue;
        if (qseg != nullptr && qseg[i] != kseg[j]) continue;
        double dot = 0;
        for (std::int64_t c = 0; c < d; ++c)
          dot += q[(i * heads + h) * d + c] * k[(j * kv_heads + kh) * d + c];
        s.push_back(dot * scale);
        js.push_back(j);
      }
      if (s.empty()) continue;
      double top = -std::numeric_limits<double>::infinity(), sum = 0;
      for (double e : s) top = std::max(top, e);
      for (double& e : s) sum += (e = std::exp(e - top));
      for (std::size_t a = 0; a < s.size(); ++a)
        for (std::int64_t c = 0; c < d; ++c)
          out[(i * heads + h) * d + c] += s[a] / sum * v[(js[a] * kv_heads + kh) * d + c];
    }
  }
  return out;
}

// Named views of a flat fp64 parameter vector laid out like TrainableModel's.
struct ReferenceParams {
  const double *wte, *vte, *ln_f, *lm_head, *vision_head;
  struct Layer {
    const double *attention_norm, *ffn_norm, *wq, *wk, *wv, *wo, *w1, *w2, *w3;
  };
  std::vector<Layer> layers;
};

// Σ_t w_t · CE_t of the batch, every row independently.
inline double reference_loss(const ModelConfig& c, const ReferenceParams& p,
                             const train::Batch& b) {
  const std::int64_t n = b.length, hidden = c.hidden_size, hd = c.head_dim(),
                     kvw = c.num_kv_heads * hd;
  double total = 0;
  for (std::int64_t r = 0; r < b.rows; ++r) {
    const std::size_t base = static_cast<std::size_t>(r * n);
    std::vector<double> h(static_cast<std::size_t>(n * hidden));
    std::vector<std::int64_t> pos(static_cast<std::size_t>(n));
    for (std::int64_t t = 0; t < n; ++t) {
      const bool vis = !b.input_vision.empty() && b.input_vision[base + t];
      const double* table = vis ? p.vte : p.wte;
      for (std::int64_t j = 0; j < hidden; ++j)
        h[t * hidden + j] = table[b.inputs[base + t] * hidden + j];
      pos[t] = b.positions.empty() ? t : b.positions[base + t];
    }
    const std::int32_t* seg = b.segments.empty() ? nullptr : b.segments.data() + base;
    for (const auto& L : p.layers) {
      auto a = rms_norm(h, L.attention_norm, n, hidden, c.rms_norm_eps);
      auto q = matmul(a, L.wq, n, hidden, hidden);
      auto k = matmul(a, L.wk, n, hidden, kvw);
      auto v = matmul(a, L.wv, n, hidden, kvw);
      rope(q, pos, c.num_heads, hd, c.rope_theta);
      rope(k, pos, c.num_kv_heads, hd, c.rope_theta);
      auto o = matmul(attention(q, k, v, n, n, c.num_heads, c.num_kv_heads, hd, 0, seg, seg), L.wo,
                      n, hidden, hidden);
      for (std::size_t i = 0; i < h.size(); ++i) h[i] += o[i];
      auto f = rms_norm(h, L.ffn_norm, n, hidden, c.rms_norm_eps);
      auto g = matmul(f, L.w1, n, hidden, c.intermediate_size);
      auto u = matmul(f, L.w3, n, hidden, c.intermediate_size);
      for (std::size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
      auto d = matmul(g, L.w2, n, c.intermediate_size, hidden);
      for (std::size_t i = 0; i < h.size(); ++i) h[i] += d[i];
    }
    auto hf = rms_norm(h, p.ln_f, n, hidden, c.rms_norm_eps);
    for (std::int64_t t = 0; t < n; ++t) {
      const double w = b.loss_weights[base + t];
      if (w == 0) continue;
      const bool vis = !b.target_vision.empty() && b.target_vision[base + t];
      const std::int64_t vocab = vis ? c.vision_vocab_size : c.vocab_size;
      std::vector<double> x(hf.begin() + t * hidden, hf.begin() + (t + 1) * hidden);
      auto z = matmul(x, vis ? p.vision_head : p.lm_head, 1, hidden, vocab);
      double top = z[0], sum = 0;
      for (double e : z) top = std::max(top, e);
      for (double e : z) sum += std::exp(e - top);
      total += w * (top + std::log(sum) - z[b.targets[base + t]]);
    }
  }
  return total;
}

}  // namespace lwm::test
