// Broken files and impossible configs: each must raise lwm::Error of the right kind whose message
// names the file and says what is wrong (design.md, "Errors").
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>

#include "lwm/error.h"
#include "lwm/model_config.h"
#include "lwm/safetensors.h"
#include "test_support.h"

namespace lwm {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

void expect_error(const std::function<void()>& action, ErrorKind kind,
                  const std::vector<std::string>& fragments) {
  try {
    action();
    ADD_FAILURE() << "expected an lwm::Error of kind " << to_string(kind);
  } catch (const Error& error) {
    EXPECT_EQ(error.kind(), kind) << error.what();
    for (const auto& fragment : fragments) EXPECT_THAT(error.what(), HasSubstr(fragment));
  }
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A safetensors file assembled by hand: the length prefix (which may lie), the header, data.
void write_raw_safetensors(const fs::path& path, const std::string& header, std::size_t data_bytes,
                           std::optional<std::uint64_t> claimed_length = std::nullopt) {
  const std::uint64_t length = claimed_length.value_or(header.size());
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  bytes += header;
  bytes.append(data_bytes, '\x01');
  write_text(path, bytes);
}

// --- safetensors headers ---------------------------------------------------------------------

struct BadHeader {
  const char* case_name;
  std::string header;
  std::size_t data_bytes;
  ErrorKind kind;
  std::vector<std::string> fragments;  // besides the file name
};

// Test names and failure messages show the case name, not the struct's bytes.
void PrintTo(const BadHeader& c, std::ostream* os) { *os << c.case_name; }

class BadSafetensorsHeader : public ::testing::TestWithParam<BadHeader> {};

TEST_P(BadSafetensorsHeader, IsRejectedWithFileAndProblem) {
  const BadHeader& bad = GetParam();
  test::TempDir dir;
  const fs::path path = dir / "broken.safetensors";
  write_raw_safetensors(path, bad.header, bad.data_bytes);
  auto fragments = bad.fragments;
  fragments.push_back("broken.safetensors");
  expect_error([&] { SafetensorsFile file(path); }, bad.kind, fragments);
}

const BadHeader kBadHeaders[] = {
    {"InvalidJson", R"({"w": {"dtype": "F32",)", 0, ErrorKind::file_format, {"not valid JSON"}},
    {"HeaderIsAnArray", R"([1, 2, 3])", 0, ErrorKind::file_format, {"not a JSON object"}},
    {"EntryNotAnObject", R"({"w": 5})", 0, ErrorKind::file_format, {"'w'", "not a JSON object"}},
    {"MissingDtype",
     R"({"w": {"shape": [2], "data_offsets": [0, 8]}})",
     8,
     ErrorKind::file_format,
     {"'w'", "dtype"}},
    {"MissingShape",
     R"({"w": {"dtype": "F32", "data_offsets": [0, 8]}})",
     8,
     ErrorKind::file_format,
     {"'w'", "shape"}},
    {"MissingOffsets",
     R"({"w": {"dtype": "F32", "shape": [2]}})",
     8,
     ErrorKind::file_format,
     {"'w'", "data_offsets"}},
    {"NegativeDimension",
     R"({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})",
     8,
     ErrorKind::file_format,
     {"'w'", "non-negative integers"}},
    {"FractionalDimension",
     R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})",
     8,
     ErrorKind::file_format,
     {"'w'", "non-negative integers"}},
    {"UnknownDtypeF64",
     R"({"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}})",
     8,
     ErrorKind::unsupported,
     {"'w'", "F64"}},
    {"UnknownDtypeI32",
     R"({"ids": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}})",
     8,
     ErrorKind::unsupported,
     {"'ids'", "I32"}},
    {"EndBeforeBegin",
     R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})",
     8,
     ErrorKind::file_format,
     {"'w'", "ends before it begins"}},
    {"OffsetsBeyondFile",
     R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
     8,
     ErrorKind::file_format,
     {"'w'", "beyond the data section"}},
    {"SizeMismatch",
     R"({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 8]}})",
     8,
     ErrorKind::file_format,
     {"'w'", "needs 6"}},
    {"OverlappingTensors",
     R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
     12,
     ErrorKind::file_format,
     {"overlaps", "'a'", "'b'"}},
    {"MetadataNotStrings",
     R"({"__metadata__": {"n": 3}})",
     0,
     ErrorKind::file_format,
     {"__metadata__"}},
};

INSTANTIATE_TEST_SUITE_P(Cases, BadSafetensorsHeader, ::testing::ValuesIn(kBadHeaders),
                         [](const auto& test_case) {
                           return std::string(test_case.param.case_name);
                         });

