// The text needle evaluation (needle_eval.h): grid, haystack reading, needle insertion, the
// results file and the summary. The cell loop is in needle_cells.cpp.
#include "lwm/needle_eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "atomic_file.h"
#include "eval/needle_cells.h"
#include "lwm/chat_template.h"
#include "lwm/error.h"
#include "lwm/heatmap_png.h"
#include "lwm/kv_cache.h"
#include "lwm/needle.h"

namespace lwm {

std::vector<std::int64_t> rounded_linspace(double lo, double hi, std::int64_t n) {
  if (n < 1 || !(lo <= hi)) {
    throw Error(ErrorKind::invalid_argument,
                "a grid needs at least one point and min <= max (got " + std::to_string(lo) +
                    ".." + std::to_string(hi) + " in " + std::to_string(n) + " steps)");
  }
  std::vector<std::int64_t> values;
  values.reserve(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    // numpy's linspace: lo + i·step, the last point exactly hi; np.round rounds half to even,
    // which std::nearbyint does in the default rounding mode.
    const double x = i + 1 == n && n > 1 ? hi : lo + (hi - lo) * static_cast<double>(i) /
                                                         static_cast<double>(std::max<std::int64_t>(n - 1, 1));
    values.push_back(static_cast<std::int64_t>(std::nearbyint(x)));
  }
  return values;
}

NeedleGrid NeedleGrid::make(std::int64_t min_length, std::int64_t max_length,
                            std::int64_t n_lengths, std::int64_t n_depths, std::int32_t rounds) {
  if (min_length < 1 || min_length > max_length || n_lengths < 1) {
    throw Error(ErrorKind::invalid_argument,
                "context lengths " + std::to_string(min_length) + ":" +
                    std::to_string(max_length) + ":" + std::to_string(n_lengths) +
                    " are not MIN:MAX:N with 1 <= MIN <= MAX and N >= 1");
  }
  if (n_depths < 1 || n_depths > 101) {
    throw Error(ErrorKind::invalid_argument, "the number of depths must be 1 to 101 (distinct "
                                             "whole percents), not " + std::to_string(n_depths));
  }
  if (rounds < 1) {
    throw Error(ErrorKind::invalid_argument,
                "rounds must be at least 1, not " + std::to_string(rounds));
  }
  NeedleGrid grid;
  grid.context_lengths = rounded_linspace(static_cast<double>(min_length),
                                          static_cast<double>(max_length), n_lengths);
  grid.context_lengths.erase(std::unique(grid.context_lengths.begin(), grid.context_lengths.end()),
                             grid.context_lengths.end());
  // One depth means the needle at the start, as linspace(0, 100, 1) gives.
  for (const auto depth : rounded_linspace(0.0, 100.0, n_depths)) {
    grid.depths.push_back(static_cast<std::int32_t>(depth));
  }
  grid.rounds = rounds;
  return grid;
}

HaystackReader::HaystackReader(std::string text, const Tokenizer& tokenizer)
    : text_(std::move(text)), tokenizer_(tokenizer) {
  const bool has_text = std::any_of(text_.begin(), text_.end(), [](char c) {
    return c != ' ' && c != '\n' && c != '\r' && c != '\t';
  });
  if (!has_text) {
    throw Error(ErrorKind::invalid_argument,
                "the haystack has no text; give --haystack a book with words in it");
  }
}

std::vector<std::int32_t> HaystackReader::next(std::int64_t tokens) {
  std::vector<std::int32_t> out;
  out.reserve(static_cast<std::size_t>(std::max<std::int64_t>(tokens, 0)));
  while (static_cast<std::int64_t>(out.size()) < tokens) {
    if (cursor_ >= text_.size()) {
      cursor_ = 0;
      ++wraps_;
    }
    const auto needed = static_cast<std::size_t>(tokens) - out.size();
    // About twice the bytes the tokens need, cut at a line end so no word is split.
    std::size_t end = cursor_ + std::min(text_.size() - cursor_, needed * 8 + 4096);
    if (end < text_.size()) {
      const auto newline = text_.find('\n', end);
      end = newline == std::string::npos ? text_.size() : newline + 1;
    }
    const auto slice = std::string_view(text_).substr(cursor_, end - cursor_);
    const EncodedText encoded = tokenizer_.encode_with_offsets(slice);
    const std::size_t take = std::min(encoded.ids.size(), needed);
    out.insert(out.end(), encoded.ids.begin(), encoded.ids.begin() + static_cast<std::ptrdiff_t>(take));
    cursor_ = take == encoded.ids.size() ? end : cursor_ + encoded.begins[take];
  }
  return out;
}

std::vector<bool> sentence_end_tokens(const Tokenizer& tokenizer) {
  const auto vocab = tokenizer.vocab_size();
  std::vector<bool> ends(static_cast<std::size_t>(vocab), false);
  for (std::int32_t id = 0; id < vocab; ++id) {
    const std::string text = tokenizer.decode(std::span<const std::int32_t>(&id, 1));
    ends[static_cast<std::size_t>(id)] = !text.empty() && text.back() == '.';
  }
  return ends;
}

NeedleInsertion insert_needles(const Tokenizer& tokenizer, const std::vector<bool>& sentence_end,
                               std::string_view haystack, std::span<const std::string> needles,
                               std::span<const std::int32_t> depths, std::int64_t budget) {
  if (needles.size() != depths.size()) {
    throw Error(ErrorKind::invalid_argument, std::to_string(needles.size()) + " needles need as "
                "many depths, not " + std::to_string(depths.size()));
  }
  NeedleInsertion result{std::string(haystack), {}};
  std::vector<std::size_t>& offsets = result.offsets;
  for (std::size_t j = 0; j < needles.size(); ++j) {
    const std::string& needle = needles[j];
    const std::int32_t depth = depths[j];
    if (depth < 0 || depth > 100) {
      throw Error(ErrorKind::invalid_argument,
                  "needle depth " + std::to_string(depth) + "% is outside 0..100");
    }
    const auto needle_tokens = static_cast<std::int64_t>(tokenizer.encode(needle).size());
    if (needle_tokens >= budget) {
      throw Error(ErrorKind::invalid_argument,
                  "a context budget of " + std::to_string(budget) + " tokens cannot hold a " +
                      std::to_string(needle_tokens) + "-token needle; use longer context "
                      "lengths or a smaller reserve");
    }
    std::string& text = result.text;
    const EncodedText encoded = tokenizer.encode_with_offsets(text);
    auto n = static_cast<std::int64_t>(encoded.ids.size());
    if (n + needle_tokens > budget) {
      n = budget - needle_tokens;
      text.resize(encoded.begins[static_cast<std::size_t>(n)]);
      for (std::size_t k = 0; k < j; ++k) {
        if (offsets[k] != std::string::npos && offsets[k] + needles[k].size() > text.size()) {
          offsets[k] = std::string::npos;  // cut off by this needle's truncation, as in LWM
        }
      }
    }
    std::size_t at = text.size();
    if (depth < 100) {
      std::int64_t p = n * depth / 100;
      while (p > 0 && !sentence_end[static_cast<std::size_t>(encoded.ids[static_cast<std::size_t>(p - 1)])]) --p;
      at = p == 0 ? 0 : std::min(encoded.ends[static_cast<std::size_t>(p - 1)], text.size());
    }
    // Never split an earlier needle [ours]: its sentence has no ".", so the rule above only lands
    // inside one by reaching the start; go to the start of that needle instead.
    for (std::size_t k = 0; k < j; ++k) {
      if (offsets[k] != std::string::npos && at > offsets[k] && at < offsets[k] + needles[k].size()) {
        at = offsets[k];
      }
    }
    text.insert(at, needle);
    for (std::size_t k = 0; k < j; ++k) {
      if (offsets[k] != std::string::npos && offsets[k] >= at) offsets[k] += needle.size();
    }
    offsets.push_back(at);
  }
  return result;
}

double NeedleCellResult::accuracy() const noexcept {
  if (found.empty()) return 0.0;
  return static_cast<double>(std::count(found.begin(), found.end(), true)) /
         static_cast<double>(found.size());
}

nlohmann::json NeedleCellResult::to_json() const {
  nlohmann::json json = {
      {"context_length", key.context_length},
      {"depth_percent", key.depth_percent},
      {"round", key.round},
      {"seed", seed},
      {"question", question},
      {"response", response},
      {"cities", cities},
      {"needle_depths", needle_depths},
      {"prompt_tokens", prompt_tokens},
      {"reused_tokens", reused_tokens},
      {"prefill_seconds", prefill_seconds},
      {"decode_seconds", decode_seconds},
      {"seconds", seconds},
      {"accuracy", accuracy()},
  };
  // §6.1's fields: one answer and a boolean for a single needle, lists for several (§6.2).
  if (answers.size() == 1 && found.size() == 1) {
    json["answer"] = answers[0];
    json["correct"] = static_cast<bool>(found[0]);
  } else {
    json["answer"] = answers;
    json["correct"] = std::vector<bool>(found.begin(), found.end());
  }
  if (!extra.empty()) json["extra"] = extra;
  return json;
}

NeedleCellResult NeedleCellResult::from_json(const nlohmann::json& json) {
  try {
    NeedleCellResult r;
    r.key.context_length = json.at("context_length").get<std::int64_t>();
    r.key.depth_percent = json.at("depth_percent").get<std::int32_t>();
    r.key.round = json.at("round").get<std::int32_t>();
    r.seed = json.at("seed").get<std::uint64_t>();
    r.question = json.at("question").get<std::string>();
    r.response = json.at("response").get<std::string>();
    r.cities = json.at("cities").get<std::vector<std::string>>();
    r.needle_depths = json.at("needle_depths").get<std::vector<std::int32_t>>();
    r.prompt_tokens = json.at("prompt_tokens").get<std::int64_t>();
    r.reused_tokens = json.at("reused_tokens").get<std::int64_t>();
    r.prefill_seconds = json.at("prefill_seconds").get<double>();
    r.decode_seconds = json.at("decode_seconds").get<double>();
    r.seconds = json.at("seconds").get<double>();
    const auto& answer = json.at("answer");
    const auto& correct = json.at("correct");
    if (answer.is_string()) {
      r.answers = {answer.get<std::string>()};
      r.found = {correct.get<bool>()};
    } else {
      r.answers = answer.get<std::vector<std::string>>();
      for (const auto& hit : correct) r.found.push_back(hit.get<bool>());
    }
    if (json.contains("extra")) r.extra = json.at("extra");
    return r;
  } catch (const nlohmann::json::exception& error) {
    throw Error(ErrorKind::file_format,
                std::string("a needle result is malformed (") + error.what() + ")");
  }
}

namespace {

constexpr const char* kResultsFormat = "lwm-needle-eval";
constexpr int kResultsVersion = 1;

}  // namespace

NeedleResultsFile NeedleResultsFile::open(const std::filesystem::path& path,
                                          nlohmann::json settings) {
  NeedleResultsFile file;
  file.path_ = path;
  file.settings_ = std::move(settings);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return file;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorKind::io, "cannot read the needle results '" + path.string() + "'");
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& error) {
    throw Error(ErrorKind::file_format, "needle results '" + path.string() +
                                            "' are not JSON (" + error.what() +
                                            "); delete the file to start over");
  }
  if (!json.is_object() || json.value("format", "") != kResultsFormat ||
      json.value("version", 0) != kResultsVersion || !json.contains("results")) {
    throw Error(ErrorKind::file_format,
                "'" + path.string() + "' is not an " + kResultsFormat + " version " +
                    std::to_string(kResultsVersion) + " file; choose another output directory");
  }
  const nlohmann::json& saved = json.at("settings");
  if (saved != file.settings_) {
    std::string differ;
    for (const auto& [name, value] : file.settings_.items()) {
      if (!saved.contains(name) || saved.at(name) != value) {
        differ += (differ.empty() ? "" : ", ") + name + " (saved " +
                  (saved.contains(name) ? saved.at(name).dump() : "nothing") + ", now " +
                  value.dump() + ")";
      }
    }
    if (differ.empty()) differ = "fields only the file has";
    throw Error(ErrorKind::invalid_argument,
                "the results in '" + path.string() + "' were made with other settings: " + differ +
                    "; run with the same settings to resume, or choose another --out");
  }
  for (const auto& cell : json.at("results")) {
    try {
      file.results_.push_back(NeedleCellResult::from_json(cell));
    } catch (const Error& error) {
      throw Error(ErrorKind::file_format, "'" + path.string() + "': " + error.what());
    }
  }
  return file;
}

