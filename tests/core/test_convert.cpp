// `lwm convert` and its readers: tux/flax msgpack files, VQGAN pickles and PyTorch checkpoints
// written by tests/python/tux_fixture.py (msgpack-python, numpy, pickle, zipfile), converted and
// loaded; the msgpack writer byte-identical to msgpack-python; and bad inputs (every
// truncation, flipped bytes, lying lengths, forbidden opcodes and globals, wrong shapes, missing
// tensors).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>

#include "convert/msgpack_records.h"
#include "convert/pickle_reader.h"
#include "convert/vqgan_params.h"
#include "lwm/convert.h"
#include "lwm/error.h"
#include "lwm/model.h"
#include "lwm/model_maker.h"
#include "lwm/safetensors.h"
#include "test_support.h"

namespace lwm {
namespace {

namespace fs = std::filesystem;
using convert::ArrayLeaf;
using convert::Bytes;
using ::testing::HasSubstr;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

Bytes as_bytes(const std::string& s) {
  return {reinterpret_cast<const unsigned char*>(s.data()), s.size()};
}

// Runs tests/python/tux_fixture.py; fails the test when Python or msgpack is missing.
void fixture(const std::string& arguments) {
  const fs::path python = test::test_python();
  ASSERT_TRUE(fs::exists(python)) << "no test Python at " << python
                                  << "; run `bash packaging/install-deps.sh --tests`";
  const fs::path script = test::source_dir() / "tests/python/tux_fixture.py";
  const auto result =
      test::run_command("'" + python.string() + "' '" + script.string() + "' " + arguments);
  ASSERT_EQ(result.exit_code, 0) << result.output;
}

std::string q(const fs::path& p) {
  return "'" + p.string() + "'";
}

std::vector<ArrayLeaf> read_records(const std::string& bytes) {
  convert::MsgpackRecordReader reader(as_bytes(bytes), "test");
  std::vector<ArrayLeaf> leaves;
  ArrayLeaf leaf;
  while (reader.next(leaf)) leaves.push_back(leaf);
  return leaves;
}

std::string concat(const std::vector<Bytes>& pieces) {
  std::string out;
  for (const auto& p : pieces) out.append(reinterpret_cast<const char*>(p.data()), p.size());
  return out;
}

ModelConfig tiny_config() {
  ModelConfig config = ModelConfig::preset("tiny");
  config.vocab_size = 96;  // small files keep the every-cut-point tests fast
  config.num_layers = 2;
  return config;
}

void make_model(const fs::path& dir, WeightConvention convention, DType dtype, std::uint64_t seed) {
  ModelMakerOptions options;
  options.config = tiny_config();
  options.config.convention = convention;
  options.config.convention_known = true;
  options.dtype = dtype;
  options.seed = seed;
  options.norm_weight_noise = 0.1f;
  make_random_model(dir, options);
}

std::vector<float> logits_of(const fs::path& dir, const std::vector<std::int32_t>& tokens) {
  const auto model = Model::load(dir);
  KVCache cache(model->config(), 64);
  std::vector<float> logits;
  model->forward(tokens, cache, LogitsFor::all, &logits);
  return logits;
}

// ---- the msgpack record format --------------------------------------------------------------

// Python wrote the file with msgpack-python; our writer must produce the same bytes from the
// leaves our reader found in it (stacked and per-layer, chunked and not, train state with an
// ext-3 scalar, bf16 and f32).
TEST(MsgpackRecords, WriterIsByteIdenticalToMsgpackPython) {
  test::TempDir dir;
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (const DType dtype : {DType::bf16, DType::f32}) {
    const fs::path model = dir / ("model-" + std::string(dtype_name(dtype)));
    make_model(model, WeightConvention::jax, dtype, seed);
    for (const std::string options :
         {"--chunk 1000 --layout stacked", "--chunk 100000 --layout per_layer",
          "--chunk 777 --form trainstate", "--chunk 64 --vision 10"}) {
      SCOPED_TRACE(options + " " + dtype_name(dtype));
      const fs::path file = dir / "file";
      fixture("tux " + q(model) + " " + q(file) + " " + options);
      const std::string original = read_bytes(file);
      const std::uint64_t chunk = std::stoull(options.substr(8));
      std::string rewritten;
      convert::MsgpackRecordWriter writer(
          [&](const void* data, std::size_t size) {
            rewritten.append(static_cast<const char*>(data), size);
          },
          chunk);
      std::size_t chunked = 0;
      for (const auto& leaf : read_records(original)) {
        chunked += leaf.pieces.size() > 1 ? 1 : 0;
        writer.write_array(leaf.key, leaf.dtype, leaf.shape, leaf.pieces,
                           leaf.kind == convert::LeafKind::numpy_scalar);
      }
      if (chunk < 10000) {
        EXPECT_GT(chunked, 0u);
      }
      EXPECT_TRUE(rewritten == original)
          << "sizes " << rewritten.size() << " vs " << original.size();
    }
  }
}

// Chunking by our writer and reading back, on odd sizes around the threshold (spec §4.1: more
// than max bytes is chunked, exactly max is not; chunks hold max/itemsize elements).
TEST(MsgpackRecords, ChunkedArraysRoundTripAtEveryBoundary) {
  std::mt19937_64 rng(test::test_seed());
  const std::uint64_t threshold = 96;
  for (const auto& [dtype, itemsize] : std::vector<std::pair<std::string, std::size_t>>{
           {"bfloat16", 2}, {"float32", 4}, {"float64", 8}, {"uint8", 1}}) {
    for (const std::int64_t numel : {1, 5, 23, 24, 25, 47, 48, 49, 96, 97, 1000}) {
      const Shape shape = numel % 2 == 0 ? Shape{2, numel / 2} : Shape{numel};
      std::string data(static_cast<std::size_t>(numel) * itemsize, '\0');
      for (auto& ch : data) ch = static_cast<char>(rng());
      std::string file;
      convert::MsgpackRecordWriter writer(
          [&](const void* p, std::size_t n) { file.append(static_cast<const char*>(p), n); },
          threshold);
      // Split the input arbitrarily: the writer must not care where the pieces break.
      const std::size_t cut = data.size() / 3;
      writer.write_array({"a", "b"}, dtype, shape,
                         {as_bytes(data).subspan(0, cut), as_bytes(data).subspan(cut)});
      const auto leaves = read_records(file);
      ASSERT_EQ(leaves.size(), 1u);
      EXPECT_EQ(leaves[0].shape, shape);
      EXPECT_EQ(leaves[0].dtype, dtype);
      EXPECT_EQ(concat(leaves[0].pieces), data);
      const std::uint64_t per_chunk = threshold / itemsize;
      const std::size_t expected_pieces =
          data.size() > threshold
              ? static_cast<std::size_t>((static_cast<std::uint64_t>(numel) + per_chunk - 1) /
                                         per_chunk)
              : 1;
      EXPECT_EQ(leaves[0].pieces.size(), expected_pieces) << dtype << " numel " << numel;
    }
  }
}

// ---- conversions ------------------------------------------------------------------------------

class ConvertRoundTrip : public ::testing::TestWithParam<std::tuple<DType, std::string>> {};

// Random model → tux/flax file written by Python → convert → Model::load → the same logits
// exactly (the weights are the same bytes in the same layout).
TEST_P(ConvertRoundTrip, LogitsEqualTheOriginalModel) {
  const auto& [dtype, options] = GetParam();
  test::TempDir dir;
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  make_model(dir / "original", WeightConvention::jax, dtype, seed);
  fixture("tux " + q(dir / "original") + " " + q(dir / "params") + " " + options);
  ConvertOptions convert_options;
  convert_options.max_shard_bytes = 20000;  // several shards and an index
  std::int64_t last_done = -1, total = 0;
  const ConvertResult result =
      convert_model(dir / "params", dir / "converted", convert_options, [&](const Progress& p) {
        EXPECT_GE(p.done, last_done);
        last_done = p.done;
        total = p.total;
        return true;
      });
  EXPECT_EQ(last_done, total);
  EXPECT_GT(result.shards, 1);
  EXPECT_TRUE(fs::exists(dir / "converted" / "model.safetensors.index.json"));
  const ModelConfig written = ModelConfig::load(dir / "converted");
  EXPECT_EQ(written.convention, WeightConvention::jax);
  EXPECT_EQ(written.torch_dtype, dtype);
  std::mt19937_64 rng(seed);
  std::vector<std::int32_t> tokens(9);
  for (auto& t : tokens) t = static_cast<std::int32_t>(rng() % 96);
  const auto expected = logits_of(dir / "original", tokens);
  const auto actual = logits_of(dir / "converted", tokens);
  ASSERT_EQ(actual.size(), expected.size());
  EXPECT_EQ(std::memcmp(actual.data(), expected.data(), actual.size() * sizeof(float)), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Sources, ConvertRoundTrip,
    ::testing::Values(std::make_tuple(DType::bf16, "--layout stacked --chunk 4096"),
                      std::make_tuple(DType::f32, "--layout per_layer --chunk 5000"),
                      std::make_tuple(DType::f16, "--layout stacked"),
                      std::make_tuple(DType::bf16, "--form trainstate --chunk 3000"),
                      std::make_tuple(DType::f32, "--form flax --chunk 2000 --layout stacked"),
                      std::make_tuple(DType::bf16, "--form flax --layout per_layer"),
                      // param_scan_axis=1, rows straddling chunk boundaries
                      std::make_tuple(DType::bf16, "--layout stacked_axis1 --chunk 1000"),
                      std::make_tuple(DType::f32, "--form flax --layout stacked_axis1")));

TEST(Convert, VisionParametersAreKeptAndDescribed) {
  test::TempDir dir;
  make_model(dir / "original", WeightConvention::jax, DType::bf16, test::test_seed());
  fixture("tux " + q(dir / "original") + " " + q(dir / "params") + " --vision 40 --chunk 1500");
  const ConvertResult result = convert_model(dir / "params", dir / "out");
  EXPECT_EQ(result.vision_vocab_size, 40);
  const WeightStore store(dir / "out");
  EXPECT_EQ(store.tensor("transformer.vte.embedding").shape(), (Shape{40, 64}));
  EXPECT_EQ(store.tensor("vision_head.kernel").shape(), (Shape{64, 40}));
  const auto config = nlohmann::json::parse(read_bytes(dir / "out" / "config.json"));
  EXPECT_EQ(config["vision_vocab_size"], 40);
  EXPECT_NO_THROW(Model::load(dir / "out"));
}

TEST(Convert, HuggingFaceDirectoryKeepsItsConventionAndLogits) {
  test::TempDir dir;
  make_model(dir / "hf", WeightConvention::hf, DType::bf16, test::test_seed());
  ConvertOptions options;
  options.rope_theta = 5e7;
  options.max_sequence_length = 4096;
  const ConvertResult result = convert_model(dir / "hf", dir / "out", options);
  EXPECT_EQ(result.source, ConvertSource::hf_directory);
  const ModelConfig config = ModelConfig::load(dir / "out");
  EXPECT_EQ(config.convention, WeightConvention::hf);
  EXPECT_EQ(config.rope_theta, 5e7);
  EXPECT_EQ(config.max_sequence_length, 4096);
  // Same weights, same theta → same logits as the source with theta patched in.
  auto source_config = nlohmann::json::parse(read_bytes(dir / "hf" / "config.json"));
  source_config["rope_theta"] = 5e7;
  write_bytes(dir / "hf" / "config.json", source_config.dump());
  const std::vector<std::int32_t> tokens = {1, 5, 9, 77, 3};
  const auto expected = logits_of(dir / "hf", tokens);
  const auto actual = logits_of(dir / "out", tokens);
  EXPECT_EQ(std::memcmp(actual.data(), expected.data(), actual.size() * sizeof(float)), 0);
}

// Every tensor of `source` is in `converted` with the same dtype, shape and bytes.
void expect_same_tensors(const fs::path& source, const fs::path& converted) {
  const WeightStore expected(source);
  const WeightStore actual(converted);
  EXPECT_EQ(actual.names().size(), expected.names().size());
  for (const auto& name : expected.names()) {
    SCOPED_TRACE(name);
    const Tensor want = expected.tensor(name);
    const Tensor got = actual.tensor(name);
    ASSERT_EQ(got.dtype(), want.dtype());
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0);
  }
}

// spec §1.6: the released LWM PyTorch repositories hold pytorch_model*.bin (torch.save's zip).
// Every layout torch and transformers write (one file or sharded with an index, either archive
// folder name, a plain dict or an OrderedDict state dict, shared storages, a transposed view,
// bf16 and f32) converts to the same tensors, bit for bit, and so to the same logits.
TEST(Convert, PyTorchCheckpointsGiveTheSameTensorsAndLogits) {
  test::TempDir dir;
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE("LWM_TEST_SEED=" + std::to_string(seed));
  make_model(dir / "bf16", WeightConvention::hf, DType::bf16, seed);
  make_model(dir / "f32", WeightConvention::hf, DType::f32, seed + 1);
  const std::vector<std::int32_t> tokens = {1, 5, 9, 77, 3};
  const std::pair<const char*, const char*> cases[] = {
      {"bf16", ""},
      {"bf16", "--shards 3 --archive archive"},
      {"bf16", "--state-dict --views"},
      {"f32", "--shards 2 --views"},
  };
  for (const auto& [source, flags] : cases) {
    SCOPED_TRACE(std::string(source) + " " + flags);
    const fs::path bin = dir / "bin";
    const fs::path out = dir / "out";
    fs::remove_all(bin);
    fs::remove_all(out);
    fixture("torch " + q(dir / source) + " " + q(bin) + " " + flags);
    const ConvertResult result = convert_model(bin, out);
    EXPECT_EQ(result.source, ConvertSource::hf_directory);
    expect_same_tensors(dir / source, out);
    const auto expected = logits_of(dir / source, tokens);
    const auto actual = logits_of(out, tokens);
    ASSERT_EQ(actual.size(), expected.size());
    EXPECT_EQ(std::memcmp(actual.data(), expected.data(), actual.size() * sizeof(float)), 0);
  }
}

// spec §3.2: the real VQGAN has 146,244,675 float32 parameters; the §3.7 table must add up.
TEST(Vqgan, ParameterTableMatchesTheReleasedModelSize) {
  std::int64_t total = 0;
  for (const auto& [name, shape] : convert::vqgan_parameter_shapes(convert::VqganConfig{}))
    total += shape_numel(shape);
  EXPECT_EQ(total, 146244675);
}

class VqganPickles : public ::testing::TestWithParam<std::tuple<int, std::string>> {};

// The pickle written by Python (numpy arrays, FrozenDict- and jax.Array-shaped objects, protocols
// 2, 4, 5) converts to vqgan.safetensors holding exactly the arrays Python saved beside it.
TEST_P(VqganPickles, ConvertToTheSameArrays) {
  const auto& [protocol, variant] = GetParam();
  test::TempDir dir;
  fixture("vqgan " + q(dir / "vqgan") + " " + q(dir / "reference.safetensors") + " --protocol " +
          std::to_string(protocol) + " --variant " + variant +
          " --hidden 8 --mult 1,2,3 --res-blocks 2 --seed " +
          std::to_string(test::test_seed() % 1000));
  const ConvertResult result = convert_model(dir / "vqgan", dir / "out");
  EXPECT_EQ(result.source, ConvertSource::vqgan_pickle);
  const SafetensorsFile reference(dir / "reference.safetensors");
  const SafetensorsFile converted(dir / "out" / "vqgan.safetensors");
  EXPECT_EQ(converted.names(), reference.names());
  for (const auto& name : reference.names()) {
    const Tensor a = converted.tensor(name), b = reference.tensor(name);
    ASSERT_EQ(a.shape(), b.shape()) << name;
    EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << name;
  }
  const auto config = nlohmann::json::parse(read_bytes(dir / "out" / "config.json"));
  EXPECT_EQ(config["vqgan"]["channel_mult"], nlohmann::json({1, 2, 3}));
  EXPECT_EQ(config["vqgan"]["num_res_blocks"], 2);
  EXPECT_EQ(config["vqgan"]["hidden_channels"], 8);
  EXPECT_EQ(config["vqgan"]["weights"], "vqgan.safetensors");
}

INSTANTIATE_TEST_SUITE_P(Protocols, VqganPickles,
                         ::testing::Combine(::testing::Values(2, 4, 5),
                                            ::testing::Values("numpy", "frozendict_newobj",
                                                              "frozendict_reduce", "jax")));

// ---- bad inputs -----------------------------------------------------------------------------

// Writes the model's tensors (JAX names, '.'-split) as a tux file with our writer.
std::string tux_of(const fs::path& model, std::uint64_t chunk, const std::string& drop = "",
                   const std::string& add = "") {
  const WeightStore store(model);
  std::string out;
  convert::MsgpackRecordWriter writer(
      [&](const void* p, std::size_t n) { out.append(static_cast<const char*>(p), n); }, chunk);
  auto split = [](const std::string& name) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    for (std::size_t dot; (dot = name.find('.', start)) != std::string::npos; start = dot + 1) {
      parts.push_back(name.substr(start, dot - start));
    }
    parts.push_back(name.substr(start));
    return parts;
  };
  for (const auto& name : store.names()) {
    if (name == drop) continue;
    const Tensor t = store.tensor(name);
    writer.write_array(split(name), t.dtype() == DType::bf16 ? "bfloat16" : "float32", t.shape(),
                       {Bytes(static_cast<const unsigned char*>(t.raw()), t.nbytes())});
  }
  if (!add.empty()) {
    const std::string zeros(16, '\0');
    writer.write_array(split(add), "float32", {4}, {as_bytes(zeros)});
  }
  return out;
}

std::string convert_error(const fs::path& source, const fs::path& out,
                          const ConvertOptions& options = {}) {
  try {
    convert_model(source, out, options);
  } catch (const Error& error) {
    EXPECT_FALSE(fs::exists(out)) << "a failed conversion left " << out;
    return error.what();
  }
  ADD_FAILURE() << "converting " << source << " did not fail";
  return {};
}

TEST(ConvertBadInput, EveryTruncationIsAnErrorNamingTheRecord) {
  test::TempDir dir;
  ModelMakerOptions options;
  options.config = ModelConfig::preset("tiny");
  options.config.vocab_size = 8;
  options.config.hidden_size = 8;
  options.config.num_heads = 2;
  options.config.num_kv_heads = 2;
  options.config.intermediate_size = 12;
  options.config.num_layers = 1;
  options.config.convention_known = true;
  options.dtype = DType::f32;
  make_random_model(dir / "m", options);
  const std::string file = tux_of(dir / "m", 100);
  const auto leaves = read_records(file);
  for (std::size_t cut = 0; cut < file.size(); ++cut) {
    const std::string truncated = file.substr(0, cut);
    try {
      convert::MsgpackRecordReader reader(as_bytes(truncated), "cut");
      ArrayLeaf leaf;
      std::size_t n = 0;
      while (reader.next(leaf)) ++n;
      // Only a cut exactly between records reads cleanly, with fewer records.
      EXPECT_LT(n, leaves.size()) << "cut " << cut;
      EXPECT_EQ(cut, n == 0 ? 0
                            : leaves[n - 1].offset +
                                  (n < leaves.size() ? leaves[n].offset - leaves[n - 1].offset : 0))
          << "cut " << cut;
    } catch (const Error& error) {
      EXPECT_EQ(error.kind(), ErrorKind::file_format) << error.what();
      const std::string message = error.what();
      EXPECT_THAT(message, HasSubstr("truncated")) << "cut " << cut;
      // Once the key is complete, the message names it.
      for (const auto& leaf : leaves) {
        const std::uint64_t key_end = leaf.offset + 2 + leaf.key_string().size() + leaf.key.size();
        if (cut >= key_end + 8 && cut < leaf.offset + 8 + leaf.nbytes()) {
          EXPECT_THAT(message, HasSubstr("'" + leaf.key_string() + "'")) << "cut " << cut;
        }
      }
    }
  }
  // The converter says so too, and leaves nothing behind.
  write_bytes(dir / "cut", file.substr(0, file.size() - 3));
  EXPECT_THAT(convert_error(dir / "cut", dir / "out"), HasSubstr("truncated"));
}

TEST(ConvertBadInput, FlippedBytesNeverCrash) {
  std::mt19937_64 rng(test::test_seed());
  std::string file;
  convert::MsgpackRecordWriter writer(
      [&](const void* p, std::size_t n) { file.append(static_cast<const char*>(p), n); }, 40);
  const std::string data(120, '\x11');
  writer.write_array({"x", "kernel"}, "float32", {5, 6}, {as_bytes(data)});
  writer.write_array({"y"}, "bfloat16", {3}, {as_bytes(data).subspan(0, 6)});
  for (std::size_t at = 0; at < file.size(); ++at) {
    for (const unsigned value :
         {0x00u, 0xffu, 0xc6u, 0xddu, 0x93u, static_cast<unsigned>(rng() & 0xff)}) {
      std::string bad = file;
      bad[at] = static_cast<char>(value);
      try {
        read_records(bad);
      } catch (const Error&) {
      }
    }
  }
}

TEST(ConvertBadInput, LyingLengthsAndWrongTypesAreNamed) {
  std::string file;
  convert::MsgpackRecordWriter writer(
      [&](const void* p, std::size_t n) { file.append(static_cast<const char*>(p), n); });
  const std::string data(24, '\0');
  writer.write_array({"w", "kernel"}, "float32", {2, 3}, {as_bytes(data)});
  // Layout: 92 92 a1 'w' a6 'kernel' c4 <len> c7 <len> 01 93 92 02 03 a7 'float32' c4 18 <24 bytes>
  const std::size_t dims = file.find('\x92', 3);
  std::string bad = file;
  bad[dims + 2] = 4;  // shape [2, 4] no longer matches 24 bytes
  EXPECT_THAT([&] { read_records(bad); }, ::testing::ThrowsMessage<Error>(HasSubstr("'w/kernel'")));
  EXPECT_THAT([&] { read_records(bad); },
              ::testing::ThrowsMessage<Error>(HasSubstr("needs 32 bytes")));
  bad = file;
  bad[file.find("float32")] = 'x';  // "xloat32"
  EXPECT_THAT([&] { read_records(bad); },
              ::testing::ThrowsMessage<Error>(HasSubstr("unknown dtype 'xloat32'")));
  bad = file;
  bad[file.find('\xc7') + 2] = 9;  // ext type 9
  EXPECT_THAT([&] { read_records(bad); },
              ::testing::ThrowsMessage<Error>(HasSubstr("unknown ext type 9")));
  bad = file;
  bad[12] = static_cast<char>(0xff);  // the payload claims 255 bytes
  EXPECT_THAT([&] { read_records(bad); }, ::testing::ThrowsMessage<Error>(HasSubstr("truncated")));
}

TEST(ConvertBadInput, ShapesMissingAndExtraTensorsAreListed) {
  test::TempDir dir;
  make_model(dir / "m", WeightConvention::jax, DType::bf16, 3);
  write_bytes(dir / "drop", tux_of(dir / "m", 1 << 20, "transformer.h.1.feed_forward.w2.kernel"));
  EXPECT_THAT(convert_error(dir / "drop", dir / "out"),
              HasSubstr("missing (1): transformer.h.1.feed_forward.w2.kernel [160, 64]"));
  write_bytes(dir / "add", tux_of(dir / "m", 1 << 20, "", "transformer.extra.kernel"));
  EXPECT_THAT(convert_error(dir / "add", dir / "out"),
              HasSubstr("unexpected (1): transformer.extra.kernel [4]"));
  write_bytes(dir / "good", tux_of(dir / "m", 1 << 20));
  ConvertOptions wrong;
  wrong.preset = "debug";
  EXPECT_THAT(convert_error(dir / "good", dir / "out", wrong), HasSubstr("wrong shapes"));
  // And the good file converts.
  EXPECT_NO_THROW(convert_model(dir / "good", dir / "out"));
  EXPECT_THAT([&] { convert_model(dir / "good", dir / "out"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("not an empty directory")));
}

TEST(ConvertBadInput, CancelLeavesNothing) {
  test::TempDir dir;
  make_model(dir / "m", WeightConvention::jax, DType::f32, 4);
  write_bytes(dir / "good", tux_of(dir / "m", 1 << 20));
  int calls = 0;
  try {
    convert_model(dir / "good", dir / "out", {}, [&](const Progress&) { return ++calls < 2; });
    FAIL() << "not cancelled";
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), ErrorKind::cancelled);
  }
  EXPECT_FALSE(fs::exists(dir / "out"));
  for (const auto& entry : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().filename().string().find(".out."), std::string::npos) << entry.path();
  }
}

