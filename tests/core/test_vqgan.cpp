// The VQGAN (vqgan.h, cpu/image_ops.h): each CPU op against a plain fp64 reference written here,
// the whole encoder+quantizer and decoder against the independent numpy float64 reference
// (tests/python/vqgan_reference.py) reading the same safetensors file, config handling, the
// random-weight maker, progress/cancel, and bad inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "cpu/image_ops.h"
#include "lwm/error.h"
#include "lwm/model_config.h"
#include "lwm/model_maker.h"
#include "lwm/safetensors.h"
#include "lwm/vqgan.h"
#include "test_support.h"

namespace lwm {
namespace {

namespace fs = std::filesystem;
using cpu::ConvGeometry;
using cpu::ImageShape;

std::string seed_trace(std::uint64_t seed) {
  return "LWM_TEST_SEED=" + std::to_string(seed);
}

std::vector<double> widen(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

// --- fp64 references of the ops ---------------------------------------------------------------

// Plain loops straight from §3.3: virtual (upsampled, zero-padded) input, kernel HWIO.
std::vector<double> reference_conv(const std::vector<double>& x, const ImageShape& in,
                                   const std::vector<double>& kernel, std::int64_t out,
                                   const std::vector<double>& bias, const ConvGeometry& g) {
  const std::int64_t k = g.kernel;
  std::vector<double> y(static_cast<std::size_t>(in.batch * g.out_height * g.out_width * out));
  for (std::int64_t b = 0; b < in.batch; ++b)
    for (std::int64_t oy = 0; oy < g.out_height; ++oy)
      for (std::int64_t ox = 0; ox < g.out_width; ++ox)
        for (std::int64_t o = 0; o < out; ++o) {
          double sum = bias[static_cast<std::size_t>(o)];
          for (std::int64_t ky = 0; ky < k; ++ky)
            for (std::int64_t kx = 0; kx < k; ++kx) {
              const std::int64_t vy = oy * g.stride - g.pad_top + ky;
              const std::int64_t vx = ox * g.stride - g.pad_left + kx;
              if (vy < 0 || vx < 0 || vy >= in.height * g.upsample || vx >= in.width * g.upsample)
                continue;
              const std::int64_t sy = vy / g.upsample, sx = vx / g.upsample;
              for (std::int64_t i = 0; i < in.channels; ++i) {
                sum +=
                    x[static_cast<std::size_t>(
                        ((b * in.height + sy) * in.width + sx) * in.channels + i)] *
                    kernel[static_cast<std::size_t>(((ky * k + kx) * in.channels + i) * out + o)];
              }
            }
          y[static_cast<std::size_t>(((b * g.out_height + oy) * g.out_width + ox) * out + o)] = sum;
        }
  return y;
}

std::vector<double> reference_group_norm(const std::vector<double>& x, const ImageShape& s,
                                         std::int64_t groups, const std::vector<double>& scale,
                                         const std::vector<double>& bias, double eps, bool silu) {
  std::vector<double> y(x.size());
  const std::int64_t per = s.channels / groups, hw = s.height * s.width;
  for (std::int64_t b = 0; b < s.batch; ++b)
    for (std::int64_t g = 0; g < groups; ++g) {
      double sum = 0, sq = 0;
      for (std::int64_t p = 0; p < hw; ++p)
        for (std::int64_t c = g * per; c < (g + 1) * per; ++c) {
          const double v = x[static_cast<std::size_t>((b * hw + p) * s.channels + c)];
          sum += v;
          sq += v * v;
        }
      const double n = static_cast<double>(hw * per);
      const double mean = sum / n, var = std::max(0.0, sq / n - mean * mean);
      for (std::int64_t p = 0; p < hw; ++p)
        for (std::int64_t c = g * per; c < (g + 1) * per; ++c) {
          const auto i = static_cast<std::size_t>((b * hw + p) * s.channels + c);
          double v = (x[i] - mean) / std::sqrt(var + eps) * scale[static_cast<std::size_t>(c)] +
                     bias[static_cast<std::size_t>(c)];
          if (silu) v = v / (1.0 + std::exp(-v));
          y[i] = v;
        }
    }
  return y;
}

// |a − b| ≤ atol + rtol·|b| everywhere, reporting the worst element.
void expect_close(const float* actual, const std::vector<double>& expected, double atol,
                  double rtol, const std::string& what) {
  const test::Closeness c = test::compare(actual, expected.data(), expected.size(), atol, rtol);
  EXPECT_TRUE(c.ok) << what << ": worst element " << c.worst_index << " off by " << c.max_abs_error
                    << " (ratio " << c.worst_ratio << ")";
}

struct ConvCase {
  const char* name;
  std::int64_t batch, height, width, in, out, kernel;
  int kind;  // 0 same, 1 downsample, 2 upsample
};

TEST(VqganOps, ConvolutionsMatchFp64Reference) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  const ConvCase cases[] = {
      {"same3 5x7 32->64 b1", 1, 5, 7, 32, 64, 3, 0},
      {"same3 5x7 96->32 b3", 3, 5, 7, 96, 32, 3, 0},
      {"same1 5x7 64->96 b3", 3, 5, 7, 64, 96, 1, 0},
      {"same3 7x5 3->32 b1", 1, 7, 5, 3, 32, 3, 0},
      {"down 5x7 32 b3", 3, 5, 7, 32, 32, 3, 1},
      {"down 8x6 64 b1", 1, 8, 6, 64, 64, 3, 1},
      {"up 5x7 32 b1", 1, 5, 7, 32, 32, 3, 2},
      {"up 3x4 96 b3", 3, 3, 4, 96, 96, 3, 2},
      {"same3 5x7 32->3 b3", 3, 5, 7, 32, 3, 3, 0},
  };
  for (const ConvCase& c : cases) {
    SCOPED_TRACE(c.name);
    const ImageShape in{c.batch, c.height, c.width, c.in};
    const ConvGeometry g = c.kind == 0   ? ConvGeometry::same(c.kernel, c.height, c.width)
                           : c.kind == 1 ? ConvGeometry::downsample(c.height, c.width)
                                         : ConvGeometry::upsample2(c.height, c.width);
    const auto x = test::random_normal(static_cast<std::size_t>(in.numel()), rng);
    const auto kernel =
        test::random_normal(static_cast<std::size_t>(c.kernel * c.kernel * c.in * c.out), rng,
                            static_cast<float>(1.0 / std::sqrt(c.kernel * c.kernel * c.in)));
    const auto bias = test::random_normal(static_cast<std::size_t>(c.out), rng);
    const auto expected = reference_conv(widen(x), in, widen(kernel), c.out, widen(bias), g);
    if (c.kind == 1) {
      // Windows of 3 at stride 2 that fit in the input padded by one row/column (§3.3).
      const auto windows = [](std::int64_t size) {
        std::int64_t count = 0;
        while (2 * count + 3 <= size + 1) ++count;
        return count;
      };
      EXPECT_EQ(g.out_height, windows(c.height));
      EXPECT_EQ(g.out_width, windows(c.width));
    }
    for (const DType dtype : {DType::f32, DType::bf16}) {
      // bf16 storage: compare against the reference of the rounded kernel.
      const Tensor k32 = Tensor::from_floats({c.kernel, c.kernel, c.in, c.out}, kernel);
      const Tensor k = k32.to(dtype);
      const auto exact = dtype == DType::f32 ? expected
                                             : reference_conv(widen(x), in, widen(k.to_floats()),
                                                              c.out, widen(bias), g);
      std::vector<float> y(expected.size(), std::numeric_limits<float>::quiet_NaN());
      cpu::conv2d(x.data(), in, k, Tensor::from_floats({c.out}, bias), g, y.data());
      // Sums of k·k·in products of unit-scale terms: float32 error grows like sqrt(terms)·2^-24.
      expect_close(y.data(), exact, 2e-5, 2e-5, std::string(dtype_name(dtype)) + " conv");
    }
  }
}

TEST(VqganOps, ConvRejectsMismatchedKernel) {
  const std::vector<float> x(5 * 7 * 32);
  std::vector<float> y(5 * 7 * 64);
  const Tensor kernel = Tensor::zeros(DType::f32, {3, 3, 16, 64});
  try {
    cpu::conv2d(x.data(), {1, 5, 7, 32}, kernel, Tensor(), ConvGeometry::same(3, 5, 7), y.data());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("[3, 3, 16, 64]"), std::string::npos) << e.what();
  }
  // A one-row image has no stride-2 window even after padding: an error, not a read past it.
  const Tensor square = Tensor::zeros(DType::f32, {3, 3, 32, 32});
  EXPECT_EQ(ConvGeometry::downsample(1, 7).out_height, 0);
  EXPECT_THROW(cpu::conv2d(x.data(), {1, 1, 7, 32}, square, Tensor(),
                           ConvGeometry::downsample(1, 7), y.data()),
               Error);
}

TEST(VqganOps, GroupNormMatchesFp64Reference) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  struct Case {
    std::int64_t batch, height, width, channels, groups;
  };
  for (const Case c : {Case{1, 5, 7, 32, 32}, Case{3, 5, 7, 64, 32}, Case{3, 7, 5, 96, 32},
                       Case{1, 9, 11, 96, 8}, Case{3, 5, 7, 32, 4}}) {
    SCOPED_TRACE(std::to_string(c.batch) + "x" + std::to_string(c.height) + "x" +
                 std::to_string(c.width) + "x" + std::to_string(c.channels) + " groups " +
                 std::to_string(c.groups));
    const ImageShape s{c.batch, c.height, c.width, c.channels};
    // An offset far from zero makes E[x²] − E[x]² cancel: the fp32 statistics must still hold.
    auto x = test::random_normal(static_cast<std::size_t>(s.numel()), rng, 2.0f);
    for (float& v : x) v += 3.0f;
    auto scale = test::random_normal(static_cast<std::size_t>(c.channels), rng, 0.3f);
    for (float& v : scale) v += 1.0f;
    const auto bias = test::random_normal(static_cast<std::size_t>(c.channels), rng, 0.3f);
    for (const bool silu : {false, true}) {
      const auto expected =
          reference_group_norm(widen(x), s, c.groups, widen(scale), widen(bias), 1e-6, silu);
      std::vector<float> y(x.size());
      cpu::group_norm(x.data(), s, c.groups, scale, bias, 1e-6f, silu, y.data());
      expect_close(y.data(), expected, 2e-5, 2e-5, silu ? "group_norm+silu" : "group_norm");
      // In place gives the same.
      std::vector<float> z = x;
      cpu::group_norm(z.data(), s, c.groups, scale, bias, 1e-6f, silu, z.data());
      EXPECT_EQ(z, y);
    }
  }
  // A constant group: variance 0 (clamped, never negative), output = bias.
  const std::vector<float> flat(2 * 3 * 32, 0.75f), ones(32, 1.0f), zero(32, 0.0f);
  std::vector<float> y(flat.size());
  cpu::group_norm(flat.data(), {1, 2, 3, 32}, 32, ones, zero, 1e-6f, false, y.data());
  for (float v : y) ASSERT_EQ(v, 0.0f);
  EXPECT_THROW(cpu::group_norm(flat.data(), {1, 2, 3, 32}, 5, ones, zero, 1e-6f, false, y.data()),
               Error);
}