bool NeedleResultsFile::has(const NeedleCellKey& key) const {
  return std::any_of(results_.begin(), results_.end(),
                     [&](const NeedleCellResult& r) { return r.key == key; });
}

void NeedleResultsFile::append(NeedleCellResult result) {
  results_.push_back(std::move(result));
  write();
}

void NeedleResultsFile::write() const {
  nlohmann::json cells = nlohmann::json::array();
  for (const auto& result : results_) cells.push_back(result.to_json());
  const nlohmann::json json = {{"format", kResultsFormat},
                               {"version", kResultsVersion},
                               {"settings", settings_},
                               {"results", cells}};
  if (!path_.parent_path().empty()) std::filesystem::create_directories(path_.parent_path());
  write_file_atomically(path_, json.dump(1) + "\n");
}

NeedleAccuracyTable summarize(const NeedleGrid& grid, std::span<const NeedleCellResult> results) {
  NeedleAccuracyTable table;
  table.context_lengths = grid.context_lengths;
  table.depths = grid.depths;
  const std::size_t nd = grid.depths.size();
  std::vector<double> sums(grid.context_lengths.size() * nd, 0.0);
  std::vector<std::int64_t> counts(sums.size(), 0);
  double total = 0.0;
  for (const auto& result : results) {
    const auto li = std::find(grid.context_lengths.begin(), grid.context_lengths.end(),
                              result.key.context_length);
    const auto di = std::find(grid.depths.begin(), grid.depths.end(), result.key.depth_percent);
    if (li == grid.context_lengths.end() || di == grid.depths.end()) continue;
    if (result.key.round < 0 || result.key.round >= grid.rounds) continue;
    const std::size_t i = static_cast<std::size_t>(li - grid.context_lengths.begin()) * nd +
                          static_cast<std::size_t>(di - grid.depths.begin());
    sums[i] += result.accuracy();
    ++counts[i];
    total += result.accuracy();
    ++table.finished_cells;
  }
  table.accuracy.resize(sums.size());
  for (std::size_t i = 0; i < sums.size(); ++i) {
    table.accuracy[i] = counts[i] > 0 ? sums[i] / static_cast<double>(counts[i]) : std::nan("");
  }
  table.overall = table.finished_cells > 0 ? total / static_cast<double>(table.finished_cells)
                                           : std::nan("");
  return table;
}

