// The safetensors reader and writer: round trips of every dtype and shape, the on-disk layout,
// sharded weight stores, and interoperability with Python's safetensors library both ways.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>

#include "lwm/error.h"
#include "lwm/safetensors.h"
#include "test_support.h"

namespace lwm {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::uint64_t header_length_of(const std::string& bytes) {
  std::uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | static_cast<unsigned char>(bytes[i]);
  return length;
}

Tensor random_tensor(DType dtype, Shape shape, std::mt19937_64& rng) {
  const auto values = test::random_normal(static_cast<std::size_t>(shape_numel(shape)), rng);
  return Tensor::from_floats(std::move(shape), values).to(dtype);
}

void expect_same_tensor(const Tensor& actual, const Tensor& expected, const std::string& name) {
  SCOPED_TRACE(name);
  EXPECT_EQ(actual.dtype(), expected.dtype());
  EXPECT_EQ(actual.shape(), expected.shape());
  ASSERT_EQ(actual.nbytes(), expected.nbytes());
  if (expected.nbytes() > 0) {
    EXPECT_EQ(std::memcmp(actual.raw(), expected.raw(), expected.nbytes()), 0);
  }
}

// Every dtype, and the shapes that trip up writers: scalars, empty dimensions, rank 4.
NamedTensors assorted_tensors(std::mt19937_64& rng) {
  return {
      {"f32.matrix", random_tensor(DType::f32, {3, 5}, rng)},
      {"bf16.matrix", random_tensor(DType::bf16, {4, 7}, rng)},
      {"f16.vector", random_tensor(DType::f16, {9}, rng)},
      {"f32.scalar", random_tensor(DType::f32, {}, rng)},
      {"f16.empty_rows", Tensor::zeros(DType::f16, {0, 3})},
      {"bf16.empty_cols", Tensor::zeros(DType::bf16, {2, 0})},
      {"f32.rank4", random_tensor(DType::f32, {2, 1, 3, 2}, rng)},
  };
}

TEST(Safetensors, RoundTripsEveryDtypeAndShape) {
  const auto seed = test::test_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  test::TempDir dir;
  const NamedTensors tensors = assorted_tensors(rng);
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "round trip"}};
  write_safetensors(dir / "t.safetensors", tensors, metadata);

  const SafetensorsFile file(dir / "t.safetensors");
  EXPECT_EQ(file.metadata(), metadata);
  EXPECT_EQ(file.names().size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    ASSERT_TRUE(file.contains(name)) << name;
    expect_same_tensor(file.tensor(name), tensor, name);
  }
}

TEST(Safetensors, DataSectionIsAlignedAndInWriteOrder) {
  std::mt19937_64 rng(7);
  test::TempDir dir;
  // A name of odd length makes the unpadded header length odd too.
  const NamedTensors tensors = {{"b", random_tensor(DType::f16, {3}, rng)},
                                {"a_odd", random_tensor(DType::f32, {2, 2}, rng)}};
  write_safetensors(dir / "t.safetensors", tensors);

  const std::string bytes = read_bytes(dir / "t.safetensors");
  const std::uint64_t length = header_length_of(bytes);
  EXPECT_EQ((8 + length) % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + length + 6 + 16);
  const auto header = nlohmann::json::parse(bytes.substr(8, length));
  EXPECT_EQ(header["b"]["data_offsets"], nlohmann::json({0, 6}));
  EXPECT_EQ(header["a_odd"]["data_offsets"], nlohmann::json({6, 22}));
  EXPECT_EQ(header["b"]["dtype"], "F16");
  EXPECT_EQ(header["a_odd"]["dtype"], "F32");
  EXPECT_FALSE(header.contains("__metadata__"));  // only written when there is some
  expect_same_tensor(SafetensorsFile(dir / "t.safetensors").tensor("a_odd"), tensors[1].second,
                     "a_odd");
}