TEST(VqganOps, QuantizerPicksNearestEntryFirstOnTies) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  const std::int64_t entries = 300, dim = 16, n = 97;
  auto table = test::random_normal(static_cast<std::size_t>(entries * dim), rng, 0.5f);
  // Entry 250 duplicates entry 40: identical float32 distances, so 40 must win whenever either is
  // nearest.
  std::copy_n(table.begin() + 40 * dim, dim, table.begin() + 250 * dim);
  auto z = test::random_normal(static_cast<std::size_t>(n * dim), rng, 0.5f);
  std::copy_n(table.begin() + 40 * dim, dim, z.begin());  // row 0 sits exactly on entry 40
  const Tensor codebook = Tensor::from_floats({entries, dim}, table);
  const auto norms = cpu::codebook_squared_norms(codebook);
  std::vector<std::int32_t> codes(static_cast<std::size_t>(n), -1);
  cpu::vector_quantize(z.data(), n, codebook, norms, codes.data());
  EXPECT_EQ(codes[0], 40);
  int near_ties = 0;
  for (std::int64_t r = 0; r < n; ++r) {
    std::vector<double> d(static_cast<std::size_t>(entries));
    for (std::int64_t e = 0; e < entries; ++e) {
      double sum = 0;
      for (std::int64_t i = 0; i < dim; ++i) {
        const double diff = static_cast<double>(z[static_cast<std::size_t>(r * dim + i)]) -
                            table[static_cast<std::size_t>(e * dim + i)];
        sum += diff * diff;
      }
      d[static_cast<std::size_t>(e)] = sum;
    }
    const auto best = static_cast<std::int32_t>(std::min_element(d.begin(), d.end()) - d.begin());
    EXPECT_NE(codes[static_cast<std::size_t>(r)], 250)
        << "row " << r << ": the later duplicate won";
    if (codes[static_cast<std::size_t>(r)] == best) continue;
    // Only a float32 near tie may disagree with the fp64 argmin.
    const double gap = d[static_cast<std::size_t>(codes[static_cast<std::size_t>(r)])] -
                       d[static_cast<std::size_t>(best)];
    EXPECT_LT(gap, 1e-5 * (1.0 + d[static_cast<std::size_t>(best)])) << "row " << r;
    ++near_ties;
  }
  EXPECT_LE(near_ties, 2);
  // NaN input has no nearest entry: an error, not code 0.
  z[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(cpu::vector_quantize(z.data(), n, codebook, norms, codes.data()), Error);
}

