// The needle-in-a-haystack evaluation (spec §6.1 single needle, §6.2 multi-needle; issue 8): a
// grid of context lengths × needle depths × rounds, each cell a haystack from a book with needles
// inserted at a sentence boundary, a question, a greedy answer and a score. Results go to a JSON
// file cell by cell (atomic rewrites), so a killed run resumes and skips finished cells. The
// texts themselves (needle sentence, questions, cities) live in needle.h. The video variant is in
// needle_video.h, the heatmap in heatmap_png.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "lwm/generation.h"
#include "lwm/model.h"
#include "lwm/progress.h"
#include "lwm/tokenizer.h"

namespace lwm {

// round(linspace(lo, hi, n)) as numpy computes it (round half to even); n = 1 gives {lo}.
// Throws Error(invalid_argument) for n < 1 or lo > hi.
std::vector<std::int64_t> rounded_linspace(double lo, double hi, std::int64_t n);

struct NeedleGrid {
  std::vector<std::int64_t> context_lengths;  // tokens (or frames for the video variant)
  std::vector<std::int32_t> depths;           // percent, 0 … 100
  std::int32_t rounds = 1;

  // context_lengths = round(linspace(min, max, n_lengths)), depths = round(linspace(0, 100,
  // n_depths)) (§6.1). Throws Error(invalid_argument) naming the bad value.
  static NeedleGrid make(std::int64_t min_length, std::int64_t max_length, std::int64_t n_lengths,
                         std::int64_t n_depths, std::int32_t rounds);
  std::int64_t cells() const noexcept {
    return static_cast<std::int64_t>(context_lengths.size() * depths.size()) * rounds;
  }
};

// Reads a book's text sequentially in token counts: each call continues where the last stopped,
// so the rounds of an evaluation see distinct text while the book lasts (§6.1: "distinct books
// per round"); at the end it starts over from the beginning (the text repeated) [ours]. The text
// is tokenized a slice at a time, cut at line ends, so a long book is never tokenized whole.
class HaystackReader {
 public:
  // Throws Error(invalid_argument) when the text has no tokens.
  HaystackReader(std::string text, const Tokenizer& tokenizer);
  std::vector<std::int32_t> next(std::int64_t tokens);
  // Times the reader went past the end of the text and started over.
  std::int64_t wraps() const noexcept { return wraps_; }

 private:
  std::string text_;
  const Tokenizer& tokenizer_;
  std::size_t cursor_ = 0;
  std::int64_t wraps_ = 0;
};

// Which token ids end a sentence: their text ends with "." (§6.1 moves an insertion point left
// to just after such a token; LWM checks for tiktoken's "." token alone, we accept any of our
// tokenizer's pieces ending in "." [ours], since SentencePiece merges "." into larger pieces).
std::vector<bool> sentence_end_tokens(const Tokenizer& tokenizer);

// A haystack with needles in it: the text, and where each needle's sentence starts (a byte of
// `text`), or std::string::npos for a needle that a later cut removed.
struct NeedleInsertion {
  std::string text;
  std::vector<std::size_t> offsets;
};

// Inserts the needle sentences one after another into `haystack` (§6.1, §6.2), each by the rule:
// if the tokens of text + needle exceed `budget`, cut the text to budget − needle tokens; depth
// 100 appends at the end; otherwise start at token int(n·depth/100) and move left until the
// token before is a sentence end (or the start is reached); splice the needle in there. Later
// insertions shift (or cut) earlier needles, as in LWM. Throws Error(invalid_argument) when the
// budget cannot hold the needle or the depths are not 0…100, or sizes differ.
NeedleInsertion insert_needles(const Tokenizer& tokenizer, const std::vector<bool>& sentence_end,
                               std::string_view haystack, std::span<const std::string> needles,
                               std::span<const std::int32_t> depths, std::int64_t budget);

struct NeedleCellKey {
  std::int64_t context_length = 0;
  std::int32_t depth_percent = 0;
  std::int32_t round = 0;
  bool operator==(const NeedleCellKey&) const = default;
};

// One evaluated cell. `answers` are the needles' numbers asked about, `found` whether each occurs
// in the response (§6.1 scoring); a single-needle cell has one of each.
struct NeedleCellResult {
  NeedleCellKey key;
  std::uint64_t seed = 0;
  std::string question;
  std::string response;
  std::vector<std::string> cities;      // every needle's city, the asked ones first
  std::vector<std::string> answers;     // the asked needles' numbers
  std::vector<bool> found;              // per asked needle
  std::vector<std::int32_t> needle_depths;  // every needle's depth (percent), the asked first
  std::int64_t prompt_tokens = 0;
  std::int64_t reused_tokens = 0;  // prompt tokens found already in the KV cache
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;
  double seconds = 0.0;  // the whole cell, haystack and (for videos) encoding included
  nlohmann::json extra = nlohmann::json::object();  // variant fields (the video's frames, …)

