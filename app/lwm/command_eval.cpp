// lwm eval needle: the needle-in-a-haystack evaluation (spec §6) over a book, or over generated
// videos with --video. The work is lwm::run_needle_eval / run_needle_video_eval; this file parses
// options, shows progress, prints the table and checks the accuracy floor.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "commands.h"
#include "lwm/book.h"
#include "lwm/needle_eval.h"
#include "lwm/needle_video.h"
#include "lwm/vqgan.h"
#include "terminal.h"

namespace lwm::cli {
namespace {

struct EvalOptions {
  std::string model_dir;
  std::string haystack;
  std::string lengths;
  std::int64_t depths = 5;
  std::int32_t rounds = 1;
  std::int32_t needles = 1;
  std::int32_t ask = 1;
  std::string out = "needle-eval";
  std::int64_t reserve = 200;
  std::int64_t max_tokens = 32;
  std::int64_t prefill_chunk = 512;
  std::uint64_t seed = 0;
  double min_accuracy = -1.0;  // < 0: no floor
  bool video = false;
  double seconds_per_frame = 1.0;
  double fps = 4.0;
};

// "MIN:MAX:N", or one number for a single length.
void parse_lengths(const std::string& text, std::int64_t* lo, std::int64_t* hi, std::int64_t* n) {
  const auto bad = [&] {
    return Error(ErrorKind::invalid_argument,
                 "--lengths '" + text + "' is not MIN:MAX:N (e.g. 1000:8000:8) or one length");
  };
  try {
    std::size_t used = 0;
    const auto first = text.find(':');
    if (first == std::string::npos) {
      *lo = *hi = std::stoll(text, &used);
      *n = 1;
      if (used != text.size()) throw bad();
      return;
    }
    const auto second = text.find(':', first + 1);
    if (second == std::string::npos) throw bad();
    const std::string parts[3] = {text.substr(0, first), text.substr(first + 1, second - first - 1),
                                  text.substr(second + 1)};
    std::int64_t* outs[3] = {lo, hi, n};
    for (int i = 0; i < 3; ++i) {
      *outs[i] = std::stoll(parts[i], &used);
      if (used != parts[i].size()) throw bad();
    }
  } catch (const std::logic_error&) {  // stoll: not a number or out of range
    throw bad();
  }
}

void run_eval_needle(const EvalOptions& options) {
  std::int64_t lo = 0, hi = 0, n = 0;
  parse_lengths(options.lengths, &lo, &hi, &n);
  const NeedleGrid grid = NeedleGrid::make(lo, hi, n, options.depths, options.rounds);
  if (!options.video && options.haystack.empty()) {
    throw Error(ErrorKind::invalid_argument,
                "give --haystack FILE (a book: .txt, .md, .epub or .pdf), or --video");
  }
  const auto model = load_model(options.model_dir);
  const Tokenizer tokenizer = load_tokenizer(options.model_dir, "to encode the prompts");
  const std::filesystem::path out_dir = options.out;
  const auto results_path = out_dir / "results.json";
  const auto heatmap_path = out_dir / "heatmap.png";

  nlohmann::json settings;
  NeedleEvalOptions text_options;
  NeedleVideoOptions video_options;
  std::string haystack;
  std::unique_ptr<Vqgan> vqgan;
  if (options.video) {
    if (!model->config().has_vision()) {
      throw Error(ErrorKind::invalid_argument,
                  "model '" + options.model_dir +
                      "' is a text-only model; the video needle evaluation needs a "
                      "vision-language model (config.json with vision_vocab_size and a "
                      "vqgan.safetensors)");
    }
    vqgan = Vqgan::load(options.model_dir);
    video_options.grid = grid;
    video_options.seconds_per_frame = options.seconds_per_frame;
    video_options.fps = options.fps;
    video_options.max_new_tokens = options.max_tokens;
    video_options.prefill_chunk = options.prefill_chunk;
    video_options.seed = options.seed;
    video_options.work_dir = out_dir / "videos";
    settings = needle_video_settings(video_options);
  } else {
    Book book = load_book(options.haystack);
    for (const auto& warning : book.warnings) {
      std::fprintf(stderr, "lwm: warning: %s\n", warning.c_str());
    }
    haystack = std::move(book.text);
    text_options.grid = grid;
    text_options.needles = options.needles;
    text_options.ask = options.ask;
    text_options.reserve = options.reserve;
    text_options.max_new_tokens = options.max_tokens;
    text_options.prefill_chunk = options.prefill_chunk;
    text_options.seed = options.seed;
    settings = needle_settings(text_options);
    settings["haystack"] = std::filesystem::absolute(options.haystack).lexically_normal().string();
    settings["haystack_bytes"] = haystack.size();
  }
  settings["model"] = std::filesystem::absolute(options.model_dir).lexically_normal().string();
  NeedleResultsFile results = NeedleResultsFile::open(results_path, settings);
  if (!results.results().empty()) {
    std::fprintf(stderr, "lwm: resuming '%s': %zu cells already finished\n",
                 results_path.string().c_str(), results.results().size());
  }
  std::fprintf(stderr, "lwm: %s cells: %zu context lengths x %zu depths x %d rounds\n",
               format_count(grid.cells()).c_str(), grid.context_lengths.size(),
               grid.depths.size(), grid.rounds);

  InterruptGuard interrupt;
  ProgressBar bar("needle", options.video ? "frames" : "tok");
  const auto on_progress = [&](const Progress& progress) {
    bar.update(progress);
    return !InterruptGuard::interrupted();
  };
  if (options.video) {
    run_needle_video_eval(*model, tokenizer, *vqgan, video_options, results, on_progress);
  } else {
    run_needle_eval(*model, tokenizer, std::move(haystack), text_options, results, on_progress);
  }
  bar.finish();

  const NeedleAccuracyTable table = summarize(grid, results.results());
  const std::string text = format_accuracy_table(table);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  write_needle_heatmap(heatmap_path, table, options.video ? "frames" : "tokens");
  std::fprintf(stderr, "lwm: results in '%s', heatmap in '%s'\n", results_path.string().c_str(),
               heatmap_path.string().c_str());
  if (options.min_accuracy >= 0 && !(table.overall >= options.min_accuracy)) {
    char message[160];
    std::snprintf(message, sizeof message,
                  "overall accuracy %.1f%% is below the floor --min-accuracy %.1f%%",
                  100.0 * table.overall, 100.0 * options.min_accuracy);
    throw CheckFailed(message);
  }
}

}  // namespace

Command add_eval_command(CLI::App& parent) {
  auto options = std::make_shared<EvalOptions>();
  CLI::App* app = parent.add_subcommand("eval", "Evaluate a model.");
  app->require_subcommand(1);
  CLI::App* needle = app->add_subcommand(
      "needle",
      "Needle in a haystack (LWM's evaluation): hide \"The special magic {city} number is: "
      "{7 digits}\" in a book at each context length x depth, ask for it, and score whether the "
      "number is in the answer. Prints a table on stdout and writes results.json (resumable) and "
      "heatmap.png to --out. Make the King James Bible haystack with: bible -f Gen1:1-Rev22:21 "
      "> kjv.txt (Debian package bible-kjv).");
  needle->add_option("--model", options->model_dir, "Model directory")->required();
  CLI::Option* haystack = needle->add_option(
      "--haystack", options->haystack, "Book to hide the needles in (.txt, .md, .epub, .pdf)");
  needle->add_option("--lengths", options->lengths,
                     "Context lengths MIN:MAX:N (tokens; frames with --video), spaced as "
                     "round(linspace(MIN, MAX, N)), or one length")
      ->required();
  needle->add_option("--depths", options->depths,
                     "Needle depths: round(linspace(0, 100, N)) percent")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{101}))
      ->capture_default_str();
  needle->add_option("--rounds", options->rounds, "Rounds per cell, each with distinct text")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  CLI::Option* needles =
      needle->add_option("--needles", options->needles,
                         "Needles per haystack (more than 1: LWM's multi-needle evaluation)")
          ->check(CLI::Range(1, 100))
          ->capture_default_str();
  needle->add_option("--ask", options->ask, "How many of the needles the question asks about")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  needle->add_option("--out", options->out,
                     "Output directory for results.json and heatmap.png; an existing "
                     "results.json with the same settings is resumed")
      ->capture_default_str();
  needle->add_option("--reserve", options->reserve,
                     "Tokens of each context length kept free of haystack (LWM: 200)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 30))
      ->capture_default_str();
  needle->add_option("--max-tokens", options->max_tokens, "Most tokens to generate per answer")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20))
      ->capture_default_str();
  needle->add_option("--prefill-chunk", options->prefill_chunk, "Prompt tokens run per step")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 30))
      ->capture_default_str();
  needle->add_option("--seed", options->seed, "Seed for the needles' cities and numbers")
      ->capture_default_str();
  needle->add_option("--min-accuracy", options->min_accuracy,
                     "Fail (exit code 6) when the overall accuracy is below this fraction (0..1)")
      ->check(CLI::Range(0.0, 1.0));
  CLI::Option* video = needle->add_flag(
      "--video", options->video,
      "Video variant: generate videos (ffmpeg CLI) in which one sampled frame shows \"The secret "
      "number is {7 digits}\" and ask for it; --lengths counts frames (vision-language models)");
  video->excludes(haystack)->excludes(needles);
  needle->add_option("--seconds-per-frame", options->seconds_per_frame,
                     "With --video: seconds of video per sampled frame")
      ->needs(video)
      ->check(CLI::Range(0.05, 3600.0))
      ->capture_default_str();
  needle->add_option("--fps", options->fps, "With --video: frame rate of the generated videos")
      ->needs(video)
      ->check(CLI::Range(1.0, 120.0))
      ->capture_default_str();
  return {app, [options, needle] {
            if (needle->parsed()) run_eval_needle(*options);
          }};
}

}  // namespace lwm::cli