// --- config
// ---------------------------------------------------------------------------------------

TEST(VqganConfig, LwmDefaultsMatchTheSpec) {
  const VqganConfig c;
  c.validate("defaults");
  EXPECT_EQ(c.grid_size(), 16);
  EXPECT_EQ(c.tokens_per_frame(), 256);
  EXPECT_EQ(c.parameter_count(), 146244675);  // §3.2
  EXPECT_EQ(VqganConfig::from_json(nlohmann::json::object(), "empty").to_json(), c.to_json());
  VqganConfig small;
  small.resolution = 32;
  small.hidden_channels = 32;
  small.channel_mult = {1, 2, 2};
  small.num_groups = 8;
  small.eps = 1e-5;
  const VqganConfig back = VqganConfig::from_json(small.to_json(), "round trip");
  EXPECT_EQ(back.to_json(), small.to_json());
  EXPECT_EQ(back.grid_size(), 8);
}

void expect_config_error(const nlohmann::json& json, ErrorKind kind, const std::string& needle) {
  try {
    VqganConfig::from_json(json, "test.json").validate("test.json");
    ADD_FAILURE() << "no error for " << json.dump();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(VqganConfig, RejectsInconsistentConfigs) {
  expect_config_error({{"hidden_channels", 48}}, ErrorKind::config, "not divisible by num_groups");
  expect_config_error({{"resolution", 100}}, ErrorKind::config, "2^(levels-1) = 16");
  expect_config_error({{"channel_mult", nlohmann::json::array()}}, ErrorKind::config,
                      "channel_mult");
  expect_config_error({{"z_channels", 0}}, ErrorKind::config, "z_channels");
  expect_config_error({{"eps", -1}}, ErrorKind::config, "eps");
  expect_config_error({{"num_embeddings", "many"}}, ErrorKind::config, "num_embeddings");
  expect_config_error({{"attn_resolutions", {16}}}, ErrorKind::unsupported, "attn_resolutions");
  expect_config_error({{"no_attn_mid_block", false}}, ErrorKind::unsupported, "no_attn_mid_block");
  // LWM's own harmless fields are accepted.
  EXPECT_NO_THROW(VqganConfig::from_json({{"dropout", 0.0}, {"commitment_cost", 0.25}}, "lwm"));
}

// --- whole model
// ----------------------------------------------------------------------------------

VqganConfig small_config(int which) {
  VqganConfig c;
  if (which == 0) {  // 2 levels, 8 groups, one resnet block per level
    c.resolution = 16;
    c.hidden_channels = 32;
    c.channel_mult = {1, 2};
    c.num_res_blocks = 1;
    c.z_channels = 16;
    c.num_embeddings = 128;
    c.quantized_embed_dim = 16;
    c.num_groups = 8;
  } else {  // 3 levels like LWM's shape, 32 groups, z ≠ embed dim
    c.resolution = 32;
    c.hidden_channels = 32;
    c.channel_mult = {1, 2, 2};
    c.num_res_blocks = 2;
    c.z_channels = 12;
    c.num_embeddings = 256;
    c.quantized_embed_dim = 8;
  }
  return c;
}

std::vector<float> random_frames(const VqganConfig& c, std::int64_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> pixel(-1.0f, 1.0f);
  std::vector<float> frames(
      static_cast<std::size_t>(n * c.resolution * c.resolution * c.num_channels));
  for (float& v : frames) v = pixel(rng);
  return frames;
}

Tensor frames_tensor(const VqganConfig& c, std::int64_t n, const std::vector<float>& values) {
  return Tensor::from_floats({n, c.resolution, c.resolution, c.num_channels}, values);
}

template <typename T>
void write_raw(const fs::path& path, const std::vector<T>& values) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(values.data()),
            static_cast<std::streamsize>(values.size() * sizeof(T)));
}

