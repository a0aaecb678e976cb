// A conversation about one source (a book, a text or a video): ingest once, ask many
// (design.md, step 5). The session keeps the KV cache and the tokens in it; every question is
// rendered into the full prompt and only what differs from the cache is computed, so the source
// is prefilled once and reused for as long as the template puts it before the question.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "lwm/chat_template.h"
#include "lwm/devices.h"
#include "lwm/generation.h"
#include "lwm/kv_cache.h"
#include "lwm/model.h"
#include "lwm/progress.h"
#include "lwm/prompt.h"
#include "lwm/sequence_runner.h"
#include "lwm/tokenizer.h"

namespace lwm {

struct SessionOptions {
  // Template name (chat_template.h); empty → "document-qa" for text, "video-chat-media-first" for
  // videos (the media-first template lets every question reuse the video's cache).
  std::string template_name;
  // KV-cache capacity in tokens; 0 → the source plus `answer_reserve`, at most the model's
  // maximum sequence length.
  std::int64_t context = 0;
  // Tokens kept free for questions and answers when the context is sized automatically.
  std::int64_t answer_reserve = 1024;
  std::int64_t prefill_chunk = 512;
  // Where the model runs (devices.h parse_device_list): default the CPU. One GPU runs the CUDA
  // backend; several ranks are refused until sequence-parallel sessions are wired.
  DeviceSelection devices;
  // KV-cache precision; unset → f32 on the CPU, bf16 on a GPU (int8 halves a GPU's cache).
  std::optional<KvPrecision> kv_precision;
};

// What a session holds: its source tokens, context and KV-cache size (plans made before a
// session exists, with memory per device and suggestions, are planner.h's plan_ingest).
struct SessionPlan {
  std::int64_t source_tokens = 0;  // the rendered prompt without question-dependent tokens
  std::int64_t context = 0;        // KV-cache capacity
  std::int64_t kv_cache_bytes = 0;
};

// The template a session uses when SessionOptions::template_name is empty.
const char* default_session_template(bool video) noexcept;

// The question-independent prompt a session over `text` (or `video`, with empty text) ingests:
// what Session::source_prompt() holds and plan().source_tokens counts. Cheap (tokenizing only),
// for plans made before a model is loaded (planner.h).
Prompt session_source_prompt(const ChatTemplate& chat_template, const Tokenizer& tokenizer,
                             const std::string& text, const VideoCodes* video);

struct AskResult {
  GenerationResult generation;
  std::int64_t reused_tokens = 0;  // prompt tokens found already in the cache
};

class Session {
 public:
  // A session over text (a book's text or an inline prompt). `model` and `tokenizer` must outlive
  // it. Throws Error(out_of_memory) when the text and the answer reserve do not fit the context,
  // or the KV cache does not fit in memory, before anything is computed.
  static std::unique_ptr<Session> for_text(const Model& model, const Tokenizer& tokenizer,
                                           std::string text, const SessionOptions& options = {});
  // A session over a video's VQGAN codes (vision-language models only).
  static std::unique_ptr<Session> for_video(const Model& model, const Tokenizer& tokenizer,
                                            VideoCodes video, const SessionOptions& options = {});

  const SessionPlan& plan() const noexcept { return plan_; }
  // The question-independent start of every prompt (with the frames of a video source).
  const Prompt& source_prompt() const noexcept { return source_; }
  const ChatTemplate& chat_template() const noexcept { return *template_; }
  std::int64_t cached_tokens() const noexcept { return runner_->size(); }
  // Where the model runs and how its cache is kept ("cuda:0", bf16).
  const SequenceRunner& runner() const noexcept { return *runner_; }
  // The whole prompt a question makes (its fields located, for source maps).
  Prompt prompt_for(std::string_view question) const { return render(question); }

  // Prefills the question-independent part of the prompt. Optional: ask() does it when needed.
  // Runs chunk by chunk; cancelling (Error cancelled) keeps the chunks already computed, and the
  // next ingest() or ask() resumes after them. Progress counts the tokens this call computes.
  void ingest(const ProgressCallback& progress = {});

  // Renders the question into the template, reuses the cached prefix, prefills the rest and
  // generates. Each question is asked about the source alone (earlier answers are not in its
  // prompt); cancelling keeps what was ingested. Prefill runs in the session's prefill_chunk.
  AskResult ask(std::string_view question, const GenerationOptions& options,
                const TokenCallback& on_token = {}, const ProgressCallback& prefill_progress = {});

  // Snapshots (design.md step 6: reopening a chat is instant). save() writes the KV cache and
  // the tokens it holds to `file` atomically, format "lwm-kv-snapshot" version 1: "LWMKVSNP",
  // u32 version, u32 n + JSON header (the model's config, tokens, row width), the tokens, their
  // vision mask, each layer's keys and values (float32), and the SHA-256 of all of it. Sessions
  // whose cache lives on a GPU throw Error(unsupported) from save() and restore() (not written yet).
  void save(const std::filesystem::path& file) const;
  // Loads a snapshot into this session and returns the tokens it now holds: the snapshot's tokens
  // as far as they agree with this session's source (tokens of another source are never used).
  // Throws Error(io) for a missing file, Error(file_format) for a file that is not a snapshot, is
  // truncated or corrupt, or was made by a model with another config (naming the field), and
  // Error(out_of_memory) when it holds more tokens than this session's context; after a failure
  // the session holds nothing cached (as when created) and works as before.
  std::int64_t restore(const std::filesystem::path& file);

 private:
  Session(const Model& model, const Tokenizer& tokenizer, const ChatTemplate& chat_template,
          std::string text, std::optional<VideoCodes> video, const SessionOptions& options);
  static std::unique_ptr<Session> create(const Model& model, const Tokenizer& tokenizer,
                                         const std::string& default_template, std::string text,
                                         std::optional<VideoCodes> video,
                                         const SessionOptions& options);
  Prompt render(std::string_view question) const;
  void truncate_cache(std::int64_t tokens);
  // Records that the cache holds the first runner_->size() tokens of `prompt`.
  void remember(const Prompt& prompt);

  const Model& model_;
  const Tokenizer& tokenizer_;
  const ChatTemplate* template_;
  std::string text_;
  std::optional<VideoCodes> video_;
  SessionOptions options_;
  Prompt source_;  // the question-independent prefix of every prompt
  SessionPlan plan_;
  std::unique_ptr<SequenceRunner> runner_;
  Prompt cached_;  // the tokens the cache holds, position by position
};

}  // namespace lwm