TEST(Safetensors, WritesAnEmptyFile) {
  test::TempDir dir;
  write_safetensors(dir / "empty.safetensors", {});
  const SafetensorsFile file(dir / "empty.safetensors");
  EXPECT_TRUE(file.names().empty());
  EXPECT_TRUE(file.metadata().empty());
}

TEST(Safetensors, ViewsOutliveTheFileObject) {
  test::TempDir dir;
  const Tensor original = Tensor::from_floats({4}, {1.0f, -2.0f, 3.5f, 0.0f});
  write_safetensors(dir / "t.safetensors", {{"x", original}});
  Tensor view;
  {
    const SafetensorsFile file(dir / "t.safetensors");
    view = file.tensor("x");
  }
  EXPECT_EQ(view.to_floats(), original.to_floats());
}

TEST(Safetensors, WriterLeavesOnlyTheTargetAndReplacesIt) {
  test::TempDir dir;
  write_safetensors(dir / "t.safetensors", {{"x", Tensor::from_floats({1}, {1.0f})}});
  write_safetensors(dir / "t.safetensors", {{"y", Tensor::from_floats({1}, {2.0f})}});
  const auto entries = std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator());
  EXPECT_EQ(entries, 1);  // no temporary files left behind
  const SafetensorsFile file(dir / "t.safetensors");
  EXPECT_FALSE(file.contains("x"));
  EXPECT_EQ(file.tensor("y").to_floats(), std::vector<float>{2.0f});
}

TEST(Safetensors, WriterRejectsRepeatedAndReservedNames) {
  test::TempDir dir;
  const Tensor t = Tensor::from_floats({1}, {1.0f});
  EXPECT_THROW(write_safetensors(dir / "t.safetensors", {{"x", t}, {"x", t}}), Error);
  EXPECT_THROW(write_safetensors(dir / "t.safetensors", {{"__metadata__", t}}), Error);
  EXPECT_FALSE(fs::exists(dir / "t.safetensors"));
}

TEST(Safetensors, AbsentTensorIsAnErrorNamingIt) {
  test::TempDir dir;
  write_safetensors(dir / "t.safetensors", {{"x", Tensor::from_floats({1}, {1.0f})}});
  const SafetensorsFile file(dir / "t.safetensors");
  try {
    (void)file.tensor("missing.weight");
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_THAT(error.what(), HasSubstr("missing.weight"));
    EXPECT_THAT(error.what(), HasSubstr("t.safetensors"));
  }
}

TEST(WeightStore, ReadsASingleFile) {
  std::mt19937_64 rng(3);
  test::TempDir dir;
  const NamedTensors tensors = assorted_tensors(rng);
  write_safetensors(dir / "model.safetensors", tensors);
  const WeightStore store(dir.path());
  EXPECT_EQ(store.names().size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    expect_same_tensor(store.tensor(name), tensor, name);
    EXPECT_EQ(store.file_of(name), dir / "model.safetensors");
  }
}

TEST(WeightStore, ReadsShardsThroughTheIndex) {
  std::mt19937_64 rng(5);
  test::TempDir dir;
  const NamedTensors first = {{"a", random_tensor(DType::bf16, {2, 3}, rng)},
                              {"b", random_tensor(DType::bf16, {3}, rng)}};
  const NamedTensors second = {{"c", random_tensor(DType::f32, {4, 1}, rng)}};
  write_safetensors(dir / "model-00001-of-00002.safetensors", first);
  write_safetensors(dir / "model-00002-of-00002.safetensors", second);
  // A tensor present in a shard but absent from the index is not part of the model.
  const nlohmann::json index = {{"metadata", {{"total_size", 12 + 6 + 16}}},
                                {"weight_map",
                                 {{"a", "model-00001-of-00002.safetensors"},
                                  {"b", "model-00001-of-00002.safetensors"},
                                  {"c", "model-00002-of-00002.safetensors"}}}};
  std::ofstream(dir / "model.safetensors.index.json") << index.dump();

  const WeightStore store(dir.path());
  EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b", "c"}));
  for (const auto& [name, tensor] : first) {
    expect_same_tensor(store.tensor(name), tensor, name);
    EXPECT_EQ(store.file_of(name), dir / "model-00001-of-00002.safetensors");
  }
  expect_same_tensor(store.tensor("c"), second[0].second, "c");
  EXPECT_EQ(store.file_of("c"), dir / "model-00002-of-00002.safetensors");
  EXPECT_FALSE(store.contains("d"));
  EXPECT_THROW((void)store.tensor("d"), Error);
}