void check_against_numpy(int which, std::int64_t batch) {
  if (!fs::exists(test::test_python())) {
    FAIL() << "no test Python at " << test::test_python()
           << "; configure with -DLWM_TEST_PYTHON=<python with numpy and safetensors>";
  }
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  test::TempDir tmp;
  VqganMakerOptions options;
  options.config = small_config(which);
  options.seed = rng();
  make_random_vqgan(tmp / "model", options);
  const auto vqgan = Vqgan::load(tmp / "model");
  const VqganConfig& c = vqgan->config();

  const auto frames = random_frames(c, batch, rng);
  const auto codes = vqgan->encode(frames_tensor(c, batch, frames));
  ASSERT_EQ(static_cast<std::int64_t>(codes.size()), batch * c.tokens_per_frame());
  std::uniform_int_distribution<std::int32_t> code(0,
                                                   static_cast<std::int32_t>(c.num_embeddings - 1));
  std::vector<std::int32_t> decode_codes(codes.size());
  for (auto& v : decode_codes) v = code(rng);
  const Tensor decoded = vqgan->decode(decode_codes);

  write_raw(tmp / "frames.f32", frames);
  write_raw(tmp / "codes.i32", decode_codes);
  const fs::path script = test::source_dir() / "tests/python/vqgan_reference.py";
  const auto run =
      test::run_command("'" + test::test_python().string() + "' '" + script.string() + "' '" +
                        (tmp / "model").string() + "' '" + (tmp / "frames.f32").string() + "' '" +
                        (tmp / "codes.i32").string() + "' '" + (tmp / "out.json").string() + "'");
  ASSERT_EQ(run.exit_code, 0) << run.output;
  std::ifstream in(tmp / "out.json");
  const auto json = nlohmann::json::parse(in);
  const auto ref_codes = json.at("codes").get<std::vector<std::int32_t>>();
  const auto gaps = json.at("gaps").get<std::vector<double>>();
  const auto ref_decoded = json.at("decoded").get<std::vector<double>>();

  ASSERT_EQ(ref_codes.size(), codes.size());
  std::size_t mismatches = 0;
  double smallest_gap = INFINITY;
  for (std::size_t i = 0; i < codes.size(); ++i) {
    smallest_gap = std::min(smallest_gap, gaps[i]);
    if (codes[i] == ref_codes[i]) continue;
    ++mismatches;
    // A disagreement is only acceptable on a near tie of the reference's distances.
    EXPECT_LT(gaps[i], 1e-4) << "code " << i << ": ours " << codes[i] << ", reference "
                             << ref_codes[i];
  }
  ::testing::Test::RecordProperty("code_mismatches", static_cast<int>(mismatches));
  std::printf(
      "[ config %d ] %zu of %zu codes differ from the fp64 reference; smallest reference gap "
      "%.3g\n",
      which, mismatches, codes.size(), smallest_gap);
  EXPECT_LE(mismatches, 1u);
  // The codes are not degenerate: random weights still spread frames over several entries.
  std::vector<std::int32_t> distinct = codes;
  std::sort(distinct.begin(), distinct.end());
  EXPECT_GT(std::unique(distinct.begin(), distinct.end()) - distinct.begin(), 3);

  ASSERT_EQ(decoded.shape(), (Shape{batch, c.resolution, c.resolution, c.num_channels}));
  expect_close(decoded.f32(), ref_decoded, 1e-4, 1e-4, "decoded frames");
  // Clipping is exercised: random weights push some pixels past ±1.
  const auto [lo, hi] = std::minmax_element(decoded.f32(), decoded.f32() + decoded.numel());
  EXPECT_GE(*lo, -1.0f);
  EXPECT_LE(*hi, 1.0f);
}

