// Sampling, chunked prefill and the decode loop (spec §2.5).
#include "lwm/generation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "lwm/error.h"

namespace lwm {

// ---------------------------------------------------------------------------------------------
// Sampler

namespace {

// splitmix64: a tiny generator of our own, so a seed gives the same draws on every platform and
// standard library (std::*_distribution does not promise that).
std::uint64_t next_random(std::uint64_t& state) {
  state += 0x9E3779B97F4A7C15ull;
  std::uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [0, 1) with 53 random bits.
double next_uniform(std::uint64_t& state) {
  return static_cast<double>(next_random(state) >> 11) * 0x1.0p-53;
}

void check_sampling_params(const SamplingParams& params) {
  if (!(params.temperature >= 0.0f) || !std::isfinite(params.temperature)) {
    throw Error(ErrorKind::invalid_argument,
                "sampling temperature must be a finite number >= 0, got " +
                    std::to_string(params.temperature));
  }
  if (params.top_k < 0) {
    throw Error(ErrorKind::invalid_argument,
                "top-k must be >= 0 (0 = no limit), got " + std::to_string(params.top_k));
  }
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f)) {
    throw Error(ErrorKind::invalid_argument,
                "top-p must lie in (0, 1] (1 = no limit), got " + std::to_string(params.top_p));
  }
}

// Index of the largest logit; the lowest id wins a tie. NaNs are never chosen.
std::int32_t argmax(std::span<const float> logits) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best] || std::isnan(logits[best])) best = i;
  }
  return static_cast<std::int32_t>(best);
}

// Candidates ordered by logit, highest first, ties by id: a total order, so the kept set and the
// walk below do not depend on the standard library's sorting algorithm.
bool ranks_before(const std::pair<float, std::int32_t>& a,
                  const std::pair<float, std::int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

}  // namespace

Sampler::Sampler(const SamplingParams& params) : params_(params), state_(params.seed) {
  check_sampling_params(params);
}

std::int32_t Sampler::sample(std::span<const float> logits) {
  if (logits.empty()) throw Error(ErrorKind::invalid_argument, "cannot sample from empty logits");
  if (params_.temperature == 0.0f) return argmax(logits);

  // Temperature first, then top-k, then top-p, as LWM's and Hugging Face's samplers do (§2.5).
  scratch_.clear();
  for (std::size_t i = 0; i < logits.size(); ++i) {
    if (!std::isnan(logits[i]) && logits[i] != -INFINITY) {
      scratch_.emplace_back(logits[i], static_cast<std::int32_t>(i));
    }
  }
  if (scratch_.empty()) return argmax(logits);

  const auto size = static_cast<std::int64_t>(scratch_.size());
  if (params_.top_k > 0 && params_.top_k < size) {
    std::nth_element(scratch_.begin(), scratch_.begin() + params_.top_k, scratch_.end(),
                     ranks_before);
    scratch_.resize(static_cast<std::size_t>(params_.top_k));
  }
  const bool limited = params_.top_p < 1.0f || (params_.top_k > 0 && params_.top_k < size);
  if (limited) std::sort(scratch_.begin(), scratch_.end(), ranks_before);

  // Weights relative to the best logit, in double so that the nucleus sums are exact enough.
  const float best = std::max_element(scratch_.begin(), scratch_.end())->first;
  const double inverse_temperature = 1.0 / static_cast<double>(params_.temperature);
  std::vector<double> weights(scratch_.size());
  double total = 0.0;
  for (std::size_t i = 0; i < scratch_.size(); ++i) {
    weights[i] = std::exp((static_cast<double>(scratch_[i].first) - best) * inverse_temperature);
    total += weights[i];
  }

  // Nucleus: the smallest prefix of the ranked candidates whose mass reaches top_p (at least one).
  std::size_t kept = weights.size();
  if (params_.top_p < 1.0f) {
    const double target = static_cast<double>(params_.top_p) * total;
    double mass = 0.0;
    for (kept = 0; kept < weights.size();) {
      mass += weights[kept++];
      if (mass >= target) break;
    }
    total = mass;
  }

  const double draw = next_uniform(state_) * total;
  double cumulative = 0.0;
  for (std::size_t i = 0; i < kept; ++i) {
    cumulative += weights[i];
    if (draw < cumulative) return scratch_[i].second;
  }
  return scratch_[kept - 1].second;  // rounding left the draw just past the end
}