TEST(BadSafetensors, TruncatedBeforeTheLengthPrefix) {
  test::TempDir dir;
  write_text(dir / "short.safetensors", "abc");
  expect_error([&] { SafetensorsFile file(dir / "short.safetensors"); }, ErrorKind::file_format,
               {"short.safetensors", "truncated"});
}

TEST(BadSafetensors, EmptyFile) {
  test::TempDir dir;
  write_text(dir / "empty.safetensors", "");
  expect_error([&] { SafetensorsFile file(dir / "empty.safetensors"); }, ErrorKind::file_format,
               {"empty.safetensors", "truncated"});
}

TEST(BadSafetensors, HeaderLengthLargerThanTheFile) {
  test::TempDir dir;
  write_raw_safetensors(dir / "lying.safetensors", "{}", 0, 1000);
  expect_error([&] { SafetensorsFile file(dir / "lying.safetensors"); }, ErrorKind::file_format,
               {"lying.safetensors", "header length 1000"});
}

TEST(BadSafetensors, FileCutShortAfterTheHeader) {
  test::TempDir dir;
  const fs::path path = dir / "cut.safetensors";
  write_safetensors(path, {{"weight", Tensor::from_floats({4}, {1, 2, 3, 4})}});
  fs::resize_file(path, fs::file_size(path) - 3);
  expect_error([&] { SafetensorsFile file(path); }, ErrorKind::file_format,
               {"cut.safetensors", "'weight'", "beyond the data section"});
}

TEST(BadSafetensors, MissingFile) {
  test::TempDir dir;
  expect_error([&] { SafetensorsFile file(dir / "nowhere.safetensors"); }, ErrorKind::io,
               {"nowhere.safetensors"});
}

// --- weight stores ---------------------------------------------------------------------------

void write_index(const fs::path& dir, const nlohmann::json& weight_map) {
  write_text(dir / "model.safetensors.index.json",
             nlohmann::json({{"weight_map", weight_map}}).dump());
}

TEST(BadWeightStore, NoWeightFiles) {
  test::TempDir dir;
  expect_error([&] { WeightStore store(dir.path()); }, ErrorKind::io,
               {dir.path().string(), "model.safetensors"});
}

TEST(BadWeightStore, ShardListedInIndexIsMissing) {
  test::TempDir dir;
  write_index(dir.path(), {{"w", "model-00001-of-00002.safetensors"}});
  expect_error([&] { WeightStore store(dir.path()); }, ErrorKind::io,
               {"model-00001-of-00002.safetensors", "'w'", "does not exist"});
}

TEST(BadWeightStore, TensorListedInIndexIsAbsentFromItsShard) {
  test::TempDir dir;
  write_safetensors(dir / "shard.safetensors", {{"present", Tensor::from_floats({1}, {1})}});
  write_index(dir.path(), {{"present", "shard.safetensors"}, {"absent", "shard.safetensors"}});
  expect_error([&] { WeightStore store(dir.path()); }, ErrorKind::file_format,
               {"shard.safetensors", "'absent'", "no such tensor"});
}

TEST(BadWeightStore, IndexIsNotJson) {
  test::TempDir dir;
  write_text(dir / "model.safetensors.index.json", "{weight_map: ");
  expect_error([&] { WeightStore store(dir.path()); }, ErrorKind::file_format,
               {"model.safetensors.index.json", "not valid JSON"});
}

TEST(BadWeightStore, IndexWithoutWeightMap) {
  test::TempDir dir;
  write_text(dir / "model.safetensors.index.json", R"({"metadata": {}})");
  expect_error([&] { WeightStore store(dir.path()); }, ErrorKind::file_format,
               {"model.safetensors.index.json", "weight_map"});
}

TEST(BadWeightStore, IndexPointsOutsideTheDirectory) {
  test::TempDir dir;
  write_index(dir.path(), {{"w", "../elsewhere.safetensors"}});
  expect_error([&] { WeightStore store(dir.path()); }, ErrorKind::file_format,
               {"model.safetensors.index.json", "'w'", "inside the model directory"});
}

TEST(BadWeightStore, MissingTensorIsNamed) {
  test::TempDir dir;
  write_safetensors(dir / "model.safetensors", {{"present", Tensor::from_floats({1}, {1})}});
  const WeightStore store(dir.path());
  expect_error([&] { (void)store.tensor("lm_head.weight"); }, ErrorKind::invalid_argument,
               {dir.path().string(), "'lm_head.weight'"});
}

// --- model configs ---------------------------------------------------------------------------

TEST(BadConfig, MissingConfigJson) {
  test::TempDir dir;
  expect_error([&] { ModelConfig::load(dir.path()); }, ErrorKind::io,
               {(dir / "config.json").string()});
}