TEST(Vqgan, TwoLevelsMatchNumpyReference) {
  check_against_numpy(0, 3);
}
TEST(Vqgan, ThreeLevelsMatchNumpyReference) {
  check_against_numpy(1, 1);
}

TEST(Vqgan, BatchingDoesNotChangeResults) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed_trace(seed));
  std::mt19937_64 rng(seed);
  test::TempDir tmp;
  VqganMakerOptions options;
  options.config = small_config(0);
  options.seed = rng();
  make_random_vqgan(tmp.path(), options);
  const auto vqgan = Vqgan::load(tmp.path() / "vqgan.safetensors");
  const VqganConfig& c = vqgan->config();
  const auto frames = random_frames(c, 3, rng);
  VqganRunOptions one;
  one.frames_per_pass = 1;
  const auto all = vqgan->encode(frames_tensor(c, 3, frames));
  const auto singly = vqgan->encode(frames_tensor(c, 3, frames), {}, one);
  EXPECT_EQ(all, singly);
  const Tensor a = vqgan->decode(all);
  const Tensor b = vqgan->decode(all, {}, one);
  const std::vector<double> expected = widen(b.to_floats());
  expect_close(a.f32(), expected, 1e-5, 1e-5, "decode in one pass vs frame by frame");
}

TEST(Vqgan, ReportsProgressAndCancels) {
  test::TempDir tmp;
  VqganMakerOptions options;
  options.config = small_config(0);
  make_random_vqgan(tmp.path(), options);
  const auto vqgan = Vqgan::load(tmp.path());
  const VqganConfig& c = vqgan->config();
  std::mt19937_64 rng(1);
  const Tensor frames = frames_tensor(c, 3, random_frames(c, 3, rng));
  VqganRunOptions one;
  one.frames_per_pass = 1;
  std::vector<std::int64_t> done;
  vqgan->encode(
      frames,
      [&](const Progress& p) {
        EXPECT_EQ(p.total, 3);
        done.push_back(p.done);
        return true;
      },
      one);
  ASSERT_FALSE(done.empty());
  EXPECT_EQ(done.front(), 0);
  EXPECT_EQ(done.back(), 3);
  EXPECT_TRUE(std::is_sorted(done.begin(), done.end()));
  int calls = 0;
  try {
    vqgan->decode(std::vector<std::int32_t>(static_cast<std::size_t>(2 * c.tokens_per_frame()), 5),
                  [&](const Progress&) { return ++calls < 4; });
    FAIL() << "not cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::cancelled);
  }
  EXPECT_EQ(calls, 4);  // stopped at the first refusal, inside the network
}