std::string pickle_error(const std::string& bytes) {
  try {
    convert::read_pickled_arrays(as_bytes(bytes), "p");
  } catch (const Error& error) {
    return error.what();
  }
  return "no error";
}

// Damaged PyTorch checkpoints: each problem is named, nothing is left behind, nothing crashes.
TEST(ConvertBadInput, PyTorchCheckpointProblemsAreNamed) {
  test::TempDir dir;
  make_model(dir / "hf", WeightConvention::hf, DType::bf16, test::test_seed());
  const fs::path bin = dir / "bin";
  const fs::path out = dir / "out";
  const auto error_of = [&](const std::string& flags) {
    fs::remove_all(bin);
    fixture("torch " + q(dir / "hf") + " " + q(bin) + " " + flags);
    return convert_error(bin, out);
  };
  EXPECT_THAT(error_of("--corrupt no-pickle"), HasSubstr("has no data.pkl"));
  EXPECT_THAT(error_of("--corrupt big-endian"), HasSubstr("'big'-endian"));
  EXPECT_THAT(error_of("--corrupt missing-storage"),
              HasSubstr("'pytorch_model/data/1' is missing from the archive"));
  EXPECT_THAT(error_of("--corrupt short-storage"), HasSubstr("where its pickle says"));
  EXPECT_THAT(error_of("--corrupt evil-global"), HasSubstr("system' is not allowed"));
  fs::remove_all(bin);
  fixture("torch " + q(dir / "hf") + " " + q(bin) + " --shards 3");
  fs::remove(bin / "pytorch_model-00002-of-00003.bin");
  EXPECT_THAT(convert_error(bin, out), HasSubstr("a shard is missing or incomplete"));

  // Every truncation of a checkpoint file is a clear error.
  fs::remove_all(bin);
  fixture("torch " + q(dir / "hf") + " " + q(bin));
  const std::string file = read_bytes(bin / "pytorch_model.bin");
  for (std::size_t cut = 0; cut < file.size(); cut += 1 + cut / 8) {
    write_bytes(bin / "pytorch_model.bin", file.substr(0, cut));
    EXPECT_THAT(convert_error(bin, out), HasSubstr("pytorch_model.bin")) << "cut " << cut;
  }
}

