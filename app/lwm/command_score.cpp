// lwm score: per-token log-probabilities and the last position's top logits as JSON, for
// perplexity measurements and parity checks against other implementations.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "commands.h"
#include "lwm/kv_cache.h"

namespace lwm::cli {
namespace {

struct ScoreOptions {
  std::string model_dir;
  std::string text;
  std::string tokens;
  bool has_text = false;
  bool has_tokens = false;
  std::int64_t top = 10;
  bool full_logits = false;
};

std::vector<std::int32_t> parse_token_list(const std::string& list, std::int64_t vocab_size) {
  std::vector<std::int32_t> ids;
  const char* p = list.data();
  const char* end = p + list.size();
  const auto fail = [&](const std::string& why) -> std::vector<std::int32_t> {
    throw Error(ErrorKind::invalid_argument, "--tokens '" + list + "' " + why +
                                                 "; give comma-separated token ids like 1,450,22");
  };
  while (true) {
    while (p < end && *p == ' ') ++p;
    std::int64_t value = 0;
    const auto [next, ec] = std::from_chars(p, end, value);
    if (ec != std::errc() || next == p) return fail("is not a list of integers");
    if (value < 0 || value >= vocab_size) {
      return fail("holds id " + std::to_string(value) + ", outside the model's vocabulary of " +
                  std::to_string(vocab_size));
    }
    ids.push_back(static_cast<std::int32_t>(value));
    p = next;
    while (p < end && *p == ' ') ++p;
    if (p == end) break;
    if (*p != ',') return fail("is not a list of integers");
    ++p;
  }
  return ids;
}

// log Σ exp(row), in double so long rows of similar logits keep their precision.
double log_sum_exp(const float* row, std::int64_t n) {
  const double max = *std::max_element(row, row + n);
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(row[i]) - max);
  return max + std::log(sum);
}

void run_score(const ScoreOptions& options) {
  if (options.has_text == options.has_tokens) {
    throw Error(ErrorKind::invalid_argument, "give exactly one of --text TEXT or --tokens 1,2,3");
  }
  const auto model = load_model(options.model_dir);
  const ModelConfig& config = model->config();
  const std::int64_t vocab = config.vocab_size;

  std::optional<Tokenizer> tokenizer;
  std::vector<std::int32_t> tokens;
  if (options.has_text) {
    tokenizer.emplace(load_tokenizer(options.model_dir, "to encode --text"));
    tokens.push_back(tokenizer->bos_id());  // spec §1.7: BOS is inserted explicitly
    const auto encoded = tokenizer->encode(options.text);
    tokens.insert(tokens.end(), encoded.begin(), encoded.end());
  } else {
    tokens = parse_token_list(options.tokens, vocab);
    // Pieces are a convenience here: ids alone are enough to score.
    std::error_code ec;
    if (std::filesystem::is_regular_file(
            std::filesystem::path(options.model_dir) / "tokenizer.model", ec)) {
      tokenizer.emplace(load_tokenizer(options.model_dir, "to show pieces"));
    }
  }
  const auto n = static_cast<std::int64_t>(tokens.size());
  if (n > config.max_sequence_length) {
    throw Error(ErrorKind::out_of_memory, std::to_string(n) +
                                              " tokens are more than the model's "
                                              "maximum sequence length of " +
                                              std::to_string(config.max_sequence_length) +
                                              "; score a shorter text");
  }

  KVCache cache(config, n);
  std::vector<float> logits;
  model->forward(tokens, cache, LogitsFor::all, &logits);

  nlohmann::json token_logprobs = nlohmann::json::array();
  token_logprobs.push_back(nullptr);  // the first token has no prediction
  double sum = 0.0;
  for (std::int64_t i = 1; i < n; ++i) {
    const float* row = logits.data() + (i - 1) * vocab;
    const double logprob = static_cast<double>(row[tokens[i]]) - log_sum_exp(row, vocab);
    token_logprobs.push_back(logprob);
    sum += logprob;
  }

  const float* last = logits.data() + (n - 1) * vocab;
  const double last_lse = log_sum_exp(last, vocab);
  std::vector<std::int32_t> order(static_cast<std::size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  const auto top = std::min(options.top, vocab);
  std::partial_sort(order.begin(), order.begin() + top, order.end(),
                    [&](std::int32_t a, std::int32_t b) {
                      return last[a] > last[b] || (last[a] == last[b] && a < b);
                    });
  nlohmann::json top_json = nlohmann::json::array();
  for (std::int64_t k = 0; k < top; ++k) {
    const std::int32_t id = order[static_cast<std::size_t>(k)];
    top_json.push_back({{"token", id},
                        {"piece", tokenizer ? nlohmann::json(tokenizer->piece(id)) : nullptr},
                        {"logit", last[id]},
                        {"logprob", static_cast<double>(last[id]) - last_lse}});
  }

  nlohmann::json out = {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top", top_json}};
  if (n > 1) {
    out["sum_logprob"] = sum;
    out["perplexity"] = std::exp(-sum / static_cast<double>(n - 1));
  }
  if (options.full_logits) {
    nlohmann::json rows = nlohmann::json::array();
    for (std::int64_t i = 0; i < n; ++i) {
      rows.push_back(
          std::vector<float>(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab));
    }
    out["logits"] = std::move(rows);
  }
  // Pieces of a byte-fallback tokenizer can be invalid UTF-8 on their own; replace rather than
  // fail, since the ids carry the exact information.
  std::cout << out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
}

}  // namespace

Command add_score_command(CLI::App& parent) {
  auto options = std::make_shared<ScoreOptions>();
  CLI::App* app = parent.add_subcommand(
      "score",
      "Print JSON with each token's log-probability given the tokens before it, and the last "
      "position's top logits: {\"tokens\", \"token_logprobs\" (null first), \"top\", "
      "\"perplexity\", \"logits\" (with --full-logits)}.");
  app->add_option("--model", options->model_dir, "Model directory")->required();
  CLI::Option* text = app->add_option("--text", options->text, "Text to score (BOS is prepended)");
  CLI::Option* tokens =
      app->add_option("--tokens", options->tokens, "Comma-separated token ids to score, as given")
          ->excludes(text);
  app->add_option("--top", options->top, "How many of the last position's top logits to list")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 31))
      ->capture_default_str();
  app->add_flag("--full-logits", options->full_logits, "Also print every position's logits");
  return {app, [options, text, tokens] {
            options->has_text = text->count() > 0;
            options->has_tokens = tokens->count() > 0;
            run_score(*options);
          }};
}

}  // namespace lwm::cli