TEST(Vqgan, Uint8ConversionFollowsSpec) {
  const std::vector<float> x = {-1.0f,   1.0f, 0.0f,  0.5f,
                                -0.999f, 2.0f, -3.0f, std::numeric_limits<float>::quiet_NaN()};
  std::vector<std::uint8_t> out(x.size());
  frames_to_uint8(x, out);
  const std::vector<std::uint8_t> expected = {0, 255, 127, 191, 0, 255, 0, 0};
  EXPECT_EQ(out, expected);
  std::vector<std::uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i);
  std::vector<float> normalised(256);
  frames_from_uint8(all, normalised);
  for (int i = 0; i < 256; ++i)
    EXPECT_NEAR(normalised[static_cast<std::size_t>(i)], i / 127.5 - 1.0, 1e-6);
}

TEST(Vqgan, MakerKeepsModelConfigAndRefusesToOverwrite) {
  test::TempDir tmp;
  ModelMakerOptions model;
  model.config = ModelConfig::preset("tiny");
  model.dtype = DType::f32;
  make_random_model(tmp / "m", model);
  VqganMakerOptions options;
  options.config = small_config(1);
  make_random_vqgan(tmp / "m", options);
  const ModelConfig text = ModelConfig::load(tmp / "m");  // the text model's fields survive
  EXPECT_EQ(text.hidden_size, model.config.hidden_size);
  EXPECT_EQ(text.num_layers, model.config.num_layers);
  EXPECT_EQ(text.vocab_size, model.config.vocab_size);
  EXPECT_EQ(VqganConfig::load(tmp / "m").to_json(), options.config.to_json());
  EXPECT_EQ(Vqgan::load(tmp / "m")->config().parameter_count(), options.config.parameter_count());
  EXPECT_THROW(make_random_vqgan(tmp / "m", options), Error);
}