// ---------------------------------------------------------------------------------------------
// Prefill

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Refuses a prompt that cannot run to the end before any work is done (design.md: never a
// silently truncated context).
void check_prompt_fits(const SequenceRunner& cache, std::int64_t prompt_tokens) {
  const std::int64_t end = cache.size() + prompt_tokens;
  const std::int64_t model_limit = cache.model().config().max_sequence_length;
  if (end > model_limit) {
    throw Error(ErrorKind::invalid_argument,
                "the context is too long for the model: " + std::to_string(cache.size()) +
                    " tokens already in context + " + std::to_string(prompt_tokens) +
                    " prompt tokens = " + std::to_string(end) +
                    ", but the model's max_sequence_length is " + std::to_string(model_limit) +
                    "; shorten the prompt or sample fewer frames");
  }
  if (end > cache.capacity()) {
    throw Error(ErrorKind::out_of_memory,
                "the prompt of " + std::to_string(prompt_tokens) +
                    " tokens does not fit in the KV cache: it holds " +
                    std::to_string(cache.size()) + " of " + std::to_string(cache.capacity()) +
                    " tokens, leaving room for " + std::to_string(cache.capacity() - cache.size()) +
                    "; make the cache larger or the prompt shorter");
  }
}

// Checked before the long prefill, so a bad id fails at once rather than after minutes.
void check_token_ids(const Model& model, const PromptView& prompt) {
  const ModelConfig& config = model.config();
  if (!prompt.vision_mask.empty() && prompt.vision_mask.size() != prompt.tokens.size()) {
    throw Error(ErrorKind::invalid_argument,
                "the prompt's vision mask has " + std::to_string(prompt.vision_mask.size()) +
                    " entries for " + std::to_string(prompt.tokens.size()) + " tokens");
  }
  for (std::size_t i = 0; i < prompt.tokens.size(); ++i) {
    const bool vision = !prompt.vision_mask.empty() && prompt.vision_mask[i] != 0;
    const std::int64_t vocab = vision ? config.vision_vocab_size : config.vocab_size;
    const std::int32_t id = prompt.tokens[i];
    if (vision && !config.has_vision()) {
      throw Error(ErrorKind::invalid_argument,
                  "prompt token " + std::to_string(i) +
                      " is a vision token, but the model is text-only (its config has no "
                      "vision_vocab_size)");
    }
    if (id < 0 || id >= vocab) {
      throw Error(ErrorKind::invalid_argument,
                  "prompt token " + std::to_string(i) + " has id " + std::to_string(id) +
                      ", outside the model's " + (vision ? "vision " : "") + "vocabulary of " +
                      std::to_string(vocab));
    }
  }
}

// Puts the cache back to where it was when prefill started, whatever went wrong, so that a
// cancelled or failed prefill leaves it usable (a half-ingested prompt is of no use to anyone).
class CacheRollback {
 public:
  explicit CacheRollback(SequenceRunner& cache) : cache_(cache), size_(cache.size()) {}
  ~CacheRollback() {
    if (!committed_ && cache_.size() > size_) cache_.truncate(size_);
  }
  CacheRollback(const CacheRollback&) = delete;
  CacheRollback& operator=(const CacheRollback&) = delete;
  void commit() noexcept { committed_ = true; }

 private:
  SequenceRunner& cache_;
  std::int64_t size_;
  bool committed_ = false;
};

}  // namespace