TEST(PickleBadInput, ForbiddenGlobalsAndOpcodesAreNamed) {
  // {'a': os.system} in protocol 2: GLOBAL 'os system'.
  EXPECT_THAT(pickle_error(std::string("\x80\x02}q\x00X\x01\x00\x00\x00"
                                       "acos\nsystem\nq\x01s.",
                                       24)),
              HasSubstr("the global 'os.system' is not allowed"));
  EXPECT_THAT(pickle_error(std::string("\x80\x04\x8c\x08"
                                       "builtins\x8c\x04"
                                       "eval\x93.",
                                       21)),
              HasSubstr("'builtins.eval'"));
  EXPECT_THAT(pickle_error(std::string("\x80\x02}(I1\n.", 7)), HasSubstr("opcode 0x49 ('I')"));
  EXPECT_THAT(pickle_error(std::string("\x80\x09}.", 4)), HasSubstr("protocol 9"));
  EXPECT_THAT(pickle_error(std::string("\x80\x02]q\x00.", 6)), HasSubstr("not a dict"));
  EXPECT_THAT(pickle_error(std::string("\x80\x02}X\x01\x00\x00\x00"
                                       "aK\x05s.",
                                       14)),
              HasSubstr("'a' is an int"));
}

// {'w': tensor of size (2, 3), stride (3, 1)} over a FloatStorage of `numel` elements, as
// torch.save pickles it (protocol 2).
std::string torch_pickle(char numel) {
  return std::string(
             "\x80\x02}X\x01\x00\x00\x00w"
             "ctorch._utils\n_rebuild_tensor_v2\n"
             "((X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
             "X\x01\x00\x00\x00"
             "0X\x03\x00\x00\x00"
             "cpuK",
             91) +
         numel +
         std::string(
             "tQK\x00K\x02K\x03\x86K\x03K\x01\x86\x89"
             "ccollections\nOrderedDict\n)RtRs.",
             46);
}