// --- bad inputs
// -----------------------------------------------------------------------------------

void expect_error(const std::function<void()>& f, ErrorKind kind, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error (expected one mentioning '" << needle << "')";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// Rewrites <dir>/vqgan.safetensors with `edit` applied to its tensor list.
void rewrite_weights(
    const fs::path& dir,
    const std::function<void(std::vector<std::pair<std::string, Tensor>>&)>& edit) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  {
    const SafetensorsFile file(dir / "vqgan.safetensors");
    for (const auto& name : file.names())
      tensors.emplace_back(name, file.tensor(name).to(DType::f32));
  }
  edit(tensors);
  write_safetensors(dir / "vqgan.safetensors", tensors);
}

TEST(Vqgan, BadFilesGiveClearErrors) {
  test::TempDir tmp;
  VqganMakerOptions options;
  options.config = small_config(0);
  const std::string victim = "decoder.UpsamplingBlock_1.ResnetBlock_0.Conv_1.kernel";

  make_random_vqgan(tmp / "missing", options);
  rewrite_weights(tmp / "missing", [&](auto& t) {
    t.erase(std::find_if(t.begin(), t.end(), [&](const auto& p) { return p.first == victim; }));
  });
  expect_error([&] { Vqgan::load(tmp / "missing"); }, ErrorKind::file_format,
               victim + "' [3, 3, 32, 32] is missing");

  make_random_vqgan(tmp / "shape", options);
  rewrite_weights(tmp / "shape", [&](auto& t) {
    for (auto& [name, tensor] : t)
      if (name == victim) tensor = Tensor::zeros(DType::f32, {3, 3, 32, 31});
  });
  expect_error([&] { Vqgan::load(tmp / "shape"); }, ErrorKind::file_format,
               "has shape [3, 3, 32, 31]");

  make_random_vqgan(tmp / "extra", options);
  rewrite_weights(tmp / "extra", [&](auto& t) {
    t.emplace_back("encoder.MidBlock_0.AttnBlock_0.Conv_0.kernel", Tensor::zeros(DType::f32, {1}));
  });
  expect_error([&] { Vqgan::load(tmp / "extra"); }, ErrorKind::file_format,
               "unexpected tensor 'encoder.MidBlock_0.AttnBlock_0");

  // Config inconsistent with the weights: the first tensor whose shape disagrees is named.
  make_random_vqgan(tmp / "config", options);
  VqganConfig wider = options.config;
  wider.hidden_channels = 64;
  expect_error([&] { Vqgan::load(tmp / "config" / "vqgan.safetensors", wider); },
               ErrorKind::file_format, "'encoder.Conv_0.kernel' has shape [3, 3, 3, 32]");

  fs::create_directories(tmp / "empty");
  expect_error([&] { Vqgan::load(tmp / "empty"); }, ErrorKind::io, "no vqgan.safetensors");
  write_safetensors(tmp / "empty" / "other.safetensors", {{"x", Tensor::zeros(DType::f32, {1})}},
                    {{"lwm_format", "lwm-checkpoint"}});
  expect_error([&] { Vqgan::load(tmp / "empty" / "other.safetensors", options.config); },
               ErrorKind::file_format, "not VQGAN weights");
}

