// Training data (spec §5.1): JSONL data sets read as a stream that wraps at the end and resumes
// at an exact position, LWM's field syntax turning each line into tokens with loss masks and
// vision masks, synthetic tasks for smoke tests, and weighted mixtures of sources.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lwm/tokenizer.h"

namespace lwm::train {

// One example: its tokens, and per token whether it is predicted with loss and whether it is a
// vision id (spec §5.1 output of the text and vision-text processors).
struct Example {
  std::vector<std::int32_t> tokens;
  std::vector<std::uint8_t> loss_mask;
  std::vector<std::uint8_t> vision_mask;
};

// Reads one JSON object per line. Blank and unparsable lines are skipped; at the end it wraps to
// the start (a new epoch). position() is the byte offset of the next line, its index and the
// epoch; seek() resumes there exactly.
class JsonlReader {
 public:
  explicit JsonlReader(std::filesystem::path path);  // throws Error(io) naming the file

  struct Position {
    std::int64_t byte_offset = 0;
    std::int64_t line_index = 0;
    std::int64_t epoch = 0;
  };
  struct Line {
    nlohmann::json value;
    std::int64_t index = 0;
  };
  // The next parsable object; throws Error(file_format) when a whole pass finds none.
  Line next();
  Position position() const noexcept { return position_; }
  void seek(const Position& position);

 private:
  std::filesystem::path path_;
  std::ifstream in_;
  Position position_;
};

// LWM's TextProcessor / VisionTextProcessor options (spec §5.1).
struct FieldFormat {
  std::string fields;               // "[question],answer" (comma-separated fields)
  std::string fields_from_example;  // read the fields from this key of each example instead
  std::int64_t fields_index =
      -1;  // with a list of alternatives: the index, or -1 for seeded random
  std::string subfield_separator = " ";
  bool add_bos_token = true;
  bool add_eos_token = true;
  std::string prepend_text;
  std::int32_t eof_token = 8192;
  std::int32_t eov_token = 8193;
  std::int64_t tokens_per_frame = 256;
  std::int64_t max_frames = -1;
};

// Turns one JSON object into an Example. Field syntax: `[f]` → no loss on f's tokens; `<|bos|>`,
// `<|eos|>` → that single id; `a+b` → the values of keys a and b joined with the separator. A
// value is text (tokenized; needs a tokenizer) or an array of ids (already tokenized). A field
// whose name contains "vision" holds VQGAN codes, n_frames·tokens_per_frame of them, emitted in
// the §2.3 layout (frames separated by eof, ending with eov) as vision ids.
class ExampleProcessor {
 public:
  ExampleProcessor(FieldFormat format, std::shared_ptr<const Tokenizer> tokenizer,
                   std::int32_t bos_id, std::int32_t eos_id);
  // `line_index` seeds the choice among alternative field lists (deterministic, spec §5.1).
  // Throws Error(file_format) naming the missing key or bad value.
  Example process(const nlohmann::json& example, std::int64_t line_index) const;

 private:
  FieldFormat format_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::int32_t bos_id_, eos_id_;
};

// A stream of examples with a resumable position.
class ExampleSource {
 public:
  virtual ~ExampleSource() = default;
  virtual Example next() = 0;
  // Where the next example comes from; restore(state()) makes next() return it again.
  virtual nlohmann::json state() const = 0;
  virtual void restore(const nlohmann::json& state) = 0;
};

class JsonlSource final : public ExampleSource {
 public:
  JsonlSource(const std::filesystem::path& path, ExampleProcessor processor);
  Example next() override;
  nlohmann::json state() const override;
  void restore(const nlohmann::json& state) override;

 private:
  JsonlReader reader_;
  ExampleProcessor processor_;
};

// A synthetic copy task for smoke tests and the CPU recipe: BOS, a random sequence of ids in
// [low, high) (no loss), the separator id, the same sequence again (loss), EOS (loss). Example i
// is a function of (seed, i) only.
struct CopyTask {
  std::int32_t low = 3, high = 32, separator = 2;
  std::int64_t min_length = 4, max_length = 12;
  std::int32_t bos_id = 1, eos_id = 2;
  std::uint64_t seed = 0;
};
class CopyTaskSource final : public ExampleSource {
 public:
  explicit CopyTaskSource(CopyTask task);
  Example next() override;
  nlohmann::json state() const override;
  void restore(const nlohmann::json& state) override;

 private:
  CopyTask task_;
  std::int64_t index_ = 0;
};

// Draws each example from one of several sources with probability proportional to its weight;
// the k-th draw depends only on (seed, k), so a restored mixture continues identically.
class MixtureSource final : public ExampleSource {
 public:
  MixtureSource(std::vector<std::unique_ptr<ExampleSource>> sources, std::vector<double> weights,
                std::uint64_t seed);
  Example next() override;
  nlohmann::json state() const override;
  void restore(const nlohmann::json& state) override;

 private:
  std::vector<std::unique_ptr<ExampleSource>> sources_;
  std::vector<double> cumulative_;
  std::uint64_t seed_;
  std::int64_t draws_ = 0;
};

}  // namespace lwm::train