TEST(PickleBadInput, TorchTensorsMustLieInsideTheirStorage) {
  const std::string good = torch_pickle(6);
  const auto tensors = convert::read_pickled_torch_tensors(as_bytes(good), "p");
  ASSERT_EQ(tensors.size(), 1u);
  EXPECT_EQ(tensors[0].name, "w");
  EXPECT_EQ(tensors[0].dtype, "float32");
  EXPECT_EQ(tensors[0].shape, (Shape{2, 3}));
  EXPECT_EQ(tensors[0].storage_key, "0");
  EXPECT_TRUE(tensors[0].contiguous());
  try {
    convert::read_pickled_torch_tensors(as_bytes(torch_pickle(5)), "p");
    ADD_FAILURE() << "a tensor past the end of its storage was accepted";
  } catch (const Error& error) {
    EXPECT_THAT(error.what(), HasSubstr("reaches past its storage '0' of 5 elements"));
  }
  // A numpy parameter pickle is not a state dict, and the other way round.
  EXPECT_THAT(pickle_error(good), HasSubstr("'w' is a torch tensor, expected a dict or an array"));
}

TEST(PickleBadInput, TorchPickleTruncationsAndFlipsAreErrors) {
  const fs::path corpus = test::source_dir() / "tests/fuzz/corpus/pickle_reader";
  for (const char* name : {"torch_dict", "torch_state_dict_views"}) {
    SCOPED_TRACE(name);
    const std::string file = read_bytes(corpus / name);
    ASSERT_FALSE(convert::read_pickled_torch_tensors(as_bytes(file), name).empty());
    for (std::size_t cut = 0; cut < file.size(); ++cut) {
      EXPECT_THROW(convert::read_pickled_torch_tensors(as_bytes(file.substr(0, cut)), name), Error)
          << "cut " << cut;
    }
    std::mt19937_64 rng(test::test_seed());
    for (std::size_t at = 0; at < file.size(); ++at) {
      std::string bad = file;
      bad[at] = static_cast<char>(rng());
      try {
        convert::read_pickled_torch_tensors(as_bytes(bad), name);  // any outcome but a crash
      } catch (const Error&) {
      }
    }
  }
}

TEST(PickleBadInput, EveryTruncationAndFlipIsAnError) {
  test::TempDir dir;
  fixture("vqgan " + q(dir / "v") + " " + q(dir / "r") +
          " --protocol 2 --hidden 2 --mult 1 --res-blocks 1 --z 2 "
          "--codes 2 --embed 2");
  fixture("vqgan " + q(dir / "v5") + " " + q(dir / "r5") +
          " --protocol 5 --hidden 2 --mult 1 --res-blocks 1 --z 2 "
          "--codes 2 --embed 2");
  for (const char* name : {"v", "v5"}) {
    const std::string file = read_bytes(dir / name);
    ASSERT_FALSE(convert::read_pickled_arrays(as_bytes(file), "v").empty());
    for (std::size_t cut = 0; cut < file.size(); cut += 1 + cut / 512) {
      EXPECT_NE(pickle_error(file.substr(0, cut)), "no error") << "cut " << cut;
    }
    std::mt19937_64 rng(test::test_seed());
    for (std::size_t at = 0; at < file.size(); at += 3) {
      std::string bad = file;
      bad[at] = static_cast<char>(rng());
      pickle_error(bad);  // any outcome but a crash
    }
  }
}

}  // namespace
}  // namespace lwm
