// The needle-in-a-haystack evaluation (spec §6): needle texts, grid, haystack reading, needle
// insertion, scoring, the results file (resume after a kill), the summary and the heatmap PNG.
#include <gtest/gtest.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "lwm/chat_template.h"
#include "lwm/error.h"
#include "lwm/heatmap_png.h"
#include "lwm/model.h"
#include "lwm/model_maker.h"
#include "lwm/needle.h"
#include "lwm/needle_eval.h"
#include "test_support.h"
#include "text_test_tokenizer.h"

namespace lwm {
namespace {

using test::capture_error;
using test::test_tokenizer;

// Sentences of words from the test tokenizer's corpus, each ending in ". ", in a fresh order.
std::string random_haystack(std::mt19937_64& rng, int sentences) {
  const std::vector<std::string> words = {"keeper", "harbour", "light", "storm", "ship",
                                          "watched", "answered", "the", "a", "northern",
                                          "quiet", "island", "letters", "tide", "wind"};
  std::string text;
  for (int s = 0; s < sentences; ++s) {
    const int n = 3 + static_cast<int>(rng() % 9);
    std::string sentence = "The";
    for (int w = 0; w < n; ++w) sentence += " " + words[rng() % words.size()];
    text += sentence + (s % 7 == 6 ? ".\n" : ". ");
  }
  return text;
}

// ---- needle texts (needle.h) ----

TEST(NeedleTexts, SentenceQuestionAndTemplatesAreLwms) {
  EXPECT_EQ(needle::sentence("Paris", "1234567"), "\nThe special magic Paris number is: 1234567\n");
  EXPECT_EQ(needle::question("Paris"), "What is the special magic Paris number?");
  const std::vector<std::string> one = {"Lima"}, two = {"Lima", "Oslo"},
                                 three = {"Lima", "Oslo", "Doha"};
  EXPECT_EQ(needle::multi_question(one), "What is the special magic number for Lima?");
  EXPECT_EQ(needle::multi_question(two), "What are the special magic numbers for Lima and Oslo?");
  EXPECT_EQ(needle::multi_question(three),
            "What are the special magic numbers for Lima, Oslo, and Doha?");
  const auto& single = ChatTemplates::builtin().get(needle::kSingleTemplate);
  const auto& multi = ChatTemplates::builtin().get(needle::kMultiTemplate);
  EXPECT_NE(single.parts.back().text.find("or repeat your findings"), std::string::npos);
  EXPECT_EQ(multi.parts.back().text.find("or repeat your findings"), std::string::npos);
  EXPECT_NO_THROW(ChatTemplates::builtin().get(needle::kVideoTemplate));
}

TEST(NeedleTexts, NumbersAreSevenDigitsAndCitiesDistinct) {
  std::mt19937_64 rng(test::test_seed());
  std::int64_t lo = 99999999, hi = 0;
  for (int i = 0; i < 20000; ++i) {
    const std::string n = needle::random_number(rng);
    ASSERT_EQ(n.size(), 7u) << n;
    lo = std::min<std::int64_t>(lo, std::stoll(n));
    hi = std::max<std::int64_t>(hi, std::stoll(n));
  }
  EXPECT_GE(lo, 1000000);
  EXPECT_LE(hi, 9999999);
  EXPECT_LT(lo, 1100000);  // the whole range is used
  EXPECT_GT(hi, 9900000);
  const auto cities = needle::cities();
  EXPECT_GE(cities.size(), 90u);
  EXPECT_EQ(std::set<std::string_view>(cities.begin(), cities.end()).size(), cities.size());
  std::set<std::string> drawn;
  for (int i = 0; i < 5000; ++i) drawn.insert(needle::random_city(rng));
  EXPECT_EQ(drawn.size(), cities.size());
}

TEST(NeedleTexts, ScoringIsSubstringOfTheDigits) {
  EXPECT_TRUE(needle::is_correct("The special magic Lima number is: 4821937.", "4821937"));
  EXPECT_TRUE(needle::is_correct("4821937", "4821937"));
  EXPECT_FALSE(needle::is_correct("482193", "4821937"));
  EXPECT_FALSE(needle::is_correct("4821 937", "4821937"));
  EXPECT_FALSE(needle::is_correct("", "4821937"));
  EXPECT_FALSE(needle::is_correct("anything", ""));
}

// ---- grid ----

TEST(NeedleGrid, LengthsAndDepthsAreRoundedLinspace) {
  // numpy: np.round(np.linspace(0, 5, 11)) rounds halves to even.
  EXPECT_EQ(rounded_linspace(0, 5, 11),
            (std::vector<std::int64_t>{0, 0, 1, 2, 2, 2, 3, 4, 4, 4, 5}));
  EXPECT_EQ(rounded_linspace(7, 7, 1), (std::vector<std::int64_t>{7}));
  const NeedleGrid grid = NeedleGrid::make(1000, 10000, 4, 5, 3);
  EXPECT_EQ(grid.context_lengths, (std::vector<std::int64_t>{1000, 4000, 7000, 10000}));
  EXPECT_EQ(grid.depths, (std::vector<std::int32_t>{0, 25, 50, 75, 100}));
  EXPECT_EQ(grid.cells(), 4 * 5 * 3);
  // LWM's defaults: 20 depths, 0, 5.26…, 10.5…: np.round gives 0, 5, 11, 16, 21, …, 95, 100.
  const NeedleGrid lwm = NeedleGrid::make(1000, 10000, 20, 20, 1);
  ASSERT_EQ(lwm.depths.size(), 20u);
  EXPECT_EQ(lwm.depths[1], 5);
  EXPECT_EQ(lwm.depths[2], 11);
  EXPECT_EQ(lwm.depths[19], 100);
  EXPECT_EQ(lwm.context_lengths[1], 1474);  // 1000 + 9000/19 = 1473.68…
  for (const auto& bad : {std::vector<std::int64_t>{0, 10, 2, 3, 1}, {10, 5, 2, 3, 1},
                          {10, 20, 0, 3, 1}, {10, 20, 2, 0, 1}, {10, 20, 2, 102, 1},
                          {10, 20, 2, 3, 0}}) {
    EXPECT_EQ(capture_error([&] {
                NeedleGrid::make(bad[0], bad[1], bad[2], bad[3], static_cast<std::int32_t>(bad[4]));
              }).kind(),
              ErrorKind::invalid_argument);
  }
}

// ---- haystack ----

TEST(HaystackReader, RoundsReadOnAndWrapAtTheEnd) {
  std::mt19937_64 rng(test::test_seed());
  SCOPED_TRACE(test::test_seed());
  const std::string text = random_haystack(rng, 400);
  const auto& tokenizer = test_tokenizer();
  HaystackReader reader(text, tokenizer);
  const auto first = reader.next(300);
  const auto second = reader.next(300);
  ASSERT_EQ(first.size(), 300u);
  ASSERT_EQ(second.size(), 300u);
  EXPECT_NE(first, second);
  // The rounds are consecutive stretches of the book: round 0 from its start, round 1 right after.
  const std::string a = tokenizer.decode(first), b = tokenizer.decode(second);
  EXPECT_EQ(text.rfind(a, 0), 0u) << a.substr(0, 80);
  const auto at = text.find(b.substr(0, 60), a.size() - 2);
  EXPECT_NE(at, std::string::npos);
  EXPECT_LE(at, a.size() + 2);
  EXPECT_EQ(reader.wraps(), 0);

  // A short book is repeated: a round longer than it wraps around.
  HaystackReader short_reader(random_haystack(rng, 5), tokenizer);
  EXPECT_EQ(short_reader.next(500).size(), 500u);
  EXPECT_GE(short_reader.wraps(), 1);
  EXPECT_EQ(capture_error([&] { HaystackReader(" \n\t ", tokenizer); }).kind(),
            ErrorKind::invalid_argument);
}

// ---- insertion ----

struct Placed {
  std::int64_t needle_token = 0;  // tokens of the text before the needle
  std::string without;            // the text with the needle taken out
};

Placed take_out(const Tokenizer& tokenizer, const std::string& text, std::size_t offset,
                const std::string& needle) {
  EXPECT_EQ(text.substr(offset, needle.size()), needle);
  Placed placed;
  placed.without = text.substr(0, offset) + text.substr(offset + needle.size());
  placed.needle_token = static_cast<std::int64_t>(tokenizer.encode(text.substr(0, offset)).size());
  return placed;
}

TEST(NeedleInsertion, LandsAfterTheSentenceBeforeTheDepthWithinTheBudget) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const auto& tokenizer = test_tokenizer();
  const auto ends = sentence_end_tokens(tokenizer);
  EXPECT_TRUE(ends[static_cast<std::size_t>(tokenizer.piece_id("."))]);
  EXPECT_FALSE(ends[static_cast<std::size_t>(tokenizer.bos_id())]);
  for (int trial = 0; trial < 12; ++trial) {
    const std::string haystack = random_haystack(rng, 30 + static_cast<int>(rng() % 60));
    const auto haystack_tokens = static_cast<std::int64_t>(tokenizer.encode(haystack).size());
    const std::int32_t depth = trial == 0 ? 0 : trial == 1 ? 100 : static_cast<std::int32_t>(rng() % 101);
    const std::string needle =
        needle::sentence(needle::random_city(rng), needle::random_number(rng));
    const auto needle_tokens = static_cast<std::int64_t>(tokenizer.encode(needle).size());
    // Half the trials cut the haystack, half leave it whole.
    const std::int64_t budget = trial % 2 == 0 ? haystack_tokens / 2 + needle_tokens
                                               : haystack_tokens + needle_tokens + 10;
    const std::vector<std::string> needles = {needle};
    const std::vector<std::int32_t> depths = {depth};
    const NeedleInsertion result = insert_needles(tokenizer, ends, haystack, needles, depths, budget);
    ASSERT_EQ(result.offsets.size(), 1u);
    const std::size_t offset = result.offsets[0];
    const Placed placed = take_out(tokenizer, result.text, offset, needle);
    SCOPED_TRACE("trial " + std::to_string(trial) + " depth " + std::to_string(depth));
    // The rest is the front of the haystack, cut to budget − needle tokens.
    ASSERT_EQ(haystack.rfind(placed.without, 0), 0u);
    const auto kept = static_cast<std::int64_t>(tokenizer.encode(placed.without).size());
    EXPECT_LE(kept + needle_tokens, budget + 1);  // +1: re-tokenizing at the cut may split a piece
    if (trial % 2 == 1) {
      EXPECT_EQ(placed.without, haystack);
    }
    if (depth == 100) {
      EXPECT_EQ(offset + needle.size(), result.text.size());
      continue;
    }
    // After a sentence's "." (or at the start), at or before token int(n·depth/100), with no
    // sentence end between the needle and that token.
    const EncodedText encoded = tokenizer.encode_with_offsets(placed.without);
    const auto n = static_cast<std::int64_t>(encoded.ids.size());
    const std::int64_t target = std::min<std::int64_t>(n * depth / 100, n);
    EXPECT_TRUE(offset == 0 || placed.without[offset - 1] == '.') << offset;
    EXPECT_LE(placed.needle_token, target + 1);
    const std::size_t target_byte =
        target < n ? encoded.begins[static_cast<std::size_t>(target)] : placed.without.size();
    if (target_byte > offset) {
      EXPECT_EQ(placed.without.substr(offset, target_byte - offset).find('.'), std::string::npos)
          << placed.without.substr(offset, target_byte - offset);
    }
  }
}

TEST(NeedleInsertion, SeveralNeedlesLandAtDistinctPlacesInDepthOrder) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const auto& tokenizer = test_tokenizer();
  const auto ends = sentence_end_tokens(tokenizer);
  const std::string haystack = random_haystack(rng, 120);
  std::vector<std::string> needles;
  std::set<std::string> used;
  while (needles.size() < 4) {
    const std::string city = needle::random_city(rng);
    if (used.insert(city).second) needles.push_back(needle::sentence(city, needle::random_number(rng)));
  }
  // Depths at least 20 apart, inserted in a random order.
  std::vector<std::int32_t> depths = {5, 30, 55, 80};
  for (auto& d : depths) d += static_cast<std::int32_t>(rng() % 10);
  std::shuffle(depths.begin(), depths.end(), rng);
  const auto budget = static_cast<std::int64_t>(tokenizer.encode(haystack).size()) + 400;
  const NeedleInsertion result = insert_needles(tokenizer, ends, haystack, needles, depths, budget);
  ASSERT_EQ(result.offsets.size(), 4u);
  std::vector<std::pair<std::int32_t, std::size_t>> by_depth;
  for (std::size_t i = 0; i < 4; ++i) {
    ASSERT_NE(result.offsets[i], std::string::npos);
    EXPECT_EQ(result.text.substr(result.offsets[i], needles[i].size()), needles[i]);
    by_depth.emplace_back(depths[i], result.offsets[i]);
  }
  std::sort(by_depth.begin(), by_depth.end());
  for (std::size_t i = 1; i < 4; ++i) {
    EXPECT_GE(by_depth[i].second, by_depth[i - 1].second + needles[0].size() - 10);
  }
  std::string rest = result.text;  // all needles out again → the haystack
  std::vector<std::size_t> order = {0, 1, 2, 3};
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return result.offsets[a] > result.offsets[b]; });
  for (const auto i : order) rest.erase(result.offsets[i], needles[i].size());
  EXPECT_EQ(rest, haystack);

  // A later needle's cut removes an earlier needle appended at the end (as in LWM), and the
  // budget must hold a needle at all.
  const std::vector<std::int32_t> end_then_middle = {100, 50};
  const std::vector<std::string> two = {needles[0], needles[1]};
  const auto tight = static_cast<std::int64_t>(tokenizer.encode(haystack).size()) / 2;
  const NeedleInsertion cut = insert_needles(tokenizer, ends, haystack, two, end_then_middle, tight);
  EXPECT_EQ(cut.offsets[0], std::string::npos);
  EXPECT_NE(cut.text.find(needles[1]), std::string::npos);
  EXPECT_EQ(cut.text.find(needles[0]), std::string::npos);
  const std::vector<std::int32_t> one_depth = {50};
  const std::vector<std::string> one = {needles[0]};
  EXPECT_EQ(capture_error([&] { insert_needles(tokenizer, ends, haystack, one, one_depth, 5); }).kind(),
            ErrorKind::invalid_argument);
  const std::vector<std::int32_t> bad_depth = {101};
  EXPECT_EQ(capture_error([&] { insert_needles(tokenizer, ends, haystack, one, bad_depth, 500); }).kind(),
            ErrorKind::invalid_argument);
}

