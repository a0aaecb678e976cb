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
#include "lwm/error.h"
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
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& success) {
    return app.exit(success);
  } catch (const CLI::ParseError& error) {
    return report(lwm::cli::kExitUsage,
                  std::string(error.what()) + "; run 'lwm-train run --help' to see the options");
  }

  struct sigaction action {};
  action.sa_handler = on_sigint;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND;  // a second Ctrl-C kills at once
  ::sigaction(SIGINT, &action, nullptr);
  try {
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
