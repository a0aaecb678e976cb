// CUDA attention kernels (cuda/attention.h) and the device KV cache (cuda/kv_cache_device.h)
// against an fp64 reference and the CPU blockwise_attention, on fresh random data and odd shapes.
//
// Tolerance, derived rather than tuned: the kernels see exactly the bf16 (or dequantised int8)
// values the reference sees, compute scores and the softmax in fp32, and round only the softmax
// weights p to bf16 before P·V (relative error <= 2^-9 each). So every output element satisfies
// |out - ref| <= 2^-9 · Σ_j p_j |v_j| / Σ_j p_j; the tests allow twice that (2^-8 · magnitude,
// the magnitude computed by the reference) plus 1e-5 for fp32 accumulation. LSE: fp32 only,
// 1e-4 + 1e-5·|lse|. Rows that see no key: out exactly 0, lse -inf.
//
// Without a GPU every test skips, except BadArgumentsThrowBeforeTouchingTheDevice: the argument
// checks run on the host before any CUDA call, so they are tested everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cuda/attention.h"
#include "cuda/device_buffer.h"
#include "cuda/kv_cache_device.h"
#include "lwm/attention.h"
#include "lwm/dtype.h"
#include "lwm/error.h"
#include "lwm/model_config.h"
#include "lwm/planner.h"
#include "test_support.h"

namespace {

using lwm::AttentionShape;
using lwm::ErrorKind;
using lwm::KvPrecision;
using lwm::cuda::AttentionResult;
using lwm::cuda::DeviceAttentionOptions;
using lwm::cuda::DeviceBuffer;
using lwm::cuda::KvBlock;

constexpr double kInf = std::numeric_limits<double>::infinity();

using lwm::bf16_to_float;
using lwm::float_to_bf16;

std::vector<std::uint16_t> to_bf16(const std::vector<float>& values) {
  std::vector<std::uint16_t> out(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) out[i] = float_to_bf16(values[i]);
  return out;
}
std::vector<float> round_bf16(std::vector<float> values) {
  for (float& x : values) x = bf16_to_float(float_to_bf16(x));
  return values;
}

enum class Segments { none, monotone, random };

struct Case {
  std::int64_t nq = 1;
  std::int64_t nk = 1;
  AttentionShape shape{4, 4, 64};
  bool causal = true;
  std::int64_t offset = 0;
  Segments segments = Segments::none;