// ---- summary ----

NeedleCellResult cell(std::int64_t length, std::int32_t depth, std::int32_t round,
                      std::vector<bool> found) {
  NeedleCellResult r;
  r.key = {length, depth, round};
  r.found = std::move(found);
  r.answers.assign(r.found.size(), "1234567");
  return r;
}

TEST(NeedleSummary, AveragesRoundsAndMarksMissingCells) {
  const NeedleGrid grid = NeedleGrid::make(100, 200, 2, 2, 2);
  const std::vector<NeedleCellResult> results = {
      cell(100, 0, 0, {true}), cell(100, 0, 1, {false}), cell(100, 100, 0, {true}),
      cell(200, 0, 0, {true, false, false, true}), cell(300, 0, 0, {true}) /* not in grid */};
  const NeedleAccuracyTable table = summarize(grid, results);
  EXPECT_DOUBLE_EQ(table.at(0, 0), 0.5);
  EXPECT_DOUBLE_EQ(table.at(0, 1), 1.0);
  EXPECT_DOUBLE_EQ(table.at(1, 0), 0.5);
  EXPECT_TRUE(std::isnan(table.at(1, 1)));
  EXPECT_EQ(table.finished_cells, 4);
  EXPECT_DOUBLE_EQ(table.overall, (1.0 + 0.0 + 1.0 + 0.5) / 4);
  const std::string text = format_accuracy_table(table);
  EXPECT_NE(text.find("50%"), std::string::npos) << text;
  EXPECT_NE(text.find("62.5%"), std::string::npos) << text;
  EXPECT_NE(text.find(" -"), std::string::npos) << text;
}