TEST(Vqgan, BadInputsGiveClearErrors) {
  test::TempDir tmp;
  VqganMakerOptions options;
  options.config = small_config(0);
  make_random_vqgan(tmp.path(), options);
  const auto vqgan = Vqgan::load(tmp.path());
  const VqganConfig& c = vqgan->config();
  expect_error(
      [&] {
        vqgan->encode(Tensor::zeros(DType::f32, {1, 15, 16, 3}));
      },
      ErrorKind::invalid_argument, "[1, 15, 16, 3]");
  expect_error(
      [&] {
        vqgan->encode(Tensor::zeros(DType::f32, {16, 16, 3}));
      },
      ErrorKind::invalid_argument, "expected [frames, 16, 16, 3]");
  std::vector<float> frames(static_cast<std::size_t>(2 * 16 * 16 * 3), 0.0f);
  frames[static_cast<std::size_t>(16 * 16 * 3 + (2 * 16 + 5) * 3 + 1)] = 200.0f;
  expect_error([&] { vqgan->encode(frames_tensor(c, 2, frames)); }, ErrorKind::invalid_argument,
               "frame 1 pixel (row 2, column 5)");
  frames.assign(frames.size(), std::numeric_limits<float>::quiet_NaN());
  expect_error([&] { vqgan->encode(frames_tensor(c, 2, frames)); }, ErrorKind::invalid_argument,
               "outside [-1, 1]");
  std::vector<std::int32_t> codes(static_cast<std::size_t>(2 * c.tokens_per_frame()), 0);
  codes[static_cast<std::size_t>(c.tokens_per_frame() + 7)] =
      static_cast<std::int32_t>(c.num_embeddings);
  expect_error([&] { vqgan->decode(codes); }, ErrorKind::invalid_argument,
               "code 128 at frame 1 position 7");
  codes.pop_back();
  expect_error([&] { vqgan->decode(codes); }, ErrorKind::invalid_argument, "not a whole number");
  expect_error([&] { vqgan->decode({}); }, ErrorKind::invalid_argument, "not a whole number");
}

}  // namespace
}  // namespace lwm