  std::string describe() const {
    return "nq " + std::to_string(nq) + ", nk " + std::to_string(nk) + ", heads " +
           std::to_string(shape.num_heads) + "/" + std::to_string(shape.num_kv_heads) + ", d " +
           std::to_string(shape.head_dim) + (causal ? ", causal" : ", full") + ", offset " +
           std::to_string(offset) +
           (segments == Segments::none       ? ""
            : segments == Segments::monotone ? ", segments"
                                             : ", random segments");
  }
};

// bf16-representable inputs and segment ids (key j sits at position j, query i at offset + i).
struct Inputs {
  std::vector<float> q, k, v;
  std::vector<std::int32_t> q_segments, k_segments;
};

Inputs make_inputs(const Case& c, std::mt19937_64& rng) {
  const auto& s = c.shape;
  Inputs in;
  in.q = round_bf16(
      lwm::test::random_normal(static_cast<std::size_t>(c.nq * s.num_heads * s.head_dim), rng));
  in.k = round_bf16(
      lwm::test::random_normal(static_cast<std::size_t>(c.nk * s.num_kv_heads * s.head_dim), rng));
  in.v = round_bf16(
      lwm::test::random_normal(static_cast<std::size_t>(c.nk * s.num_kv_heads * s.head_dim), rng));
  if (c.segments == Segments::monotone) {
    const std::int64_t length = std::uniform_int_distribution<std::int64_t>(3, 40)(rng);
    auto id = [&](std::int64_t position) {
      return static_cast<std::int32_t>(position >= 0 ? position / length
                                                     : -((-position + length - 1) / length));
    };
    for (std::int64_t i = 0; i < c.nq; ++i) in.q_segments.push_back(id(c.offset + i));
    for (std::int64_t j = 0; j < c.nk; ++j) in.k_segments.push_back(id(j));
  } else if (c.segments == Segments::random) {
    std::uniform_int_distribution<std::int32_t> pick(0, 2);
    for (std::int64_t i = 0; i < c.nq; ++i) in.q_segments.push_back(pick(rng));
    for (std::int64_t j = 0; j < c.nk; ++j) in.k_segments.push_back(pick(rng));
  }
  return in;
}

// fp64 attention over exactly the given values, plus Σ p|v| / Σ p per element (the error scale).
struct Reference {
  std::vector<double> out, lse, magnitude;
};

Reference reference_attention(const std::vector<float>& q, const std::vector<float>& k,
                              const std::vector<float>& v, const Inputs& in, const Case& c) {
  const auto& s = c.shape;
  const std::int64_t d = s.head_dim;
  const std::int64_t group = s.num_heads / s.num_kv_heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  Reference r;
  r.out.assign(static_cast<std::size_t>(c.nq * s.num_heads * d), 0.0);
  r.magnitude.assign(r.out.size(), 0.0);
  r.lse.assign(static_cast<std::size_t>(s.num_heads * c.nq), -kInf);
  std::vector<double> scores(static_cast<std::size_t>(c.nk));
  for (std::int64_t h = 0; h < s.num_heads; ++h) {
    const std::int64_t kvh = h / group;
    for (std::int64_t i = 0; i < c.nq; ++i) {
      double top = -kInf;
      for (std::int64_t j = 0; j < c.nk; ++j) {
        double& score = scores[static_cast<std::size_t>(j)];
        score = -kInf;
        if (c.causal && j > c.offset + i) continue;
        if (!in.q_segments.empty() && in.q_segments[static_cast<std::size_t>(i)] !=
                                          in.k_segments[static_cast<std::size_t>(j)])
          continue;
        double dot = 0.0;
        for (std::int64_t e = 0; e < d; ++e) {
          dot += static_cast<double>(q[static_cast<std::size_t>((i * s.num_heads + h) * d + e)]) *
                 k[static_cast<std::size_t>((j * s.num_kv_heads + kvh) * d + e)];
        }
        score = dot * scale;
        top = std::max(top, score);
      }
      if (top == -kInf) continue;
      double sum = 0.0;
      const auto o = static_cast<std::size_t>((i * s.num_heads + h) * d);
      for (std::int64_t j = 0; j < c.nk; ++j) {
        const double p = std::exp(scores[static_cast<std::size_t>(j)] - top);
        if (p == 0.0) continue;
        sum += p;
        for (std::int64_t e = 0; e < d; ++e) {
          const double value = v[static_cast<std::size_t>((j * s.num_kv_heads + kvh) * d + e)];
          r.out[o + static_cast<std::size_t>(e)] += p * value;
          r.magnitude[o + static_cast<std::size_t>(e)] += p * std::abs(value);
        }
      }
      for (std::int64_t e = 0; e < d; ++e) {
        r.out[o + static_cast<std::size_t>(e)] /= sum;
        r.magnitude[o + static_cast<std::size_t>(e)] /= sum;
      }
      r.lse[static_cast<std::size_t>(h * c.nq + i)] = top + std::log(sum);
    }
  }
  return r;
}

struct GpuResult {
  std::vector<float> out, lse;
  std::vector<std::uint16_t> out_bf16;
};

// Device copies of one case's inputs.
struct DeviceInputs {
  DeviceBuffer<std::uint16_t> q, k, v;
  DeviceBuffer<std::int32_t> q_segments, k_segments;

