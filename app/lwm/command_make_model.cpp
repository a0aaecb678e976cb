// lwm make-model: writes a model directory with random weights (and a tokenizer) for any config.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "lwm/model_maker.h"
#include "lwm/vqgan.h"
#include "terminal.h"

namespace lwm::cli {
namespace {

struct MakeModelOptions {
  std::string out;
  std::string preset;
  std::string config_file;
  std::string convention = "jax";
  std::string dtype = "bf16";
  std::uint64_t seed = 0;
  float norm_noise = 0.0f;
  std::string tokenizer;
  std::vector<std::string> train_tokenizer;
  std::int64_t vocab = 2000;
  std::string vqgan;  // VQGAN preset written beside a vision-language model
};

// A trained tokenizer lives in a temporary file until make_random_model copies it into the
// model directory; this removes it whatever happens.
class TemporaryFile {
 public:
  explicit TemporaryFile(std::filesystem::path path) : path_(std::move(path)) {}
  ~TemporaryFile() {
    std::error_code ignored;
    std::filesystem::remove(path_, ignored);
  }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

ModelConfig base_config(const MakeModelOptions& options) {
  if (options.preset.empty() == options.config_file.empty()) {
    throw Error(ErrorKind::invalid_argument, "give exactly one of --preset NAME or --config FILE");
  }
  if (!options.preset.empty()) return ModelConfig::preset(options.preset);
  try {
    return ModelConfig::load(options.config_file);
  } catch (const Error& error) {
    rethrow_with_context(error, "cannot use the config '" + options.config_file + "'");
  }
}

void run_make_model(const MakeModelOptions& options) {
  const std::filesystem::path out = options.out;
  std::error_code ec;
  if (std::filesystem::exists(out, ec) &&
      (!std::filesystem::is_directory(out, ec) || !std::filesystem::is_empty(out, ec))) {
    throw Error(ErrorKind::invalid_argument, "--out '" + options.out +
                                                 "' already exists and is not an empty "
                                                 "directory; choose a new directory or remove it");
  }

  ModelMakerOptions maker;
  maker.config = base_config(options);
  maker.config.convention = parse_convention(options.convention);
  maker.config.convention_known = true;
  maker.dtype = parse_dtype(options.dtype);
  maker.config.torch_dtype = maker.dtype;
  maker.seed = options.seed;
  maker.norm_weight_noise = options.norm_noise;

  std::optional<TemporaryFile> trained;
  std::filesystem::path tokenizer_file = options.tokenizer;
  if (!options.train_tokenizer.empty()) {
    std::vector<std::filesystem::path> texts(options.train_tokenizer.begin(),
                                             options.train_tokenizer.end());
    trained.emplace(std::filesystem::temp_directory_path() /
                    ("lwm-tokenizer-" + std::to_string(::getpid()) + ".model"));
    TokenizerTrainingOptions training;
    training.vocab_size = options.vocab;
    std::fprintf(stderr, "lwm: training a %s-token tokenizer on %zu file%s\n",
                 format_count(options.vocab).c_str(), texts.size(), texts.size() == 1 ? "" : "s");
    try {
      train_tokenizer(texts, trained->path(), training);
    } catch (const Error& error) {
      rethrow_with_context(error, "cannot train a " + std::to_string(options.vocab) +
                                      "-token tokenizer (give more text or a smaller --vocab)");
    }
    tokenizer_file = trained->path();
  }
  if (!tokenizer_file.empty()) {
    Tokenizer tokenizer = [&] {
      try {
        return Tokenizer(tokenizer_file);
      } catch (const Error& error) {
        rethrow_with_context(error, "cannot use the tokenizer '" + tokenizer_file.string() + "'");
      }
    }();
    // Every id the tokenizer produces must have an embedding row; a larger config vocabulary is
    // kept (LWM pads its vocabulary the same way, spec §1.1).
    maker.config.vocab_size = std::max(maker.config.vocab_size, tokenizer.vocab_size());
    maker.config.bos_token_id = tokenizer.bos_id();
    maker.config.eos_token_id = tokenizer.eos_id();
    maker.tokenizer_model = tokenizer_file;
  }
  maker.config.validate(options.config_file.empty() ? "preset " + options.preset
                                                    : options.config_file);

  std::fprintf(stderr, "lwm: writing %s parameters (%s, %s convention) to %s\n",
               format_count(maker.config.parameter_count()).c_str(), dtype_name(maker.dtype),
               convention_name(maker.config.convention), options.out.c_str());
  InterruptGuard interrupt;
  ProgressBar bar("writing", "tensors");
  make_random_model(out, maker, [&](const Progress& progress) {
    bar.update(progress);
    return !InterruptGuard::interrupted();
  });
  bar.finish();
  if (!options.vqgan.empty()) {
    VqganMakerOptions vqgan;
    vqgan.config = VqganConfig::preset(options.vqgan);
    vqgan.seed = options.seed + 1;
    const std::int64_t needed = vqgan.config.num_embeddings + 2;  // codes and delimiters (§2.1)
    if (maker.config.vision_vocab_size < needed) {
      throw Error(ErrorKind::invalid_argument,
                  "--vqgan " + options.vqgan + " has " +
                      std::to_string(vqgan.config.num_embeddings) +
                      " codes, so the model needs vision_vocab_size >= " + std::to_string(needed) +
                      "; use a vision preset such as tiny-vision or 7b-vision");
    }
    make_random_vqgan(out, vqgan);
    std::fprintf(stderr, "lwm: wrote a random %s VQGAN (%s parameters, %s codes per frame)\n",
                 options.vqgan.c_str(), format_count(vqgan.config.parameter_count()).c_str(),
                 format_count(vqgan.config.tokens_per_frame()).c_str());
  }
  std::printf("made %s: %s parameters, %s, vocabulary %s, context %s\n", options.out.c_str(),
              format_count(maker.config.parameter_count()).c_str(), dtype_name(maker.dtype),
              format_count(maker.config.vocab_size).c_str(),
              format_count(maker.config.max_sequence_length).c_str());
}

}  // namespace

Command add_make_model_command(CLI::App& parent) {
  auto options = std::make_shared<MakeModelOptions>();
  CLI::App* app = parent.add_subcommand(
      "make-model",
      "Write a model directory with random weights for a preset or a config.json, optionally with "
      "a tokenizer (given, or trained on text files). For tests, benchmarks and the demo model.");
  app->add_option("--out", options->out, "Directory to create (must not exist or be empty)")
      ->required();
  CLI::Option* preset =
      app->add_option("--preset", options->preset,
                      "LWM preset: 7b, 7b-vision, 13b, 30b, 65b, 1b, 3b, 200m, 100m, debug, "
                      "tiny, tiny-vision");
  app->add_option("--config", options->config_file, "config.json to take the shapes from")
      ->excludes(preset);
  app->add_option("--convention", options->convention, "Weight names and layout")
      ->check(CLI::IsMember({"jax", "hf"}))
      ->capture_default_str();
  app->add_option("--dtype", options->dtype, "Storage dtype of the weights")
      ->check(CLI::IsMember({"bf16", "f16", "f32"}))
      ->capture_default_str();
  app->add_option("--seed", options->seed, "Random seed of the weights")->capture_default_str();
  app->add_option("--norm-noise", options->norm_noise,
                  "Standard deviation of noise added to the RMSNorm weights (0: all ones)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  CLI::Option* tokenizer =
      app->add_option("--tokenizer", options->tokenizer, "SentencePiece model to copy in");
  CLI::Option* train = app->add_option("--train-tokenizer", options->train_tokenizer,
                                       "UTF-8 text files to train a SentencePiece BPE tokenizer on")
                           ->excludes(tokenizer);
  app->add_option("--vocab", options->vocab, "Vocabulary size of the trained tokenizer")
      ->needs(train)
      ->check(CLI::Range(std::int64_t{260}, std::int64_t{1} << 20))
      ->capture_default_str();
  app->add_option("--vqgan", options->vqgan,
                  "Also write a random VQGAN (vqgan.safetensors) for a vision-language preset: "
                  "tiny or lwm")
      ->check(CLI::IsMember({"tiny", "lwm"}));
  return {app, [options] { run_make_model(*options); }};
}

}  // namespace lwm::cli