TEST(BadConfig, ConfigIsNotJson) {
  test::TempDir dir;
  write_text(dir / "config.json", "hidden_size = 4096");
  expect_error([&] { ModelConfig::load(dir.path()); }, ErrorKind::config,
               {"config.json", "not valid JSON"});
}

TEST(BadConfig, ConfigIsNotAnObject) {
  test::TempDir dir;
  write_text(dir / "config.json", "[4096, 32]");
  expect_error([&] { ModelConfig::load(dir.path()); }, ErrorKind::config,
               {"config.json", "not a JSON object"});
}

struct ImpossibleConfig {
  const char* case_name;
  nlohmann::json fields;  // merged over the tiny preset
  ErrorKind kind;
  std::vector<std::string> fragments;  // besides the file name
};

void PrintTo(const ImpossibleConfig& c, std::ostream* os) { *os << c.case_name; }

class BadConfigFile : public ::testing::TestWithParam<ImpossibleConfig> {};

TEST_P(BadConfigFile, IsRejectedWithFileAndField) {
  const ImpossibleConfig& bad = GetParam();
  test::TempDir dir;
  nlohmann::json config = ModelConfig::preset("tiny").to_json();
  config.update(bad.fields);
  write_text(dir / "config.json", config.dump());
  auto fragments = bad.fragments;
  fragments.push_back((dir / "config.json").string());
  expect_error([&] { ModelConfig::load(dir.path()); }, bad.kind, fragments);
}

const ImpossibleConfig kImpossibleConfigs[] = {
    {"ZeroVocab", {{"vocab_size", 0}}, ErrorKind::config, {"vocab_size", "positive"}},
    {"NegativeLayers", {{"num_hidden_layers", -1}}, ErrorKind::config, {"num_hidden_layers"}},
    {"ZeroIntermediate", {{"intermediate_size", 0}}, ErrorKind::config, {"intermediate_size"}},
    {"HiddenNotDivisibleByHeads",
     {{"num_attention_heads", 3}, {"num_key_value_heads", 3}},
     ErrorKind::config,
     {"hidden_size", "num_attention_heads", "divisible"}},
    {"OddHeadDim",
     {{"hidden_size", 60}, {"num_attention_heads", 4}},
     ErrorKind::config,
     {"odd", "15"}},
    {"HeadsNotMultipleOfKvHeads",
     {{"num_key_value_heads", 3}},
     ErrorKind::config,
     {"num_key_value_heads"}},
    {"ZeroTheta", {{"rope_theta", 0.0}}, ErrorKind::config, {"rope_theta"}},
    {"NegativeLwmTheta",
     {{"rope_theta", nullptr}, {"theta", -5.0}},
     ErrorKind::config,
     {"rope_theta"}},
    {"ZeroEps", {{"rms_norm_eps", 0.0}}, ErrorKind::config, {"rms_norm_eps"}},
    {"BosOutsideVocab", {{"bos_token_id", 512}}, ErrorKind::config, {"bos_token_id", "512"}},
    {"NegativeEos", {{"eos_token_id", -3}}, ErrorKind::config, {"eos_token_id"}},
    {"ZeroMaxSequence",
     {{"max_position_embeddings", 0}},
     ErrorKind::config,
     {"max_position_embeddings"}},
    {"StringForInteger", {{"hidden_size", "4096"}}, ErrorKind::config, {"hidden_size", "integer"}},
    {"FractionalLayers", {{"num_hidden_layers", 2.5}}, ErrorKind::config, {"num_hidden_layers"}},
    {"ThetaAliasesDisagree",
     {{"rope_theta", 1e6}, {"theta", 1e4}},
     ErrorKind::config,
     {"rope_theta", "theta", "disagree"}},
    {"UnknownConvention",
     {{"lwm_weight_convention", "torch"}},
     ErrorKind::config,
     {"lwm_weight_convention", "torch"}},
    {"UnsupportedTorchDtype",
     {{"torch_dtype", "float64"}},
     ErrorKind::unsupported,
     {"torch_dtype", "float64"}},
    {"RopeScaling",
     {{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}},
     ErrorKind::unsupported,
     {"rope_scaling"}},
    {"NotLlama", {{"model_type", "mistral"}}, ErrorKind::unsupported, {"model_type", "mistral"}},
};

INSTANTIATE_TEST_SUITE_P(Cases, BadConfigFile, ::testing::ValuesIn(kImpossibleConfigs),
                         [](const auto& test_case) {
                           return std::string(test_case.param.case_name);
                         });

}  // namespace
}  // namespace lwm