  explicit DeviceInputs(const Inputs& in)
      : q(static_cast<std::int64_t>(in.q.size()), nullptr),
        k(static_cast<std::int64_t>(in.k.size()), nullptr),
        v(static_cast<std::int64_t>(in.v.size()), nullptr),
        q_segments(static_cast<std::int64_t>(in.q_segments.size()), nullptr),
        k_segments(static_cast<std::int64_t>(in.k_segments.size()), nullptr) {
    const auto qb = to_bf16(in.q);
    const auto kb = to_bf16(in.k);
    const auto vb = to_bf16(in.v);
    q.upload(qb.data(), q.size());
    k.upload(kb.data(), k.size());
    v.upload(vb.data(), v.size());
    q_segments.upload(in.q_segments.data(), q_segments.size());
    k_segments.upload(in.k_segments.data(), k_segments.size());
    LWM_CUDA_CHECK(cudaStreamSynchronize(nullptr));  // host vectors die here
  }
  const __nv_bfloat16* queries() const { return reinterpret_cast<const __nv_bfloat16*>(q.data()); }
  KvBlock block(std::int64_t begin, std::int64_t end, std::int64_t row) const {
    KvBlock b;
    b.keys = reinterpret_cast<const __nv_bfloat16*>(k.data()) + begin * row;
    b.values = reinterpret_cast<const __nv_bfloat16*>(v.data()) + begin * row;
    b.num_keys = end - begin;
    return b;
  }
};

DeviceAttentionOptions device_options(const Case& c, const DeviceInputs& d,
                                      std::int64_t key_begin = 0) {
  DeviceAttentionOptions o;
  o.causal = c.causal;
  o.query_offset = c.offset - key_begin;
  if (c.segments != Segments::none) {
    o.query_segments = d.q_segments.data();
    o.key_segments = d.k_segments.data() + key_begin;
  }
  return o;
}

enum class Kernel { forward, decode };

// Runs one kernel over keys [begin, end) of `kv` into fresh buffers, or into (out, lse) state.
struct DeviceState {
  DeviceBuffer<float> out, lse;
  DeviceBuffer<std::uint16_t> out_bf16;
  DeviceState(const Case& c)
      : out(c.nq * c.shape.num_heads * c.shape.head_dim, nullptr),
        lse(c.nq * c.shape.num_heads, nullptr),
        out_bf16(c.nq * c.shape.num_heads * c.shape.head_dim, nullptr) {}
  AttentionResult result(bool merge) {
    return AttentionResult{out.data(), lse.data(),
                           reinterpret_cast<__nv_bfloat16*>(out_bf16.data()), merge};
  }
  GpuResult download() const {
    GpuResult g;
    g.out.resize(static_cast<std::size_t>(out.size()));
    g.lse.resize(static_cast<std::size_t>(lse.size()));
    g.out_bf16.resize(static_cast<std::size_t>(out_bf16.size()));
    out.download(g.out.data(), out.size());
    lse.download(g.lse.data(), lse.size());
    out_bf16.download(g.out_bf16.data(), out_bf16.size());
    return g;
  }
};

void run_kernel(Kernel kernel, const Case& c, const __nv_bfloat16* q, const KvBlock& kv,
                const DeviceAttentionOptions& options, const AttentionResult& result,
                std::int64_t splits = 0) {
  if (kernel == Kernel::forward) {
    lwm::cuda::flash_attention_forward(q, c.nq, kv, c.shape, options, result, nullptr);
  } else {
    lwm::cuda::flash_attention_decode(q, c.nq, kv, c.shape, options, result, nullptr, splits);
  }
}

GpuResult run_case(Kernel kernel, const Case& c, const Inputs& in, std::int64_t splits = 0) {
  DeviceInputs d(in);
  DeviceState state(c);
  const std::int64_t row = c.shape.num_kv_heads * c.shape.head_dim;
  run_kernel(kernel, c, d.queries(), d.block(0, c.nk, row), device_options(c, d),
             state.result(false), splits);
  return state.download();
}

// Checks a GPU result against the fp64 reference with the bound derived at the top of the file.
void expect_close(const GpuResult& g, const Reference& r, const std::string& what,
                  double relative = 1.0 / 256.0) {
  SCOPED_TRACE(what);
  std::size_t bad = 0;
  double worst = 0.0;
  for (std::size_t i = 0; i < r.out.size(); ++i) {
    ASSERT_FALSE(std::isnan(g.out[i])) << "NaN at " << i;
    const double bound = relative * r.magnitude[i] + 1e-5;
    const double error = std::abs(g.out[i] - r.out[i]);
    worst = std::max(worst, error / bound);
    if (error > bound && ++bad <= 3) {
      ADD_FAILURE() << "out[" << i << "] = " << g.out[i] << ", reference " << r.out[i] << ", bound "
                    << bound;
    }
    // The bf16 copy is the fp32 result rounded once.
    if (!g.out_bf16.empty()) {
      EXPECT_EQ(g.out_bf16[i], float_to_bf16(g.out[i])) << "bf16 out[" << i << "]";
    }
  }
  EXPECT_EQ(bad, 0u) << "elements outside the bound; worst error/bound " << worst;
  for (std::size_t i = 0; i < r.lse.size(); ++i) {
    if (r.lse[i] == -kInf) {
      EXPECT_EQ(g.lse[i], -std::numeric_limits<float>::infinity())
          << "lse[" << i << "] of a masked row";
      continue;
    }
    EXPECT_NEAR(g.lse[i], r.lse[i], 1e-4 + 1e-5 * std::abs(r.lse[i])) << "lse[" << i << "]";
  }
  // Rows (and only rows) that see no key have magnitude 0: their output is exactly zero.
  for (std::size_t i = 0; i < r.out.size(); ++i) {
    if (r.magnitude[i] == 0.0) {
      EXPECT_EQ(g.out[i], 0.0f) << "masked out[" << i << "]";
    }
  }
}

lwm::AttentionOptions cpu_options(const Case& c, const Inputs& in) {
  lwm::AttentionOptions o;
  o.causal = c.causal;
  o.query_offset = c.offset;
  if (c.segments != Segments::none) {
    o.query_segments = in.q_segments.data();
    o.key_segments = in.k_segments.data();
  }
  return o;
}

// The CPU blockwise attention on the same values, checked against the GPU result with the same
// bound (the CPU's own fp32 error is far below it).
void expect_matches_cpu(const GpuResult& g, const Reference& r, const Case& c, const Inputs& in) {
  std::vector<float> out(static_cast<std::size_t>(c.nq * c.shape.num_heads * c.shape.head_dim));
  std::vector<float> lse(static_cast<std::size_t>(c.nq * c.shape.num_heads));
  lwm::blockwise_attention(in.q.data(), in.k.data(), in.v.data(), c.nq, c.nk, c.shape,
                           cpu_options(c, in), out.data(), lse.data());
  std::size_t bad = 0;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (std::abs(g.out[i] - out[i]) > r.magnitude[i] / 256.0 + 2e-5 && ++bad <= 3) {
      ADD_FAILURE() << "GPU out[" << i << "] = " << g.out[i] << ", CPU " << out[i];
    }
  }
  EXPECT_EQ(bad, 0u);
  for (std::size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(lse[i])) {
      EXPECT_EQ(g.lse[i], lse[i]);
    } else {
      EXPECT_NEAR(g.lse[i], lse[i], 1e-4 + 1e-5 * std::abs(lse[i]));
    }
  }
}

