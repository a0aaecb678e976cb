#include <filesystem>
#include <string>

#include "commands.h"

namespace lwm::cli {

const std::string& exit_codes_help() {
  static const std::string text =
      "Exit codes:\n"
      "  0  success\n"
      "  1  usage error: an unknown or missing option, or a value out of range\n"
      "  2  bad input: a missing or unreadable file, a corrupt model, a bad config, a book that\n"
      "     is not UTF-8\n"
      "  3  too large: the prompt does not fit the context, or the work does not fit in memory\n"
      "  4  cancelled with Ctrl-C\n"
      "  5  internal error (please report it)\n"
      "  6  a check failed: accuracy below lwm eval needle --min-accuracy\n"
      "Errors are reported as one line on stderr starting with \"lwm: error: \".";
  return text;
}

std::unique_ptr<Model> load_model(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    throw Error(ErrorKind::io, "model directory '" + dir.string() +
                                   "' does not exist; pass --model a directory holding "
                                   "config.json and *.safetensors (see lwm make-model)");
  }
  try {
    return Model::load(dir);
  } catch (const Error& error) {
    rethrow_with_context(error, "cannot load the model in '" + dir.string() + "'");
  }
}

Tokenizer load_tokenizer(const std::filesystem::path& dir, const std::string& purpose) {
  const auto file = dir / "tokenizer.model";
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) {
    throw Error(ErrorKind::io, "'" + file.string() + "' does not exist, and it is needed " +
                                   purpose + "; put the model's SentencePiece tokenizer there");
  }
  try {
    return Tokenizer(file);
  } catch (const Error& error) {
    rethrow_with_context(error, "cannot load the tokenizer '" + file.string() + "'");
  }
}

void rethrow_with_context(const Error& error, const std::string& context) {
  throw Error(error.kind(), context + ": " + error.what());
}

}  // namespace lwm::cli