// --- Interoperability with the Python safetensors library -----------------------------------

std::string require_python() {
  const fs::path python = test::test_python();
  if (!fs::exists(python)) {
    ADD_FAILURE() << "test Python '" << python.string()
                  << "' does not exist; run `bash packaging/install-deps.sh --tests` to create it";
    return {};
  }
  return python.string();
}

std::string fixture_command(const std::string& python, const std::string& arguments) {
  const fs::path script = test::source_dir() / "tests/python/safetensors_fixture.py";
  return "'" + python + "' '" + script.string() + "' " + arguments;
}

TEST(SafetensorsInterop, ReadsFilesWrittenByPython) {
  const std::string python = require_python();
  ASSERT_FALSE(python.empty());
  test::TempDir dir;
  const auto result =
      test::run_command(fixture_command(python, "write '" + dir.path().string() + "'"));
  ASSERT_EQ(result.exit_code, 0) << result.output;

  const auto expected = nlohmann::json::parse(read_bytes(dir / "expected.json"));
  const auto metadata = expected["metadata"].get<std::map<std::string, std::string>>();
  int tensors_checked = 0;
  for (const auto& [file_name, tensors] : expected["files"].items()) {
    const SafetensorsFile file(dir / file_name);
    EXPECT_EQ(file.metadata(), metadata) << file_name;
    EXPECT_EQ(file.names().size(), tensors.size()) << file_name;
    for (const auto& [name, want] : tensors.items()) {
      SCOPED_TRACE(file_name + ": " + name);
      const Tensor tensor = file.tensor(name);
      EXPECT_EQ(tensor.dtype(), parse_dtype(want["dtype"].get<std::string>()));
      EXPECT_EQ(tensor.shape(), want["shape"].get<Shape>());
      const std::vector<float> values = tensor.to_floats();
      const auto wanted = want["values"].get<std::vector<double>>();
      ASSERT_EQ(values.size(), wanted.size());
      for (std::size_t i = 0; i < values.size(); ++i) {
        EXPECT_EQ(static_cast<double>(values[i]), wanted[i]) << "element " << i;
        EXPECT_EQ(std::signbit(values[i]), std::signbit(wanted[i])) << "element " << i;
      }
      ++tensors_checked;
    }
  }
  EXPECT_EQ(tensors_checked, 6);
}

nlohmann::json describe(const Tensor& tensor) {
  std::vector<double> values;
  for (const float v : tensor.to_floats()) values.push_back(v);
  const char* tags[] = {"F32", "BF16", "F16"};
  return {{"dtype", tags[static_cast<int>(tensor.dtype())]},
          {"shape", tensor.shape()},
          {"values", values}};
}

TEST(SafetensorsInterop, PythonReadsFilesWeWrite) {
  const std::string python = require_python();
  ASSERT_FALSE(python.empty());
  std::mt19937_64 rng(test::test_seed());
  test::TempDir dir;
  const NamedTensors tensors = assorted_tensors(rng);
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"written_by", "lwm"}};
  write_safetensors(dir / "ours.safetensors", tensors, metadata);

  nlohmann::json expected = {{"metadata", metadata}, {"tensors", nlohmann::json::object()}};
  for (const auto& [name, tensor] : tensors) expected["tensors"][name] = describe(tensor);
  std::ofstream(dir / "expected.json") << expected.dump();

  const auto result = test::run_command(
      fixture_command(python, "verify '" + (dir / "ours.safetensors").string() + "' '" +
                                  (dir / "expected.json").string() + "'"));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("ok"));
}

}  // namespace
}  // namespace lwm