TEST(CudaAttention, ForwardMatchesFp64AndCpuOnOddShapes) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  const std::uint64_t seed = lwm::test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const AttentionShape shapes[] = {{4, 4, 64}, {8, 2, 128}, {6, 3, 128}, {2, 1, 64}};
  int index = 0;
  for (const std::int64_t nq : {1, 7, 130}) {
    for (const std::int64_t nk : {1, 65, 1000}) {
      for (const bool causal : {true, false}) {
        Case c;
        c.nq = nq;
        c.nk = nk;
        c.shape = shapes[index++ % 4];
        c.causal = causal;
        c.offset = nk - nq;  // chunked prefill: the queries are the last nq positions
        const Inputs in = make_inputs(c, rng);
        const Reference ref = reference_attention(in.q, in.k, in.v, in, c);
        const GpuResult g = run_case(Kernel::forward, c, in);
        expect_close(g, ref, c.describe());
        expect_matches_cpu(g, ref, c, in);
      }
    }
  }
}

TEST(CudaAttention, ForwardQueryOffsetsIncludingNegative) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  const std::uint64_t seed = lwm::test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (const std::int64_t offset : {-1000, -70, -1, 0, 37, 129, 1000}) {
    Case c;
    c.nq = 130;
    c.nk = 200;
    c.shape = {4, 2, 128};
    c.offset = offset;
    const Inputs in = make_inputs(c, rng);
    const Reference ref = reference_attention(in.q, in.k, in.v, in, c);
    const GpuResult g = run_case(Kernel::forward, c, in);
    expect_close(g, ref, c.describe());
    expect_matches_cpu(g, ref, c, in);
  }
}

