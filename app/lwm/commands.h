// The `lwm` subcommands. Each add_*_command() declares a subcommand's options on `parent` and
// returns the function that runs it once the command line has been parsed. Failures are thrown as
// lwm::Error; main() turns their kind into the documented exit code and a one-line message.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "exit_codes.h"
#include "lwm/error.h"
#include "lwm/model.h"
#include "lwm/tokenizer.h"

namespace lwm::cli {

struct Command {
  CLI::App* app = nullptr;
  std::function<void()> run;
};

Command add_ask_command(CLI::App& parent);
Command add_info_command(CLI::App& parent);
Command add_score_command(CLI::App& parent);
Command add_make_model_command(CLI::App& parent);
Command add_convert_command(CLI::App& parent);
Command add_eval_command(CLI::App& parent);

// A check the user asked for did not pass (lwm eval needle --min-accuracy): main() reports it
// and exits with kExitCheckFailed.
struct CheckFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The "Exit codes:" paragraph shown at the end of every --help.
const std::string& exit_codes_help();

// Loads the model in `dir`, first checking that the directory exists so the message says so
// plainly instead of naming a missing config.json.
std::unique_ptr<Model> load_model(const std::filesystem::path& dir);
// Loads <dir>/tokenizer.model; `purpose` says why it is needed, for the message when it is absent.
Tokenizer load_tokenizer(const std::filesystem::path& dir, const std::string& purpose);

// Re-throws a library error with what the command was doing in front of its message.
[[noreturn]] void rethrow_with_context(const Error& error, const std::string& context);

}  // namespace lwm::cli