std::string format_accuracy_table(const NeedleAccuracyTable& table) {
  std::ostringstream out;
  char cell[32];
  out << "depth \\ length";
  for (const auto length : table.context_lengths) {
    std::snprintf(cell, sizeof cell, " %7lld", static_cast<long long>(length));
    out << cell;
  }
  out << "\n";
  for (std::size_t d = 0; d < table.depths.size(); ++d) {
    std::snprintf(cell, sizeof cell, "%13d%%", table.depths[d]);
    out << cell;
    for (std::size_t l = 0; l < table.context_lengths.size(); ++l) {
      const double a = table.at(l, d);
      if (std::isnan(a)) {
        out << "       -";
      } else {
        std::snprintf(cell, sizeof cell, " %6.0f%%", 100.0 * a);
        out << cell;
      }
    }
    out << "\n";
  }
  if (std::isnan(table.overall)) {
    out << "overall: no finished cells\n";
  } else {
    std::snprintf(cell, sizeof cell, "%.1f%%", 100.0 * table.overall);
    out << "overall: " << cell << " over " << table.finished_cells << " cells\n";
  }
  return out.str();
}

std::string short_length_label(std::int64_t length) {
  char text[32];
  if (length < 10000) {
    std::snprintf(text, sizeof text, "%lld", static_cast<long long>(length));
  } else if (length < 1000000) {
    std::snprintf(text, sizeof text, "%lldk", static_cast<long long>((length + 500) / 1000));
  } else {
    std::snprintf(text, sizeof text, "%.1fM", static_cast<double>(length) / 1e6);
  }
  return text;
}