TEST(CudaAttention, ForwardSegmentIds) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  const std::uint64_t seed = lwm::test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (const Segments segments : {Segments::monotone, Segments::random}) {
    for (const bool causal : {true, false}) {
      Case c;
      c.nq = 130;
      c.nk = 1000;
      c.shape = {4, 4, 64};
      c.causal = causal;
      c.offset = 900;
      c.segments = segments;
      const Inputs in = make_inputs(c, rng);
      const Reference ref = reference_attention(in.q, in.k, in.v, in, c);
      const GpuResult g = run_case(Kernel::forward, c, in);
      expect_close(g, ref, c.describe());
      expect_matches_cpu(g, ref, c, in);
    }
  }
}

// A ring step: the same queries against disjoint key blocks in any order, merged into an fp32
// state, equal one attention over the union (spec ring-attention §1.1), including a block that
// lies entirely in the queries' future (negative offset: contributes nothing).
TEST(CudaAttention, MergingIntoIncomingStateEqualsOneShot) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  const std::uint64_t seed = lwm::test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (const Kernel kernel : {Kernel::forward, Kernel::decode}) {
    for (const Segments segments : {Segments::none, Segments::monotone}) {
      Case c;
      c.nq = kernel == Kernel::forward ? 130 : 3;
      c.nk = 1000;
      c.shape = {8, 2, 128};
      c.offset = 500;  // queries at positions 500..; keys 630.. are in their future
      c.segments = segments;
      const Inputs in = make_inputs(c, rng);
      const Reference ref = reference_attention(in.q, in.k, in.v, in, c);
      DeviceInputs d(in);
      DeviceState state(c);
      const std::int64_t row = c.shape.num_kv_heads * c.shape.head_dim;
      const std::int64_t blocks[][2] = {{300, 700}, {700, 1000}, {0, 300}};  // out of order
      bool first = true;
      for (const auto& b : blocks) {
        run_kernel(kernel, c, d.queries(), d.block(b[0], b[1], row), device_options(c, d, b[0]),
                   state.result(!first));
        first = false;
      }
      expect_close(state.download(), ref, "merged, " + c.describe());
    }
  }
}

TEST(CudaAttention, DecodeEqualsPrefillLastRows) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  const std::uint64_t seed = lwm::test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (const std::int64_t nq : {1, 3, 8}) {
    for (const std::int64_t nk : {1, 65, 4097}) {
      for (const std::int64_t splits : {0, 1, 7, 64}) {
        Case c;
        c.nq = nq;
        c.nk = nk;
        c.shape = nq == 3 ? AttentionShape{4, 4, 64} : AttentionShape{8, 2, 128};
        c.offset = nk - nq;
        const Inputs in = make_inputs(c, rng);
        const Reference ref = reference_attention(in.q, in.k, in.v, in, c);
        const GpuResult decoded = run_case(Kernel::decode, c, in, splits);
        const GpuResult prefilled = run_case(Kernel::forward, c, in);
        const std::string what = c.describe() + ", splits " + std::to_string(splits);
        expect_close(decoded, ref, "decode, " + what);
        expect_close(prefilled, ref, "prefill, " + what);
        for (std::size_t i = 0; i < decoded.out.size(); ++i) {
          ASSERT_NEAR(decoded.out[i], prefilled.out[i], ref.magnitude[i] / 128.0 + 2e-5) << what;
        }
      }
    }
  }
}

// Later splits entirely past the causal horizon, segments, and a horizon before every key.
TEST(CudaAttention, DecodeMasksAndEmptySplits) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  const std::uint64_t seed = lwm::test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (const std::int64_t offset : {-5, 0, 1500}) {
    for (const Segments segments : {Segments::none, Segments::monotone, Segments::random}) {
      Case c;
      c.nq = 2;
      c.nk = 3000;
      c.shape = {4, 1, 64};
      c.offset = offset;
      c.segments = segments;
      const Inputs in = make_inputs(c, rng);
      const Reference ref = reference_attention(in.q, in.k, in.v, in, c);
      expect_close(run_case(Kernel::decode, c, in, 16), ref, "decode, " + c.describe());
    }
  }
}

lwm::ModelConfig cache_config(const AttentionShape& s, std::int64_t layers) {
  lwm::ModelConfig config;
  config.num_layers = layers;
  config.num_heads = s.num_heads;
  config.num_kv_heads = s.num_kv_heads;
  config.hidden_size = s.num_heads * s.head_dim;
  return config;
}

template <typename T>
std::vector<T> download(const void* device, std::int64_t count) {
  std::vector<T> host(static_cast<std::size_t>(count));
  LWM_CUDA_CHECK(cudaMemcpy(host.data(), device, host.size() * sizeof(T), cudaMemcpyDeviceToHost));
  return host;
}

