// `lwm`: the LWM Studio command line. Wiring only: CLI11 parses, the commands call lwm::core, and
// this file turns every failure into one "lwm: error: ..." line and a documented exit code.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <new>
#include <string>
#include <vector>

#include "commands.h"
#include "lwm/error.h"

namespace {

int report(int code, const std::string& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "lwm: error: %s\n", message.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace lwm::cli;
  CLI::App app{
      "LWM Studio command line: run the Large World Model (LLaMA-2 architecture) on the CPU."};
  app.name("lwm");
  app.set_version_flag("--version", std::string("lwm ") + LWM_VERSION);
  app.require_subcommand(1);
  app.footer(exit_codes_help());

  const std::vector<Command> commands = {add_ask_command(app), add_info_command(app),
                                         add_score_command(app), add_make_model_command(app),
                                         add_convert_command(app),
                                         add_eval_command(app)};
  for (const auto& command : commands) command.app->footer(exit_codes_help());

  // CLI11 would only say that a subcommand is required; name the unknown one instead.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const auto& command : commands) {
      known = known || command.app->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + command.app->get_name();
    }
    if (!known) {
      return report(kExitUsage, std::string("unknown command '") + argv[1] +
                                    "'; the commands are " + names + " (see lwm --help)");
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& success) {
    return app.exit(success);  // --help and --version
  } catch (const CLI::ParseError& error) {
    std::string where = "lwm";
    for (const auto* sub : app.get_subcommands()) where += " " + sub->get_name();
    return report(kExitUsage,
                  std::string(error.what()) + "; run '" + where + " --help' to see the options");
  }

  try {
    for (const auto& command : commands) {
      if (command.app->parsed()) command.run();
    }
    return kExitOk;
  } catch (const CheckFailed& failed) {
    return report(kExitCheckFailed, failed.what());
  } catch (const lwm::Error& error) {
    return report(exit_code_for(error.kind()), error.what());
  } catch (const std::filesystem::filesystem_error& error) {
    return report(kExitBadInput,
                  std::string(error.what()) + "; check the path and its permissions");
  } catch (const std::bad_alloc&) {
    return report(kExitTooLarge,
                  "ran out of memory; use a smaller --context or a smaller model, or free memory");
  } catch (const std::exception& error) {
    return report(kExitInternal, std::string("internal error: ") + error.what() +
                                     "; please report this with the command that caused it");
  }
}
