// Prefill and decoding: chunked prefill with progress and cancellation, then token-by-token
// generation with greedy or sampled decoding, streaming every token's text as it comes.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lwm/kv_cache.h"
#include "lwm/model.h"
#include "lwm/progress.h"
#include "lwm/prompt.h"
#include "lwm/sequence_runner.h"
#include "lwm/tokenizer.h"

namespace lwm {

struct SamplingParams {
  float temperature = 0.0f;  // 0 → greedy
  std::int32_t top_k = 0;    // 0 → no limit
  float top_p = 1.0f;        // nucleus mass kept; 1 → no limit
  std::uint64_t seed = 0;
};

// Picks the next token from a row of logits. Deterministic for a given seed.
class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  std::int32_t sample(std::span<const float> logits);

 private:
  SamplingParams params_;
  std::uint64_t state_;
  std::vector<std::pair<float, std::int32_t>> scratch_;
};

// Runs the prompt's tokens (text and vision, spec §2.2) through the runner's model into its KV
// cache in chunks of `chunk` tokens, calling `progress` after every chunk; throws
// Error(cancelled) when it returns false, with the cache put back as it was. Returns the logits
// of the last token.
std::vector<float> prefill(SequenceRunner& runner, PromptView prompt, std::int64_t chunk,
                           const ProgressCallback& progress = {});
// The same on the CPU: `model` running into `cache`.
inline std::vector<float> prefill(const Model& model, KVCache& cache, PromptView prompt,
                                  std::int64_t chunk, const ProgressCallback& progress = {}) {
  CpuSequenceRunner runner(model, cache);
  return prefill(runner, prompt, chunk, progress);
}

struct GenerationOptions {
  SamplingParams sampling;
  std::int64_t max_new_tokens = 256;
  std::int64_t prefill_chunk = 512;
  bool stop_at_eos = true;
};

enum class StopReason { end_of_sequence, max_tokens, context_full, stopped_by_caller };
const char* to_string(StopReason reason) noexcept;

struct GenerationResult {
  std::vector<std::int32_t> tokens;  // generated ids (the EOS that ended it excluded)
  std::string text;
  StopReason stop_reason = StopReason::max_tokens;
  std::int64_t prompt_tokens = 0;
  double prefill_seconds = 0.0;
  double time_to_first_token_seconds = 0.0;
  double decode_seconds = 0.0;
  double decode_tokens_per_second() const noexcept {
    return decode_seconds > 0 ? static_cast<double>(tokens.size()) / decode_seconds : 0.0;
  }
};

// Called with each generated token and the text it completed; return false to stop.
using TokenCallback = std::function<bool(std::int32_t token, std::string_view text)>;

// Prefills `prompt` after whatever the runner's cache already holds, then generates text (spec
// §2.5: chat runs in text mode, also after a video). Stops at EOS, after max_new_tokens, when
// the cache is full, or when `on_token` returns false.
GenerationResult generate(SequenceRunner& runner, const Tokenizer& tokenizer, PromptView prompt,
                          const GenerationOptions& options, const TokenCallback& on_token = {},
                          const ProgressCallback& prefill_progress = {});
// The same on the CPU: `model` running into `cache`.
inline GenerationResult generate(const Model& model, const Tokenizer& tokenizer, KVCache& cache,
                                 PromptView prompt, const GenerationOptions& options,
                                 const TokenCallback& on_token = {},
                                 const ProgressCallback& prefill_progress = {}) {
  CpuSequenceRunner runner(model, cache);
  return generate(runner, tokenizer, prompt, options, on_token, prefill_progress);
}

}  // namespace lwm