// The cache at bf16 is a plain store: attention over a view of it is bit-identical to attention
// over the same rows uploaded directly.
TEST(CudaKvCache, Bf16StoreAndViews) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  const std::uint64_t seed = lwm::test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  Case c;
  c.nq = 7;
  c.nk = 1000;
  c.shape = {8, 2, 128};
  c.causal = false;
  const Inputs in = make_inputs(c, rng);
  DeviceInputs d(in);
  const lwm::ModelConfig config = cache_config(c.shape, 3);
  lwm::cuda::DeviceKvCache cache(config, 1200, KvPrecision::bf16, nullptr);
  EXPECT_EQ(cache.bytes(), 1200 * lwm::kv_bytes_per_token(config, KvPrecision::bf16));
  const std::int64_t row = c.shape.num_kv_heads * c.shape.head_dim;
  const auto* k = reinterpret_cast<const __nv_bfloat16*>(d.k.data());
  const auto* v = reinterpret_cast<const __nv_bfloat16*>(d.v.data());
  for (const auto& [begin, end] : {std::pair<std::int64_t, std::int64_t>{0, 640}, {640, 1000}}) {
    for (std::int64_t layer = 0; layer < 3; ++layer) {
      cache.store(layer, k + begin * row, v + begin * row, end - begin, nullptr);
    }
    cache.advance(end - begin);
  }
  EXPECT_EQ(cache.size(), 1000);
  Case part = c;
  part.nk = 500;
  DeviceState from_cache(part);
  DeviceState direct(part);
  lwm::cuda::flash_attention_forward(d.queries(), c.nq, cache.layer(1, 100, 600), c.shape,
                                     device_options(c, d), from_cache.result(false), nullptr);
  lwm::cuda::flash_attention_forward(d.queries(), c.nq, d.block(100, 600, row), c.shape,
                                     device_options(c, d), direct.result(false), nullptr);
  const GpuResult a = from_cache.download();
  const GpuResult b = direct.download();
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.lse, b.lse);
  cache.truncate(10);
  EXPECT_EQ(cache.layer(2).num_keys, 10);
  EXPECT_EQ(lwm::test::capture_error([&] { (void)cache.layer(0, 0, 11); }).kind(),
            ErrorKind::invalid_argument);
  EXPECT_EQ(lwm::test::capture_error([&] { cache.store(3, k, v, 1, nullptr); }).kind(),
            ErrorKind::invalid_argument);
  EXPECT_EQ(lwm::test::capture_error([&] { cache.store(0, k, v, 1191, nullptr); }).kind(),
            ErrorKind::invalid_argument);
}