// ---- heatmap PNG ----

struct DecodedPng {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb;
  Rgb at(int x, int y) const {
    const std::uint8_t* p = &rgb[(static_cast<std::size_t>(y) * width + x) * 3];
    return {p[0], p[1], p[2]};
  }
};

DecodedPng decode_png(const std::filesystem::path& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  DecodedPng out;
  if (!png_image_begin_read_from_file(&image, path.c_str())) {
    ADD_FAILURE() << "libpng cannot read " << path << ": " << image.message;
    return out;
  }
  image.format = PNG_FORMAT_RGB;
  out.width = static_cast<int>(image.width);
  out.height = static_cast<int>(image.height);
  out.rgb.resize(PNG_IMAGE_SIZE(image));
  EXPECT_TRUE(png_image_finish_read(&image, nullptr, out.rgb.data(), 0, nullptr)) << image.message;
  return out;
}

TEST(NeedleHeatmap, EveryCellHasTheColourOfItsAccuracy) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  // Red for nothing found, green for everything, grey for no result.
  const Rgb zero = heatmap_colour(0.0), one = heatmap_colour(1.0), none = heatmap_colour(std::nan(""));
  EXPECT_GT(zero.r, zero.g + 100);
  EXPECT_GT(one.g, one.r + 100);
  EXPECT_TRUE(none.r == none.g && none.g == none.b);

  test::TempDir dir;
  NeedleAccuracyTable table;
  const int lengths = 3 + static_cast<int>(rng() % 15), depths = 2 + static_cast<int>(rng() % 10);
  for (int l = 0; l < lengths; ++l) table.context_lengths.push_back(1000 + 731 * l);
  for (int d = 0; d < depths; ++d) table.depths.push_back(d * 100 / (depths - 1));
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int i = 0; i < lengths * depths; ++i) {
    table.accuracy.push_back(i == 1 ? std::nan("") : std::round(unit(rng) * 3) / 3);
  }
  const auto path = dir / "heatmap.png";
  write_needle_heatmap(path, table);
  const DecodedPng png = decode_png(path);
  std::vector<std::string> rows, columns;
  for (const auto d : table.depths) rows.push_back(std::to_string(d) + "%");
  for (const auto l : table.context_lengths) columns.push_back(short_length_label(l));
  const HeatmapLayout layout =
      heatmap_layout(rows, columns, "needle accuracy: depth / context length (tokens)");
  ASSERT_EQ(png.width, layout.width);
  ASSERT_EQ(png.height, layout.height);
  for (int d = 0; d < depths; ++d) {
    for (int l = 0; l < lengths; ++l) {
      const int x = layout.cell_x(l) + layout.cell_width / 2;
      const int y = layout.cell_y(d) + layout.cell_height / 2;
      const double a = table.at(static_cast<std::size_t>(l), static_cast<std::size_t>(d));
      EXPECT_EQ(png.at(x, y), heatmap_colour(a)) << "length " << l << " depth " << d;
      // Corners too: the whole cell is one colour.
      EXPECT_EQ(png.at(layout.cell_x(l), layout.cell_y(d)), heatmap_colour(a));
      EXPECT_EQ(png.at(layout.cell_x(l) + layout.cell_width - 1,
                       layout.cell_y(d) + layout.cell_height - 1),
                heatmap_colour(a));
    }
  }
  // Labels are drawn (dark pixels left of the grid and below it).
  int dark_left = 0, dark_below = 0;
  for (int y = 0; y < png.height; ++y) {
    for (int x = 0; x < png.width; ++x) {
      const Rgb p = png.at(x, y);
      if (p.r < 100 && p.g < 100 && p.b < 100) {
        if (x < layout.grid_left) ++dark_left;
        if (y > layout.cell_y(depths - 1) + layout.cell_height) ++dark_below;
      }
    }
  }
  EXPECT_GT(dark_left, 20 * depths);
  EXPECT_GT(dark_below, 40);
  EXPECT_EQ(capture_error([&] {
              const std::vector<double> values = {1.0};
              write_heatmap_png(dir / "x.png", values, rows, columns);
            }).kind(),
            ErrorKind::invalid_argument);
}