void write_needle_heatmap(const std::filesystem::path& path, const NeedleAccuracyTable& table,
                          const std::string& unit) {
  std::vector<std::string> rows, columns;
  for (const auto depth : table.depths) rows.push_back(std::to_string(depth) + "%");
  for (const auto length : table.context_lengths) columns.push_back(short_length_label(length));
  // The image is depth × length, so transpose the table's [length][depth] order.
  std::vector<double> values;
  for (std::size_t d = 0; d < table.depths.size(); ++d) {
    for (std::size_t l = 0; l < table.context_lengths.size(); ++l) values.push_back(table.at(l, d));
  }
  write_heatmap_png(path, values, rows, columns,
                    "needle accuracy: depth / context length (" + unit + ")");
}

nlohmann::json needle_settings(const NeedleEvalOptions& options) {
  return {{"variant", "text"},
          {"context_lengths", options.grid.context_lengths},
          {"depths", options.grid.depths},
          {"rounds", options.grid.rounds},
          {"needles", options.needles},
          {"ask", options.ask},
          {"reserve", options.reserve},
          {"max_new_tokens", options.max_new_tokens},
          {"seed", options.seed},
          {"template", options.needles > 1 ? needle::kMultiTemplate : needle::kSingleTemplate}};
}

std::uint64_t needle_cell_seed(std::uint64_t seed, const NeedleCellKey& key) {
  // splitmix64 over the fields: every cell gets an unrelated stream from one run seed.
  auto mix = [](std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  };
  std::uint64_t h = mix(seed);
  h = mix(h ^ static_cast<std::uint64_t>(key.context_length));
  h = mix(h ^ static_cast<std::uint64_t>(key.depth_percent));
  h = mix(h ^ static_cast<std::uint64_t>(key.round));
  return h;
}