// int8 with one scale per (token, kv head): the stated bound |x - q·scale| <= scale/2 with
// scale = max|x|/127 per row (plus 2e-4 relative for the fp32 arithmetic), checked element by
// element; attention reads the codes directly and
// matches fp64 over the dequantised values with the bf16 bound, and fp64 over the original
// values within the propagated bound (value error <= max scale/2; every score moves by at most
// eps = softmax_scale·Σ|q|·max key scale/2, so weights move by at most a factor e^{±2·eps}).
TEST(CudaKvCache, Int8QuantisationBoundAndAttention) {
  LWM_SKIP_WITHOUT_CUDA_DEVICE();
  const std::uint64_t seed = lwm::test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (const Kernel kernel : {Kernel::forward, Kernel::decode}) {
    Case c;
    c.nq = kernel == Kernel::forward ? 130 : 1;
    c.nk = 1000;
    c.shape = {8, 2, 128};
    c.offset = c.nk - c.nq;
    const Inputs in = make_inputs(c, rng);
    DeviceInputs d(in);
    const lwm::ModelConfig config = cache_config(c.shape, 2);
    lwm::cuda::DeviceKvCache cache(config, c.nk, KvPrecision::int8, nullptr);
    EXPECT_EQ(cache.bytes(), c.nk * lwm::kv_bytes_per_token(config, KvPrecision::int8));
    const std::int64_t row = c.shape.num_kv_heads * c.shape.head_dim;
    const auto* k = reinterpret_cast<const __nv_bfloat16*>(d.k.data());
    const auto* v = reinterpret_cast<const __nv_bfloat16*>(d.v.data());
    cache.store(1, k, v, 333, nullptr);
    cache.store(1, k + 333 * row, v + 333 * row, c.nk - 333, nullptr);
    cache.advance(c.nk);
    const KvBlock block = cache.layer(1);
    const std::int64_t rows = c.nk * c.shape.num_kv_heads;
    const std::int64_t d_head = c.shape.head_dim;

    std::vector<float> dequantised[2];
    double largest_scale[2] = {0.0, 0.0};
    for (int which = 0; which < 2; ++which) {
      const auto codes =
          download<std::int8_t>(which == 0 ? block.keys : block.values, rows * d_head);
      const auto scales = download<float>(which == 0 ? block.key_scales : block.value_scales, rows);
      const std::vector<float>& original = which == 0 ? in.k : in.v;
      dequantised[which].resize(original.size());
      for (std::int64_t r = 0; r < rows; ++r) {
        float absmax = 0.0f;
        for (std::int64_t e = 0; e < d_head; ++e)
          absmax = std::max(absmax, std::abs(original[static_cast<std::size_t>(r * d_head + e)]));
        const float scale = scales[static_cast<std::size_t>(r)];
        ASSERT_FLOAT_EQ(scale, absmax / 127.0f) << "row " << r;
        largest_scale[which] = std::max(largest_scale[which], static_cast<double>(scale));
        for (std::int64_t e = 0; e < d_head; ++e) {
          const auto i = static_cast<std::size_t>(r * d_head + e);
          const float value = static_cast<float>(codes[i]) * scale;
          dequantised[which][i] = value;
          ASSERT_LE(std::abs(value - original[i]), 0.5 * scale * (1 + 2e-4) + 1e-7)
              << "row " << r << ", element " << e;
        }
      }
    }
    // The forward kernel rounds dequantised K/V to bf16 for the tensor cores; decode keeps fp32.
    const std::vector<float> kernel_k =
        kernel == Kernel::forward ? round_bf16(dequantised[0]) : dequantised[0];
    const std::vector<float> kernel_v =
        kernel == Kernel::forward ? round_bf16(dequantised[1]) : dequantised[1];
    DeviceState state(c);
    run_kernel(kernel, c, d.queries(), block, device_options(c, d), state.result(false));
    const GpuResult g = state.download();
    expect_close(g, reference_attention(in.q, kernel_k, kernel_v, in, c),
                 "int8 vs dequantised, " + c.describe());

    const Reference exact = reference_attention(in.q, in.k, in.v, in, c);
    const double softmax_scale = 1.0 / std::sqrt(static_cast<double>(d_head));
    double worst = 0.0;
    double worst_error = 0.0;
    for (std::int64_t i = 0; i < c.nq; ++i) {
      for (std::int64_t h = 0; h < c.shape.num_heads; ++h) {
        double q_l1 = 0.0;
        for (std::int64_t e = 0; e < d_head; ++e)
          q_l1 +=
              std::abs(in.q[static_cast<std::size_t>((i * c.shape.num_heads + h) * d_head + e)]);
        // Per score: the int8 step, plus (forward) the bf16 rounding of keys up to 127 steps.
        const double key_error =
            largest_scale[0] / 2.0 +
            (kernel == Kernel::forward ? 127.0 * largest_scale[0] / 512.0 : 0.0);
        const double eps = softmax_scale * q_l1 * key_error * (1 + 1e-3);
        for (std::int64_t e = 0; e < d_head; ++e) {
          const auto o = static_cast<std::size_t>((i * c.shape.num_heads + h) * d_head + e);
          const double bound = largest_scale[1] / 2.0 +
                               std::expm1(2.0 * eps) * exact.magnitude[o] * 1.01 +
                               (exact.magnitude[o] + largest_scale[1]) / 128.0 + 1e-5;
          const double error = std::abs(g.out[o] - exact.out[o]);
          worst = std::max(worst, error / bound);
          worst_error = std::max(worst_error, error);
        }
      }
    }
    EXPECT_LE(worst, 1.0);
    std::printf("int8 KV (%s): max |out - fp64(original)| = %.3g, %.0f%% of the stated bound\n",
                kernel == Kernel::forward ? "forward" : "decode", worst_error, 100.0 * worst);
  }
}