// ---- the whole evaluation on a tiny random model ----

std::unique_ptr<Model> make_model(const test::TempDir& dir) {
  ModelMakerOptions options;
  options.config = ModelConfig::preset("tiny");
  options.config.vocab_size = test::kTestVocabSize;
  options.config.max_sequence_length = 512;
  options.config.convention = WeightConvention::jax;
  options.config.convention_known = true;
  options.config.torch_dtype = DType::f32;
  options.dtype = DType::f32;
  options.seed = 77;
  options.init_std = 0.25f;  // clearly separated logits: reuse and fresh runs pick alike
  options.norm_weight_noise = 0.1f;
  make_random_model(dir / "model", options);
  return Model::load(dir / "model");
}

NeedleEvalOptions small_options(std::int32_t needles, std::int32_t ask, std::uint64_t seed) {
  NeedleEvalOptions options;
  options.grid = NeedleGrid::make(250, 350, 2, 3, 2);
  options.needles = needles;
  options.ask = ask;
  options.reserve = 150;  // the template and question take about 110 of the test tokenizer's
  options.max_new_tokens = 6;
  options.prefill_chunk = 64;
  options.seed = seed;
  return options;
}

TEST(NeedleEval, AKilledRunResumesSkippingFinishedCellsWithTheSameAnswers) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  test::TempDir dir;
  const auto model = make_model(dir);
  const auto& tokenizer = test_tokenizer();
  const std::string book = random_haystack(rng, 200);
  const NeedleEvalOptions options = small_options(1, 1, seed);
  const std::int64_t cells = options.grid.cells();

  // One uninterrupted run: every prompt after the first of a (round, length) reuses a prefix.
  auto whole = NeedleResultsFile::open(dir / "whole.json", needle_settings(options));
  std::vector<Progress> seen;
  run_needle_eval(*model, tokenizer, book, options, whole, [&](const Progress& p) {
    seen.push_back(p);
    return true;
  });
  ASSERT_EQ(static_cast<std::int64_t>(whole.results().size()), cells);
  EXPECT_EQ(seen.back().done, seen.back().total);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end(),
                             [](const Progress& a, const Progress& b) { return a.done < b.done; }));
  EXPECT_TRUE(std::any_of(whole.results().begin(), whole.results().end(),
                          [](const NeedleCellResult& r) { return r.reused_tokens > 0; }));

  // The same run killed after every cell and resumed from the file each time: each cell starts
  // from an empty cache, and the answers must not differ.
  const auto path = dir / "killed" / "results.json";
  std::int64_t runs = 0;
  for (;; ++runs) {
    auto file = NeedleResultsFile::open(path, needle_settings(options));
    const auto before = file.results().size();
    if (static_cast<std::int64_t>(before) == cells) break;
    std::int64_t evaluated = 0;
    const Error error = capture_error([&] {
      run_needle_eval(
          *model, tokenizer, book, options, file, [&](const Progress&) { return evaluated == 0; },
          [&](const NeedleCellResult&) { ++evaluated; });
      throw Error(ErrorKind::io, "not cancelled");  // only the last run finishes
    });
    if (error.kind() != ErrorKind::cancelled) {
      EXPECT_EQ(before + 1, static_cast<std::size_t>(cells)) << error.what();
    } else {
      EXPECT_NE(std::string(error.what()).find("resume"), std::string::npos) << error.what();
    }
    EXPECT_EQ(evaluated, 1);
    ASSERT_LE(runs, cells);
  }
  EXPECT_EQ(runs, cells);
  const auto resumed = NeedleResultsFile::open(path, needle_settings(options));
  for (const auto& expected : whole.results()) {
    const auto found = std::find_if(resumed.results().begin(), resumed.results().end(),
                                    [&](const NeedleCellResult& r) { return r.key == expected.key; });
    ASSERT_NE(found, resumed.results().end());
    EXPECT_EQ(found->response, expected.response);
    EXPECT_EQ(found->answers, expected.answers);
    EXPECT_EQ(found->question, expected.question);
    EXPECT_EQ(found->seed, expected.seed);
    EXPECT_EQ(found->reused_tokens, 0);
    EXPECT_EQ(found->prompt_tokens, expected.prompt_tokens);
  }
  // Every cell's question names a city whose needle is in the haystack... at the cell's depth.
  for (const auto& r : whole.results()) {
    EXPECT_EQ(r.question, needle::question(r.cities[0]));
    EXPECT_EQ(r.needle_depths, std::vector<std::int32_t>{r.key.depth_percent});
    EXPECT_EQ(r.found[0], needle::is_correct(r.response, r.answers[0]));
    EXPECT_LE(r.prompt_tokens, r.key.context_length);
  }
  // A finished file runs nothing more.
  auto done = NeedleResultsFile::open(path, needle_settings(options));
  int more = 0;
  run_needle_eval(*model, tokenizer, book, options, done, {}, [&](const NeedleCellResult&) { ++more; });
  EXPECT_EQ(more, 0);

  // Other settings are refused with what differs; a damaged file is a file-format error.
  NeedleEvalOptions other = options;
  other.seed = seed + 1;
  const Error mismatch =
      capture_error([&] { NeedleResultsFile::open(path, needle_settings(other)); });
  EXPECT_EQ(mismatch.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(mismatch.what()).find("seed"), std::string::npos) << mismatch.what();
  std::ofstream(dir / "bad.json") << "{\"format\": \"lwm-needle-eval\", \"results\": [";
  EXPECT_EQ(capture_error([&] { NeedleResultsFile::open(dir / "bad.json", {}); }).kind(),
            ErrorKind::file_format);
}

