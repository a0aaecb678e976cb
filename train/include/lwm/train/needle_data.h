// Training data for single-needle retrieval (spec §6.1, texts from lwm/needle.h): windows of a
// haystack text at random lengths with "The special magic {city} number is: {n}" inserted at a
// random depth, rendered exactly as `lwm ask --book` renders a book and a question (the document-qa
// chat template), and the needle's sentence as the answer. Written as §5.1 JSONL with token-id
// fields, so the trainer sees the inference prompt token for token; the recipe's fields
// "[prompt],answer" with add_bos_token false put the loss on the answer and EOS only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lwm/needle.h"
#include "lwm/progress.h"
#include "lwm/tokenizer.h"

namespace lwm::train {

struct NeedleDataOptions {
  std::int64_t examples = 1000;
  // Length of a whole example in tokens: prompt, answer and EOS (what the trainer packs).
  std::int64_t min_tokens = 256;
  std::int64_t max_tokens = 1024;
  std::uint64_t seed = 0;
  std::string template_name = needle::kSingleTemplate;  // document-qa, as Session for books
  bool with_text = false;  // also write "context" and "question" as text, for evaluation
};

struct NeedleExample {
  std::string city;
  std::string number;             // 7 digits, uniform in [1000000, 9999999]
  std::string context;            // the haystack window with the needle inserted
  std::size_t needle_offset = 0;  // byte of `context` where the needle starts
  double depth = 0.0;             // requested depth in [0, 1]
  std::string question;
  std::string answer;                    // the text the model is taught to answer
  std::vector<std::int32_t> prompt;      // rendered prompt ids, BOS first
  std::vector<std::int32_t> answer_ids;  // answer ids without EOS
  std::int64_t total_tokens() const {    // prompt + answer + EOS
    return static_cast<std::int64_t>(prompt.size() + answer_ids.size()) + 1;
  }
};

// Makes examples from haystack texts. Example i is a function of (seed, i) and the texts only.
// A haystack shorter than max_tokens is repeated (separated by a blank line) until it is long
// enough. Throws Error(invalid_argument) for no haystacks, empty ones or a bad length range.
class NeedleExampleGenerator {
 public:
  NeedleExampleGenerator(std::vector<std::string> haystacks,
                         std::shared_ptr<const Tokenizer> tokenizer, NeedleDataOptions options);
  NeedleExample make(std::int64_t index) const;
  const NeedleDataOptions& options() const noexcept { return options_; }

 private:
  struct Haystack {
    std::string text;
    EncodedText encoded;
  };
  std::vector<Haystack> haystacks_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  NeedleDataOptions options_;
};

// Text to train the tokenizer on beside the haystacks: every city's needle, question and answer
// `repeats` times with varied numbers, so all ten digits and the needle's words get pieces of
// their own instead of byte fallback (a haystack such as the KJV holds no digits).
std::string needle_tokenizer_text(int repeats = 20);
void write_needle_tokenizer_text(const std::filesystem::path& out, int repeats = 20);

// One JSONL line: {"prompt": [ids], "answer": [ids], "city", "number", "depth", "tokens"}, and
// with `with_text` the "context" (the book to give `lwm ask`) and the "question".
nlohmann::json to_json(const NeedleExample& example, bool with_text = false);

// Reads the haystack files (UTF-8 text), writes `options.examples` lines to `out` atomically.
// Throws Error(io) naming an unreadable file, Error(cancelled) when `progress` says stop.
void write_needle_data(const std::vector<std::filesystem::path>& haystack_files,
                       const std::filesystem::path& tokenizer_model,
                       const std::filesystem::path& out, const NeedleDataOptions& options,
                       const ProgressCallback& progress = {});

}  // namespace lwm::train