  double accuracy() const noexcept;  // fraction of `found` that is true
  nlohmann::json to_json() const;
  static NeedleCellResult from_json(const nlohmann::json& json);  // throws Error(file_format)
};

// The results file: {"format": "lwm-needle-eval", "version": 1, "settings": {…}, "results":
// [cells…]}, rewritten atomically after every cell. Opening an existing file resumes it: its
// settings must equal the run's (else Error(invalid_argument) saying which differ and what to do).
class NeedleResultsFile {
 public:
  static NeedleResultsFile open(const std::filesystem::path& path, nlohmann::json settings);
  const std::filesystem::path& path() const noexcept { return path_; }
  const std::vector<NeedleCellResult>& results() const noexcept { return results_; }
  bool has(const NeedleCellKey& key) const;
  void append(NeedleCellResult result);

 private:
  void write() const;
  std::filesystem::path path_;
  nlohmann::json settings_;
  std::vector<NeedleCellResult> results_;
};

// Accuracy per (context length, depth), averaged over rounds; NaN for a cell with no result.
struct NeedleAccuracyTable {
  std::vector<std::int64_t> context_lengths;
  std::vector<std::int32_t> depths;
  std::vector<double> accuracy;  // [length index · depths.size() + depth index]
  double overall = 0.0;          // mean over every finished cell; NaN when none
  std::int64_t finished_cells = 0;
  double at(std::size_t length_index, std::size_t depth_index) const {
    return accuracy[length_index * depths.size() + depth_index];
  }
};
NeedleAccuracyTable summarize(const NeedleGrid& grid, std::span<const NeedleCellResult> results);

// The table as text: one row per depth, one column per context length, accuracies in percent.
std::string format_accuracy_table(const NeedleAccuracyTable& table);

// The heatmap PNG of a table (heatmap_png.h): rows are depths (0% at the top), columns context
// lengths in `unit` ("tokens", "frames"), named in the title.
void write_needle_heatmap(const std::filesystem::path& path, const NeedleAccuracyTable& table,
                          const std::string& unit = "tokens");

// A context length as a short label: 4000 → "4000", 32768 → "33k", 1048576 → "1.0M".
std::string short_length_label(std::int64_t length);

struct NeedleEvalOptions {
  NeedleGrid grid;
  std::int32_t needles = 1;  // N needles per haystack; more than one → multi-needle (§6.2)
  std::int32_t ask = 1;      // R of them asked about (the one at the cell's depth always) [ours]
  std::int64_t reserve = 200;  // budget = length − reserve (§6.1)
  std::int64_t max_new_tokens = 32;  // LWM generates block_size tokens; a 7-digit answer needs few
  std::int64_t prefill_chunk = 512;
  std::uint64_t seed = 0;
};

// The settings a results file records, so a resumed run is the same run.
nlohmann::json needle_settings(const NeedleEvalOptions& options);

// Called after every cell evaluated now (not for cells found finished in the file).
using NeedleCellCallback = std::function<void(const NeedleCellResult&)>;

// The seed of one cell: derived from the run's seed and the cell's key, so a resumed or
// re-ordered run draws the same needles for the same cell.
std::uint64_t needle_cell_seed(std::uint64_t seed, const NeedleCellKey& key);

// Runs the text evaluation over every cell of the grid not yet in `results`, appending each one
// as it finishes. Per (round, length) the depths run from deepest to shallowest and the KV cache
// keeps the previous prompt, so each prompt recomputes only what follows its needle. Progress
// counts context tokens of the cells to run; cancelling (progress returns false, also checked
// during prefill) throws Error(cancelled) with every finished cell already saved.
// Multi-needle cells put needle 0 at the cell's depth and the others at distinct depths drawn
// from the grid; the asked ones are needle 0 and R−1 others [ours: gives the heatmap its depth].
void run_needle_eval(const Model& model, const Tokenizer& tokenizer, std::string haystack,
                     const NeedleEvalOptions& options, NeedleResultsFile& results,
                     const ProgressCallback& progress = {}, const NeedleCellCallback& on_cell = {});

}  // namespace lwm
