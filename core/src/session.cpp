#include "lwm/session.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

#include "lwm/error.h"

namespace lwm {
namespace {

// Fills the template's fields. A template without {context} (text-chat) still gets the text: it
// goes in front of the question, so no input is silently dropped.
std::map<std::string, std::string> template_fields(const ChatTemplate& chat_template,
                                                   const std::string& text,
                                                   std::string_view question) {
  const auto fields = chat_template.fields();
  for (const auto& field : fields) {
    if (field != "context" && field != "question") {
      throw Error(ErrorKind::invalid_argument, "template '" + chat_template.name + "' needs a {" +
                                                   field + "} field, which a session cannot fill");
    }
  }
  const bool has_context = std::find(fields.begin(), fields.end(), "context") != fields.end();
  if (has_context) return {{"context", text}, {"question", std::string(question)}};
  if (text.empty()) return {{"question", std::string(question)}};
  return {{"question", text + " " + std::string(question)}};
}

bool has_media_slot(const ChatTemplate& chat_template) {
  return std::any_of(
      chat_template.parts.begin(), chat_template.parts.end(),
      [](const TemplatePart& part) { return part.kind == TemplatePart::Kind::media; });
}

// The prompt tokens shared by every question: the common prefix of two renderings with different
// questions, less one token because a tokenizer may merge the last shared character with what
// follows. ask() finds the true shared prefix anyway; this only decides what ingest computes.
Prompt question_independent_prefix(const Prompt& a, const Prompt& b) {
  const std::int64_t shared = a.common_prefix(b.tokens(), b.vision_mask());
  return a.prefix(std::max<std::int64_t>(shared - 1, 0));
}

// The context and KV-cache size for a source of `source_tokens` (SessionOptions::context).
SessionPlan make_plan(const ModelConfig& config, std::int64_t source_tokens,
                      const SessionOptions& options) {
  const std::int64_t model_limit = config.max_sequence_length;
  SessionPlan plan;
  plan.source_tokens = source_tokens;
  plan.context = options.context > 0
                     ? options.context
                     : std::min(plan.source_tokens + options.answer_reserve, model_limit);
  if (plan.context > model_limit) {
    throw Error(ErrorKind::invalid_argument,
                "a context of " + std::to_string(plan.context) +
                    " tokens is more than the model's maximum sequence length of " +
                    std::to_string(model_limit) + "; ask for a smaller context");
  }
  if (plan.source_tokens >= plan.context) {
    throw Error(ErrorKind::out_of_memory,
                "the source is " + std::to_string(plan.source_tokens) +
                    " tokens but the context holds " + std::to_string(plan.context) +
                    " (the model's maximum is " + std::to_string(model_limit) +
                    "); use a shorter source, fewer frames" +
                    (plan.context < model_limit ? ", or a larger context" : "") +
                    " or a longer-context model");
  }
  plan.kv_cache_bytes =
      plan.context * kv_bytes_per_token(config, options.kv_precision.value_or(
                                                    default_kv_precision(options.devices)));
  return plan;
}

// The template a session uses, checked against its source and options.
const ChatTemplate& session_template(const std::string& default_template, bool has_video,
                                     const SessionOptions& options) {
  const std::string name = options.template_name.empty() ? default_template : options.template_name;
  const ChatTemplate& chat_template = ChatTemplates::builtin().get(name);
  if (has_media_slot(chat_template) != has_video) {
    throw Error(ErrorKind::invalid_argument,
                "template '" + name + "' " +
                    (has_video ? "has no media slot; choose a video template such as "
                                 "video-chat-media-first"
                               : "needs a video; choose a text template such as document-qa"));
  }
  if (options.prefill_chunk <= 0 || options.answer_reserve < 0 || options.context < 0) {
    throw Error(ErrorKind::invalid_argument,
                "session options: prefill_chunk must be positive, context and answer_reserve "
                "not negative");
  }
  return chat_template;
}

void require_vision(const Model& model) {
  if (!model.config().has_vision()) {
    throw Error(ErrorKind::invalid_argument,
                "model '" + model.directory().string() +
                    "' is a text-only model; a video needs a vision-language model (its "
                    "config has vision_vocab_size)");
  }
}

}  // namespace

const char* default_session_template(bool video) noexcept {
  return video ? "video-chat-media-first" : "document-qa";
}

Prompt session_source_prompt(const ChatTemplate& chat_template, const Tokenizer& tokenizer,
                             const std::string& text, const VideoCodes* video) {
  const auto render_with = [&](std::string_view question) {
    return render_prompt(chat_template, tokenizer, template_fields(chat_template, text, question),
                         video);
  };
  return question_independent_prefix(render_with("A"), render_with("B"));
}

std::unique_ptr<Session> Session::for_text(const Model& model, const Tokenizer& tokenizer,
                                           std::string text, const SessionOptions& options) {
  return create(model, tokenizer, default_session_template(false), std::move(text), std::nullopt,
                options);
}

std::unique_ptr<Session> Session::for_video(const Model& model, const Tokenizer& tokenizer,
                                            VideoCodes video, const SessionOptions& options) {
  require_vision(model);
  return create(model, tokenizer, default_session_template(true), {}, std::move(video), options);
}

std::unique_ptr<Session> Session::create(const Model& model, const Tokenizer& tokenizer,
                                         const std::string& default_template, std::string text,
                                         std::optional<VideoCodes> video,
                                         const SessionOptions& options) {
  const ChatTemplate& chat_template =
      session_template(default_template, video.has_value(), options);
  return std::unique_ptr<Session>(
      new Session(model, tokenizer, chat_template, std::move(text), std::move(video), options));
}

Session::Session(const Model& model, const Tokenizer& tokenizer, const ChatTemplate& chat_template,
                 std::string text, std::optional<VideoCodes> video, const SessionOptions& options)
    : model_(model),
      tokenizer_(tokenizer),
      template_(&chat_template),
      text_(std::move(text)),
      video_(std::move(video)),
      options_(options),
      source_(session_source_prompt(chat_template, tokenizer, text_, video_ ? &*video_ : nullptr)),
      plan_(make_plan(model.config(), source_.size(), options)),
      runner_(make_sequence_runner(model, options.devices, plan_.context, options.kv_precision)) {}

Prompt Session::render(std::string_view question) const {
  return render_prompt(*template_, tokenizer_, template_fields(*template_, text_, question),
                       video_ ? &*video_ : nullptr);
}

void Session::truncate_cache(std::int64_t tokens) {
  runner_->truncate(tokens);
  cached_ = cached_.prefix(tokens);
}

void Session::remember(const Prompt& prompt) {
  cached_ = prompt.prefix(runner_->size());
}

void Session::ingest(const ProgressCallback& progress) {
  const std::int64_t reused = cached_.common_prefix(source_.tokens(), source_.vision_mask());
  if (reused == source_.size()) return;
  truncate_cache(reused);
  // One prefill call per chunk, each remembered as it completes: a cancelled ingest keeps the
  // chunks already computed and the next ingest() (or ask()) resumes after them (issue 7: an
  // hour of video is not computed twice because the user pressed Cancel).
  const Prompt rest = source_.suffix(reused);
  const auto start = std::chrono::steady_clock::now();
  const std::int64_t total = rest.size();
  for (std::int64_t done = 0; done < total;) {
    const std::int64_t n = std::min(options_.prefill_chunk, total - done);
    const Prompt piece = rest.suffix(done).prefix(n);
    prefill(*runner_, piece, n);
    done += n;
    remember(source_);
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (progress && !progress(Progress{done, total, elapsed})) {
      throw Error(ErrorKind::cancelled,
                  "ingest cancelled after " + std::to_string(reused + done) + " of " +
                      std::to_string(source_.size()) +
                      " tokens; they stay cached and ingest resumes from there");
    }
  }
}

AskResult Session::ask(std::string_view question, const GenerationOptions& options,
                       const TokenCallback& on_token, const ProgressCallback& prefill_progress) {
  const Prompt prompt = render(question);
  if (prompt.size() >= runner_->capacity()) {
    throw Error(ErrorKind::out_of_memory,
                "the prompt with this question is " + std::to_string(prompt.size()) +
                    " tokens but the session's context holds " +
                    std::to_string(runner_->capacity()) +
                    "; ask a shorter question or open the source with a larger context");
  }
  AskResult result;
  // At least the last prompt token runs, since the first answer token comes from its logits.
  result.reused_tokens =
      std::min(cached_.common_prefix(prompt.tokens(), prompt.vision_mask()), prompt.size() - 1);
  truncate_cache(result.reused_tokens);
  GenerationOptions generation = options;
  generation.prefill_chunk = options_.prefill_chunk;
  try {
    result.generation = generate(*runner_, tokenizer_, prompt.suffix(result.reused_tokens),
                                 generation, on_token, prefill_progress);
  } catch (...) {
    // Prefill rolls the cache back itself; whatever else went wrong, the cache must again hold
    // exactly the tokens the session believes it holds.
    truncate_cache(std::min(runner_->size(), cached_.size()));
    throw;
  }
  // The cache now holds the prompt and the answer tokens that were run through the model (all
  // but the last one sampled); they are text.
  Prompt held = prompt;
  held.append_text(std::span(result.generation.tokens)
                       .first(static_cast<std::size_t>(runner_->size() - prompt.size())));
  remember(held);
  return result;
}

}  // namespace lwm