// Shape, option and pointer errors are found on the host before any CUDA call, so this test runs
// without a GPU too (the pointers below are never dereferenced).
TEST(CudaAttention, BadArgumentsThrowBeforeTouchingTheDevice) {
  alignas(16) static std::uint16_t q_storage[64];
  alignas(16) static std::uint16_t kv_storage[64];
  alignas(16) static float out_storage[64];
  const auto* q = reinterpret_cast<const __nv_bfloat16*>(q_storage);
  KvBlock kv;
  kv.keys = kv_storage;
  kv.values = kv_storage;
  kv.num_keys = 4;
  AttentionResult result{out_storage, out_storage, nullptr, false};
  const DeviceAttentionOptions options;
  auto forward_error = [&](std::int64_t nq, const KvBlock& block, const AttentionShape& shape,
                           const DeviceAttentionOptions& o, const AttentionResult& r) {
    return lwm::test::capture_error(
        [&] { lwm::cuda::flash_attention_forward(q, nq, block, shape, o, r, nullptr); });
  };
  auto decode_error = [&](std::int64_t nq, const KvBlock& block, const AttentionShape& shape,
                          const DeviceAttentionOptions& o, const AttentionResult& r,
                          std::int64_t splits) {
    return lwm::test::capture_error(
        [&] { lwm::cuda::flash_attention_decode(q, nq, block, shape, o, r, nullptr, splits); });
  };
  const AttentionShape good{4, 2, 64};

  lwm::Error e = forward_error(1, kv, {4, 2, 96}, options, result);
  EXPECT_EQ(e.kind(), ErrorKind::unsupported);
  EXPECT_NE(std::string(e.what()).find("head_dim 96"), std::string::npos) << e.what();
  EXPECT_FALSE(lwm::cuda::attention_head_dim_supported(96));
  EXPECT_TRUE(lwm::cuda::attention_head_dim_supported(128));
  e = forward_error(1, kv, {6, 4, 64}, options, result);
  EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(e.what()).find("kv heads 4"), std::string::npos) << e.what();
  EXPECT_EQ(forward_error(-1, kv, good, options, result).kind(), ErrorKind::invalid_argument);
  EXPECT_EQ(forward_error(1, kv, {0, 0, 64}, options, result).kind(), ErrorKind::invalid_argument);
  EXPECT_EQ(forward_error(1, kv, {70000, 70000, 64}, options, result).kind(),
            ErrorKind::invalid_argument);

  DeviceAttentionOptions one_sided;
  one_sided.query_segments = reinterpret_cast<const std::int32_t*>(kv_storage);
  EXPECT_EQ(forward_error(1, kv, good, one_sided, result).kind(), ErrorKind::invalid_argument);

  EXPECT_EQ(forward_error(1, kv, good, options, AttentionResult{}).kind(),
            ErrorKind::invalid_argument);
  EXPECT_EQ(
      forward_error(1, kv, good, options, AttentionResult{out_storage, nullptr, nullptr, true})
          .kind(),
      ErrorKind::invalid_argument);

  KvBlock misaligned = kv;
  misaligned.keys = kv_storage + 1;
  e = forward_error(1, misaligned, good, options, result);
  EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(e.what()).find("16-byte"), std::string::npos) << e.what();

  KvBlock no_scales = kv;
  no_scales.precision = KvPrecision::int8;
  EXPECT_EQ(forward_error(1, no_scales, good, options, result).kind(), ErrorKind::invalid_argument);
  KvBlock f32 = kv;
  f32.precision = KvPrecision::f32;
  EXPECT_EQ(forward_error(1, f32, good, options, result).kind(), ErrorKind::unsupported);
  KvBlock null_keys = kv;
  null_keys.keys = nullptr;
  EXPECT_EQ(forward_error(1, null_keys, good, options, result).kind(), ErrorKind::invalid_argument);

  e = decode_error(lwm::cuda::kMaxDecodeQueries + 1, kv, good, options, result, 0);
  EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(e.what()).find("at most 8"), std::string::npos) << e.what();
  EXPECT_EQ(decode_error(1, kv, good, options, result, -1).kind(), ErrorKind::invalid_argument);
  EXPECT_EQ(decode_error(1, kv, {4, 2, 80}, options, result, 0).kind(), ErrorKind::unsupported);
}

}  // namespace
