// `lwm-train`: the headless trainer's command line. Wiring only: CLI11 parses, lwm::train runs the
// recipe, Ctrl-C asks the loop to checkpoint and stop, failures become one error line and an
// exit code (the same codes as `lwm`: 0 ok, 1 usage, 2 bad input, 3 too large, 4 cancelled,
// 5 internal).
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <new>
#include <string>

#include "exit_codes.h"
#include "lwm/dtype.h"
#include "lwm/error.h"
#include "lwm/train/needle_data.h"
#include "lwm/train/trainer.h"

namespace {

std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

void on_sigint(int) {
  g_interrupted.store(true);
}

int report(int code, const std::string& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "lwm-train: error: %s\n", message.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "LWM Studio trainer: runs a progressive long-context training recipe (stages of context "
      "length, RoPE theta, learning rate and data) with exact-resume checkpoints."};
  app.name("lwm-train");
  app.require_subcommand(1);
  std::filesystem::path recipe_path, out;
  bool resume = false;
  std::int64_t stop_after = -1;
  CLI::App* run =
      app.add_subcommand("run",
                         "run a recipe (one log line per step on stdout; Ctrl-C saves a "
                         "checkpoint and exits with code 4)");
  run->add_option("--recipe", recipe_path, "recipe JSON file (see resources/recipes/)")->required();
  run->add_option("--out", out, "output directory: checkpoints/ and one model directory per stage")
      ->required();
  run->add_flag("--resume", resume, "continue from the newest complete checkpoint in --out");
  run->add_option("--stop-after", stop_after, "save a checkpoint and stop after this many steps");

  CLI::App* make_data =
      app.add_subcommand("make-data", "generate training data (JSONL, spec §5.1)");
  make_data->require_subcommand(1);
  CLI::App* needle = make_data->add_subcommand(
      "needle",
      "single-needle retrieval examples (spec §6.1) rendered as `lwm ask --book` prompts; use "
      "with fields \"[prompt],answer\" and add_bos_token false");
  std::vector<std::filesystem::path> haystacks;
  std::filesystem::path tokenizer_model;
  lwm::train::NeedleDataOptions needle_options;
  needle->add_option("--haystack", haystacks, "UTF-8 text files to hide needles in")
      ->required()
      ->check(CLI::ExistingFile);
  needle->add_option("--tokenizer", tokenizer_model, "SentencePiece model of the model to train")
      ->required();
  needle->add_option("--out", out, "output JSONL file")->required();
  needle->add_option("--examples", needle_options.examples, "number of examples")
      ->check(CLI::PositiveNumber);
  needle->add_option("--min-tokens", needle_options.min_tokens,
                     "shortest example (prompt, answer and EOS) in tokens");
  needle->add_option("--max-tokens", needle_options.max_tokens, "longest example in tokens");
  needle->add_option("--seed", needle_options.seed, "example i depends only on seed and i");
  needle->add_option("--template", needle_options.template_name, "chat template of the prompt");
  needle->add_flag("--with-text", needle_options.with_text,
                   "also write each example's book text and question (for evaluation)");

  CLI::App* needle_text = make_data->add_subcommand(
      "needle-text",
      "text with every needle, question, city and digit, to train the tokenizer on beside the "
      "haystacks (so no digit falls back to bytes)");
  needle_text->add_option("--out", out, "output text file")->required();

  std::filesystem::path checkpoint;
  std::string dtype_name = "bf16";
  CLI::App* export_cmd = app.add_subcommand(
      "export", "turn a checkpoint into a model directory for `lwm ask` (with its tokenizer)");
  export_cmd->add_option("--checkpoint", checkpoint, "checkpoints/step-N or a stage directory")
      ->required();
  export_cmd->add_option("--tokenizer", tokenizer_model, "the SentencePiece model trained with")
      ->required();
  export_cmd->add_option("--out", out, "new model directory")->required();
  export_cmd->add_option("--dtype", dtype_name, "weight type: f32, bf16 or f16");
  std::int64_t max_sequence_length = 0;
  export_cmd->add_option("--max-sequence-length", max_sequence_length,
                         "set max_position_embeddings (default: the checkpoint's)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& success) {
    return app.exit(success);
  } catch (const CLI::ParseError& error) {
    return report(
        lwm::cli::kExitUsage,
        std::string(error.what()) + "; run 'lwm-train --help' to see the commands and options");
  }

  struct sigaction action {};
  action.sa_handler = on_sigint;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND;  // a second Ctrl-C kills at once
  ::sigaction(SIGINT, &action, nullptr);
  try {
    if (needle->parsed()) {
      lwm::train::write_needle_data(haystacks, tokenizer_model, out, needle_options,
                                    [](const lwm::Progress&) { return !g_interrupted.load(); });
      std::fprintf(stderr, "lwm-train: wrote %lld needle examples to %s\n",
                   static_cast<long long>(needle_options.examples), out.string().c_str());
      return lwm::cli::kExitOk;
    }
    if (needle_text->parsed()) {
      lwm::train::write_needle_tokenizer_text(out);
      return lwm::cli::kExitOk;
    }
    if (export_cmd->parsed()) {
      lwm::train::export_model(checkpoint, tokenizer_model, out, lwm::parse_dtype(dtype_name),
                               max_sequence_length);
      std::fprintf(stderr, "lwm-train: exported %s to %s\n", checkpoint.string().c_str(),
                   out.string().c_str());
      return lwm::cli::kExitOk;
    }
    const lwm::train::Recipe recipe = lwm::train::Recipe::load(recipe_path);
    lwm::train::TrainerOptions options;
    options.output_dir = out;
    options.resume = resume;
    options.log = &std::cout;
    options.stop_after_steps = stop_after;
    options.on_step = [](const lwm::train::StepReport&) { return !g_interrupted.load(); };
    const lwm::train::StepReport last = lwm::train::run_recipe(recipe, options);
    std::fprintf(stderr, "lwm-train: %lld of %lld steps done; models in %s\n",
                 static_cast<long long>(last.global_step), static_cast<long long>(last.total_steps),
                 out.string().c_str());
    return lwm::cli::kExitOk;
  } catch (const lwm::Error& error) {
    return report(lwm::cli::exit_code_for(error.kind()), error.what());
  } catch (const std::filesystem::filesystem_error& error) {
    return report(lwm::cli::kExitBadInput,
                  std::string(error.what()) + "; check the path and its permissions");
  } catch (const std::bad_alloc&) {
    return report(lwm::cli::kExitTooLarge,
                  "ran out of memory; use a smaller context_length or micro_batch_tokens");
  } catch (const std::exception& error) {
    return report(lwm::cli::kExitInternal, std::string("internal error: ") + error.what());
  }
}