std::vector<float> prefill(SequenceRunner& runner, PromptView prompt, std::int64_t chunk,
                           const ProgressCallback& progress) {
  const std::span<const std::int32_t> tokens = prompt.tokens;
  if (tokens.empty()) throw Error(ErrorKind::invalid_argument, "prefill needs at least one token");
  if (chunk <= 0) {
    throw Error(ErrorKind::invalid_argument,
                "prefill chunk must be positive, got " + std::to_string(chunk));
  }
  const auto total = static_cast<std::int64_t>(tokens.size());
  check_prompt_fits(runner, total);
  check_token_ids(runner.model(), prompt);

  const auto start = Clock::now();
  CacheRollback rollback(runner);
  std::vector<float> logits;
  for (std::int64_t done = 0; done < total;) {
    const std::int64_t n = std::min(chunk, total - done);
    const bool last = done + n == total;
    const auto begin = static_cast<std::size_t>(done);
    const auto count = static_cast<std::size_t>(n);
    ForwardOptions forward{.logits_for = last ? LogitsFor::last : LogitsFor::none};
    if (!prompt.vision_mask.empty()) forward.vision_mask = prompt.vision_mask.subspan(begin, count);
    runner.forward(tokens.subspan(begin, count), forward, last ? &logits : nullptr);
    done += n;
    if (progress && !progress(Progress{done, total, seconds_since(start)})) {
      throw Error(ErrorKind::cancelled, "prefill cancelled after " + std::to_string(done) + " of " +
                                            std::to_string(total) + " tokens");
    }
  }
  rollback.commit();
  return logits;
}

// ---------------------------------------------------------------------------------------------
// Generation

const char* to_string(StopReason reason) noexcept {
  switch (reason) {
    case StopReason::end_of_sequence:
      return "end of sequence";
    case StopReason::max_tokens:
      return "max tokens";
    case StopReason::context_full:
      return "context full";
    case StopReason::stopped_by_caller:
      return "stopped by caller";
  }
  return "unknown";
}

namespace {

// Room for one more token: both the cache and the model's context must have it.
bool has_room_for_another_token(const SequenceRunner& runner) {
  return runner.size() < runner.capacity() &&
         runner.size() < runner.model().config().max_sequence_length;
}

}  // namespace

// The cache ends up holding the prompt and every generated token except the last one sampled
// (which was never run through the model); a caller continuing the conversation feeds that token
// first.
GenerationResult generate(SequenceRunner& runner, const Tokenizer& tokenizer, PromptView prompt,
                          const GenerationOptions& options, const TokenCallback& on_token,
                          const ProgressCallback& prefill_progress) {
  if (options.max_new_tokens < 0) {
    throw Error(ErrorKind::invalid_argument,
                "max_new_tokens must be >= 0, got " + std::to_string(options.max_new_tokens));
  }
  if (prompt.tokens.empty()) {
    // The first token is sampled from the logits of the last prompt token, so one must run.
    throw Error(ErrorKind::invalid_argument, "generate needs at least one prompt token");
  }
  Sampler sampler(options.sampling);  // validates the sampling options before the long prefill
  GenerationResult result;
  result.prompt_tokens = static_cast<std::int64_t>(prompt.tokens.size());

  const auto start = Clock::now();
  std::vector<float> logits =
      prefill(runner, prompt, options.prefill_chunk, prefill_progress);
  const auto prefill_end = Clock::now();
  result.prefill_seconds = std::chrono::duration<double>(prefill_end - start).count();

  const std::int32_t eos = runner.model().config().eos_token_id;
  TextStreamer streamer(tokenizer);
  result.stop_reason = StopReason::max_tokens;
  while (static_cast<std::int64_t>(result.tokens.size()) < options.max_new_tokens) {
    const std::int32_t token = sampler.sample(logits);
    if (result.tokens.empty()) result.time_to_first_token_seconds = seconds_since(start);
    if (options.stop_at_eos && token == eos) {
      result.stop_reason = StopReason::end_of_sequence;
      break;
    }
    result.tokens.push_back(token);
    const std::string text = streamer.push(token);
    result.text += text;
    if (on_token && !on_token(token, text)) {
      result.stop_reason = StopReason::stopped_by_caller;
      break;
    }
    if (static_cast<std::int64_t>(result.tokens.size()) == options.max_new_tokens) break;
    if (!has_room_for_another_token(runner)) {
      result.stop_reason = StopReason::context_full;
      break;
    }
    const std::int32_t step[] = {token};
    runner.forward(step, ForwardOptions{.logits_for = LogitsFor::last}, &logits);
  }
  result.text += streamer.finish();
  result.decode_seconds = seconds_since(prefill_end);
  return result;
}

}  // namespace lwm
