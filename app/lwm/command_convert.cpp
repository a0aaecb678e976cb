// lwm convert: LWM's released JAX checkpoints, VQGAN pickles and Hugging Face LLaMA directories
// into our model directory (lwm/convert.h).
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>

#include "commands.h"
#include "lwm/convert.h"
#include "terminal.h"

namespace lwm::cli {
namespace {

struct ConvertCommandOptions {
  std::string from;
  std::string out;
  std::string vqgan;
  std::string tokenizer;
  std::string preset;
  std::string config_file;
  std::optional<double> theta;
  std::optional<std::int64_t> max_sequence_length;
  std::int64_t shard_size = std::int64_t{4} << 30;
};

void run_convert(const ConvertCommandOptions& options) {
  ConvertOptions convert;
  convert.vqgan = options.vqgan;
  convert.tokenizer = options.tokenizer;
  convert.preset = options.preset;
  convert.config_file = options.config_file;
  convert.rope_theta = options.theta;
  convert.max_sequence_length = options.max_sequence_length;
  convert.max_shard_bytes = options.shard_size;

  std::fprintf(stderr, "lwm: converting %s into %s\n", options.from.c_str(), options.out.c_str());
  InterruptGuard interrupt;
  ProgressBar bar("converting", "B");
  ConvertResult result;
  try {
    result = convert_model(options.from, options.out, convert, [&](const Progress& progress) {
      bar.update(progress);
      return !InterruptGuard::interrupted();
    });
  } catch (const Error& error) {
    bar.finish();
    rethrow_with_context(error, "cannot convert '" + options.from + "'");
  }
  bar.finish();
  for (const auto& note : result.notes) std::fprintf(stderr, "lwm: note: %s\n", note.c_str());
  std::printf("converted %s (%s) into %s: %s tensors, %s in %s shard%s%s\n", options.from.c_str(),
              convert_source_name(result.source), options.out.c_str(),
              format_count(result.tensors).c_str(), format_bytes(result.bytes).c_str(),
              format_count(result.shards).c_str(), result.shards == 1 ? "" : "s",
              result.vqgan ? ", with the VQGAN" : "");
}

}  // namespace

Command add_convert_command(CLI::App& parent) {
  auto options = std::make_shared<ConvertCommandOptions>();
  CLI::App* app = parent.add_subcommand(
      "convert",
      "Convert an LWM JAX checkpoint (tux streaming params or train state, flax msgpack), a VQGAN "
      "pickle, or a Hugging Face LLaMA directory into an LWM Studio model directory.");
  app->add_option("--from", options->from,
                  "Checkpoint file, or a directory holding one (or an HF model)")
      ->required();
  app->add_option("--out", options->out, "Directory to create (must not exist or be empty)")
      ->required();
  app->add_option("--vqgan", options->vqgan,
                  "VQGAN pickle to include (default: 'vqgan' beside the checkpoint)");
  app->add_option("--tokenizer", options->tokenizer,
                  "SentencePiece tokenizer.model (default: the one beside the source)");
  CLI::Option* preset = app->add_option(
      "--preset", options->preset,
      "LWM preset for the config: 7b, 13b, 30b, 65b, 1b, 3b, 200m, 100m, debug, tiny");
  app->add_option("--config", options->config_file, "config.json to take the config from")
      ->excludes(preset);
  app->add_option("--theta", options->theta, "RoPE theta (LWM-1M models: 5e7)")
      ->check(CLI::PositiveNumber);
  app->add_option("--max-sequence-length", options->max_sequence_length,
                  "Context length the model supports")
      ->check(CLI::PositiveNumber);
  app->add_option("--shard-size", options->shard_size, "Largest safetensors shard in bytes")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  return {app, [options] { run_convert(*options); }};
}

}  // namespace lwm::cli