void run_needle_eval(const Model& model, const Tokenizer& tokenizer, std::string haystack,
                     const NeedleEvalOptions& options, NeedleResultsFile& results,
                     const ProgressCallback& progress, const NeedleCellCallback& on_cell) {
  const NeedleGrid& grid = options.grid;
  needle_detail::check_needle_counts(grid, options.needles, options.ask);
  if (options.reserve < 0) {
    throw Error(ErrorKind::invalid_argument, "the reserve must not be negative");
  }
  const std::int64_t max_length =
      *std::max_element(grid.context_lengths.begin(), grid.context_lengths.end());
  const std::int64_t model_max = model.config().max_sequence_length;
  if (max_length > model_max) {
    throw Error(ErrorKind::invalid_argument,
                "context length " + std::to_string(max_length) + " exceeds the model's maximum "
                "sequence length " + std::to_string(model_max) + "; use a smaller --lengths MAX");
  }
  if (grid.context_lengths.front() - options.reserve < 16) {
    throw Error(ErrorKind::invalid_argument,
                "context length " + std::to_string(grid.context_lengths.front()) +
                    " minus the reserve of " + std::to_string(options.reserve) +
                    " tokens leaves no room for a haystack; use longer lengths or --reserve");
  }

  // Each round's text, read on from the last (§6.1), so resuming gives every cell the same text.
  HaystackReader reader(std::move(haystack), tokenizer);
  std::vector<std::vector<std::int32_t>> rounds;
  for (std::int32_t r = 0; r < grid.rounds; ++r) rounds.push_back(reader.next(max_length));

  const std::vector<bool> sentence_end = sentence_end_tokens(tokenizer);
  const ChatTemplate& chat_template = ChatTemplates::builtin().get(
      options.needles > 1 ? needle::kMultiTemplate : needle::kSingleTemplate);

  // The KV cache keeps the last prompt; the next cell reuses the prefix it shares with it.
  std::unique_ptr<KVCache> cache;
  std::vector<std::int32_t> cached;

  const auto body = [&](const NeedleCellKey& key, const needle_detail::CellProgress& step) {
    const auto start = std::chrono::steady_clock::now();
    NeedleCellResult result;
    result.key = key;
    result.seed = needle_cell_seed(options.seed, key);
    std::mt19937_64 rng(result.seed);
    const auto draw = needle_detail::draw_needles(rng, grid, key.depth_percent, options.needles);
    std::vector<std::string> sentences;
    for (std::size_t i = 0; i < draw.cities.size(); ++i) {
      sentences.push_back(needle::sentence(draw.cities[i], draw.numbers[i]));
    }
    const auto& round_tokens = rounds[static_cast<std::size_t>(key.round)];
    const std::string text = tokenizer.decode(
        std::span<const std::int32_t>(round_tokens).first(static_cast<std::size_t>(key.context_length)));
    const NeedleInsertion inserted = insert_needles(tokenizer, sentence_end, text, sentences,
                                                    draw.depths, key.context_length - options.reserve);
    const std::span<const std::string> asked(draw.cities.data(), static_cast<std::size_t>(options.ask));
    result.question = options.needles > 1 ? needle::multi_question(asked)
                                          : needle::question(draw.cities[0]);
    const std::vector<std::int32_t> prompt = render_prompt(
        chat_template, tokenizer, {{"context", inserted.text}, {"question", result.question}});

    const auto needed = static_cast<std::int64_t>(prompt.size()) + options.max_new_tokens;
    if (!cache || cache->capacity() < needed) {
      cache.reset();  // free the old one first
      cache = std::make_unique<KVCache>(model.config(), std::max(needed, max_length + 256 +
                                                                             options.max_new_tokens));
      cached.clear();
    }
    std::int64_t shared = 0;
    while (shared < static_cast<std::int64_t>(std::min(cached.size(), prompt.size())) &&
           cached[static_cast<std::size_t>(shared)] == prompt[static_cast<std::size_t>(shared)]) {
      ++shared;
    }
    shared = std::min<std::int64_t>({shared, static_cast<std::int64_t>(prompt.size()) - 1,
                                     cache->size()});
    cache->truncate(shared);
    cached.clear();  // until the prefill below succeeds, the cache holds only `shared` tokens
    cached.assign(prompt.begin(), prompt.begin() + shared);

    GenerationOptions generation;
    generation.max_new_tokens = options.max_new_tokens;
    generation.prefill_chunk = options.prefill_chunk;
    const auto rest = std::span<const std::int32_t>(prompt).subspan(static_cast<std::size_t>(shared));
    const GenerationResult answer = generate(
        model, tokenizer, *cache, rest, generation, {},
        [&](const Progress& p) { return step(p.total > 0 ? 0.9 * p.done / p.total : 0.0); });
    cache->truncate(static_cast<std::int64_t>(prompt.size()));
    cached = prompt;

    result.response = answer.text;
    result.cities = draw.cities;
    result.needle_depths = draw.depths;
    for (std::int32_t i = 0; i < options.ask; ++i) {
      const auto& number = draw.numbers[static_cast<std::size_t>(i)];
      result.answers.push_back(number);
      result.found.push_back(needle::is_correct(answer.text, number));
    }
    result.prompt_tokens = static_cast<std::int64_t>(prompt.size());
    result.reused_tokens = shared;
    result.prefill_seconds = answer.prefill_seconds;
    result.decode_seconds = answer.decode_seconds;
    result.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::vector<std::int64_t> offsets;  // -1: cut off by a later needle's truncation
    for (const auto offset : inserted.offsets) {
      offsets.push_back(offset == std::string::npos ? -1 : static_cast<std::int64_t>(offset));
    }
    result.extra = {{"needle_offsets", offsets}, {"haystack_wraps", reader.wraps()}};
    return result;
  };
  needle_detail::run_cells(grid, results, body, progress, on_cell);
}

}  // namespace lwm