TEST(NeedleEval, MultiNeedleAsksAboutSeveralAndScoresEach) {
  const std::uint64_t seed = test::test_seed();
  SCOPED_TRACE(seed);
  std::mt19937_64 rng(seed);
  test::TempDir dir;
  const auto model = make_model(dir);
  const std::string book = random_haystack(rng, 200);
  NeedleEvalOptions options = small_options(3, 2, seed);
  options.grid = NeedleGrid::make(350, 350, 1, 4, 1);
  auto file = NeedleResultsFile::open(dir / "multi.json", needle_settings(options));
  run_needle_eval(*model, test_tokenizer(), book, options, file);
  ASSERT_EQ(file.results().size(), 4u);
  for (const auto& r : file.results()) {
    ASSERT_EQ(r.cities.size(), 3u);
    ASSERT_EQ(r.needle_depths.size(), 3u);
    EXPECT_EQ(r.needle_depths[0], r.key.depth_percent);
    EXPECT_EQ(std::set<std::int32_t>(r.needle_depths.begin(), r.needle_depths.end()).size(), 3u);
    EXPECT_EQ(std::set<std::string>(r.cities.begin(), r.cities.end()).size(), 3u);
    const std::vector<std::string> asked(r.cities.begin(), r.cities.begin() + 2);
    EXPECT_EQ(r.question, needle::multi_question(asked));
    ASSERT_EQ(r.answers.size(), 2u);
    ASSERT_EQ(r.found.size(), 2u);
    for (std::size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(static_cast<bool>(r.found[i]), needle::is_correct(r.response, r.answers[i]));
    }
    // The JSON keeps lists for a multi-needle cell and reads back the same.
    const auto json = r.to_json();
    EXPECT_TRUE(json.at("correct").is_array());
    const auto back = NeedleCellResult::from_json(json);
    EXPECT_EQ(back.answers, r.answers);
    EXPECT_EQ(back.found, r.found);
    EXPECT_EQ(back.key, r.key);
  }
  NeedleEvalOptions too_many = options;
  too_many.needles = 5;  // more needles than the 4 depths
  EXPECT_EQ(capture_error([&] {
              auto f = NeedleResultsFile::open(dir / "x.json", needle_settings(too_many));
              run_needle_eval(*model, test_tokenizer(), book, too_many, f);
            }).kind(),
            ErrorKind::invalid_argument);
  NeedleEvalOptions too_long = options;
  too_long.grid = NeedleGrid::make(100, 600, 2, 4, 1);  // beyond max_sequence_length 512
  EXPECT_EQ(capture_error([&] {
              auto f = NeedleResultsFile::open(dir / "y.json", needle_settings(too_long));
              run_needle_eval(*model, test_tokenizer(), book, too_long, f);
            }).kind(),
            ErrorKind::invalid_argument);
}

}  // namespace
}  // namespace lwm
