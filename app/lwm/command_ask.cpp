// lwm ask: a question about a book (or inline text), answered by streaming generation.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <string>

#include "commands.h"
#include "lwm/book.h"
#include "lwm/chat_template.h"
#include "lwm/devices.h"
#include "lwm/generation.h"
#include "lwm/ingest_cache.h"
#include "lwm/kv_cache.h"
#include "lwm/session.h"
#include "lwm/source_map.h"
#include "lwm/video_tokens.h"
#include "terminal.h"

namespace lwm::cli {
namespace {

struct AskOptions {
  std::string model_dir;
  std::string book;
  std::string prompt;
  std::string question;
  std::string template_name;
  std::int64_t max_tokens = 256;
  float temperature = 0.0f;
  std::int32_t top_k = 0;
  float top_p = 1.0f;
  std::uint64_t seed = 0;
  std::int64_t prefill_chunk = 512;
  std::int64_t context = 0;
  std::string video;
  std::string cache_dir;  // non-empty: resumable ingest and KV snapshots there
  std::string devices = "cpu";
  std::string kv_cache;     // empty: f32 on the CPU, bf16 on a GPU
  std::int64_t frames = 8;  // uniform samples (spec §3.1: LWM's chat default)
  double fps = 0.0;         // > 0: sample at this rate instead
  bool has_book = false;    // given, even if empty
  bool has_prompt = false;
  bool has_video = false;
  bool show_sources = false;
};

// Loads the book through the library's readers and says on stderr what they worked around.
Book read_book(const std::string& path) {
  Book book = load_book(path);
  for (const auto& warning : book.warnings)
    std::fprintf(stderr, "lwm: warning: %s\n", warning.c_str());
  return book;
}

// The prompt's book tokens: the {context} field, or the front of {question} for a template
// without {context} (the session puts the text there, before the question).
SourceMap map_book_tokens(const Book& book, const Prompt& prompt) {
  SourceMap sources;
  const std::int32_t id = sources.add_book(book.path.string(), book.outline);
  const bool has_context =
      std::any_of(prompt.fields().begin(), prompt.fields().end(),
                  [](const FieldTokens& field) { return field.field == "context"; });
  for (const auto& field : prompt.fields()) {
    if (field.field != (has_context ? "context" : "question")) continue;
    const auto in_book =
        std::lower_bound(field.value_begins.begin(), field.value_begins.end(), book.text.size());
    const std::span<const std::size_t> begins(field.value_begins.begin(), in_book);
    sources.add_book_tokens(id, field.first_token, begins, book.text.size());
  }
  return sources;
}

std::string token_range_text(const std::optional<TokenRange>& range) {
  if (!range) return "no tokens";
  return "tokens " + format_count(range->begin) + "-" + format_count(range->end - 1);
}

// --show-sources: which tokens of the prompt hold which chapter (or page) of the book.
void print_sources(const Book& book, const SourceMap& sources) {
  const auto& outline = book.outline;
  std::string about = to_string(book.format);
  if (!book.title.empty()) about += ", \"" + book.title + "\"";
  if (!book.author.empty()) about += " by " + book.author;
  std::fprintf(stderr, "lwm: book '%s' (%s): %zu chapters, %zu pages, %s bytes of text\n",
               book.path.string().c_str(), about.c_str(), outline.chapters.size(),
               outline.pages.size(),
               format_count(static_cast<std::int64_t>(book.text.size())).c_str());
  const std::int32_t id = 0;
  if (!outline.chapters.empty()) {
    for (std::size_t c = 0; c < outline.chapters.size(); ++c) {
      const auto& chapter = outline.chapters[c];
      const std::string page =
          chapter.page > 0 ? " (page " + std::to_string(chapter.page) + ")" : std::string();
      std::fprintf(stderr, "lwm: source: %s: chapter %zu%s \"%s\"%s\n",
                   token_range_text(sources.tokens_for_chapter(id, c)).c_str(), c + 1,
                   chapter.level > 1 ? " (section)" : "", chapter.title.c_str(), page.c_str());
    }
  } else if (!outline.pages.empty()) {
    for (const auto& page : outline.pages) {
      std::fprintf(stderr, "lwm: source: %s: page %d\n",
                   token_range_text(sources.tokens_for_page(id, page.number)).c_str(), page.number);
    }
  } else {
    std::fprintf(stderr, "lwm: source: %s: the whole text (no chapter headings found)\n",
                 token_range_text(sources.tokens_for_bytes(id, {0, book.text.size()})).c_str());
  }
}

const ChatTemplate& choose_template(const std::string& name) {
  const auto& templates = ChatTemplates::builtin();
  const auto names = templates.names();
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    throw Error(ErrorKind::invalid_argument,
                "unknown template '" + name + "'; choose --template from: " + known);
  }
  const ChatTemplate& chosen = templates.get(name);
  for (const auto& part : chosen.parts) {
    if (part.kind == TemplatePart::Kind::media) {
      throw Error(ErrorKind::invalid_argument,
                  "template '" + name + "' needs a " + part.text +
                      ", which lwm ask cannot take; choose a text template such as document-qa");
    }
  }
  return chosen;
}

using AnswerRunner = std::function<GenerationResult(const GenerationOptions&, const TokenCallback&,
                                                    const ProgressCallback&)>;

// Runs the generation with the command's sampling options, streaming the answer to stdout and a
// prefill bar and the statistics to stderr; Ctrl-C stops it between chunks or tokens.
void stream_answer(const AskOptions& options, const AnswerRunner& run) {
  GenerationOptions generation;
  generation.sampling.temperature = options.temperature;
  generation.sampling.top_k = options.top_k;
  generation.sampling.top_p = options.top_p;
  generation.sampling.seed = options.seed;
  generation.max_new_tokens = options.max_tokens;
  generation.prefill_chunk = options.prefill_chunk;

  ProgressBar bar("prefill", "tok");
  const auto on_prefill = [&](const Progress& progress) {
    bar.update(progress);
    return !InterruptGuard::interrupted();
  };
  bool wrote_text = false;
  const auto on_token = [&](std::int32_t, std::string_view piece) {
    bar.finish();
    if (!piece.empty()) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      wrote_text = true;
    }
    return !InterruptGuard::interrupted();
  };
  const GenerationResult result = [&] {
    try {
      return run(generation, on_token, on_prefill);
    } catch (const Error& error) {
      bar.finish();
      if (error.kind() != ErrorKind::cancelled) throw;
      throw Error(ErrorKind::cancelled,
                  std::string("cancelled with Ctrl-C (") + error.what() + "), nothing generated");
    }
  }();
  bar.finish();
  if (wrote_text) {
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }

  const double prefill_rate =
      result.prefill_seconds > 0
          ? static_cast<double>(result.prompt_tokens) / result.prefill_seconds
          : 0.0;
  std::fprintf(stderr,
               "lwm: %s prompt tokens, prefill %s tok/s, first token after %s, %s tokens decoded "
               "at %s tok/s, stopped: %s\n",
               format_count(result.prompt_tokens).c_str(), format_rate(prefill_rate).c_str(),
               format_duration(result.time_to_first_token_seconds).c_str(),
               format_count(static_cast<std::int64_t>(result.tokens.size())).c_str(),
               format_rate(result.decode_tokens_per_second()).c_str(),
               to_string(result.stop_reason));
  if (InterruptGuard::interrupted()) {
    throw Error(ErrorKind::cancelled, "cancelled with Ctrl-C after " +
                                          std::to_string(result.tokens.size()) +
                                          " generated tokens; the answer above is incomplete");
  }
}

void run_video_ask(const AskOptions& options);

// --devices and --kv-cache into the session's options.
void set_devices(SessionOptions& session_options, const AskOptions& options) {
  session_options.devices = parse_device_list(options.devices, list_devices());
  if (!options.kv_cache.empty()) session_options.kv_precision = parse_kv_precision(options.kv_cache);
}

// --cache-dir: restores the session's KV snapshot for this source and model when there is one,
// else ingests the source (Ctrl-C stops between chunks) and saves the snapshot for next time.
void ingest_through_cache(Session& session, const AskOptions& options, const ModelConfig& config,
                          const std::string& source_sha256) {
  if (options.cache_dir.empty()) return;
  if (session.runner().host_cache() == nullptr) {
    std::fprintf(stderr, "lwm: note: KV snapshots are kept for CPU sessions only; the source is "
                         "ingested on %s\n", session.runner().device().c_str());
    return;
  }
  const auto snapshot =
      session_snapshot_path(options.cache_dir, source_sha256, config, session.chat_template().name);
  std::error_code ec;
  if (std::filesystem::exists(snapshot, ec)) {
    try {
      const std::int64_t restored = session.restore(snapshot);
      std::fprintf(stderr, "lwm: %s of %s source tokens restored from '%s'\n",
                   format_count(restored).c_str(),
                   format_count(session.plan().source_tokens).c_str(), snapshot.c_str());
    } catch (const Error& error) {
      if (error.kind() != ErrorKind::file_format) throw;
      std::fprintf(stderr, "lwm: warning: %s; it will be written again\n", error.what());
    }
  }
  if (session.cached_tokens() >= session.plan().source_tokens) return;
  ProgressBar bar("ingest", "tok");
  session.ingest([&](const Progress& progress) {
    bar.update(progress);
    return !InterruptGuard::interrupted();
  });
  bar.finish();
  session.save(snapshot);
}

void run_ask(const AskOptions& options) {
  const bool from_book = options.has_book;
  if (int{from_book} + int{options.has_prompt} + int{options.has_video} != 1) {
    throw Error(ErrorKind::invalid_argument,
                "give exactly one of --book FILE, --video FILE or --prompt TEXT");
  }
  check_runnable(parse_device_list(options.devices, list_devices()),
                 options.kv_cache.empty() ? std::nullopt
                                          : std::optional(parse_kv_precision(options.kv_cache)));
  if (options.has_video) return run_video_ask(options);
  const std::string template_name = !options.template_name.empty()
                                        ? options.template_name
                                        : (from_book ? "document-qa" : "text-chat");
  const ChatTemplate& chosen = choose_template(template_name);
  const Book book = from_book ? read_book(options.book) : Book{};
  const std::string& text = from_book ? book.text : options.prompt;

  const auto model = load_model(options.model_dir);
  const Tokenizer tokenizer = load_tokenizer(options.model_dir, "to encode the prompt");

  SessionOptions session_options;
  session_options.template_name = chosen.name;
  session_options.context = options.context;
  session_options.answer_reserve = options.max_tokens + kQuestionAllowance;
  session_options.prefill_chunk = options.prefill_chunk;
  set_devices(session_options, options);
  const auto session = [&] {
    try {
      return Session::for_text(*model, tokenizer, text, session_options);
    } catch (const Error& error) {
      if (error.kind() != ErrorKind::out_of_memory) throw;
      throw Error(error.kind(), std::string(error.what()) + "; in lwm ask: use a shorter " +
                                    (from_book ? "book" : "prompt") + " or a larger --context");
    }
  }();
  if (from_book && options.show_sources) {
    print_sources(book, map_book_tokens(book, session->prompt_for(options.question)));
  }

  // Installed before the first line on stderr, so whoever sees that line can already cancel.
  InterruptGuard interrupt;
  std::fprintf(stderr,
               "lwm: %s prompt tokens before the question, context %s tokens, KV cache %s\n",
               format_count(session->plan().source_tokens).c_str(),
               format_count(session->plan().context).c_str(),
               format_bytes(session->plan().kv_cache_bytes).c_str());
  if (!options.cache_dir.empty()) {
    ingest_through_cache(*session, options, model->config(),
                         from_book ? file_sha256(options.book) : bytes_sha256(text));
  }
  stream_answer(options, [&](const GenerationOptions& generation, const TokenCallback& on_token,
                             const ProgressCallback& on_prefill) {
    return session->ask(options.question, generation, on_token, on_prefill).generation;
  });
}

// lwm ask --video: frames → VQGAN codes → a session over the video (media-first template, so the
// video is computed once) → the answer.
void run_video_ask(const AskOptions& options) {
  const auto model = load_model(options.model_dir);
  const Tokenizer tokenizer = load_tokenizer(options.model_dir, "to encode the prompt");
  if (!model->config().has_vision()) {
    throw Error(ErrorKind::invalid_argument,
                "model '" + options.model_dir +
                    "' is a text-only model; a video needs a vision-language model (its "
                    "config.json has vision_vocab_size and the directory a vqgan.safetensors)");
  }
  const auto vqgan = Vqgan::load(options.model_dir);

  FrameSamplingOptions sampling;
  if (options.fps > 0) {
    sampling.selection = FrameSelection::rate;
    sampling.frames_per_second = options.fps;
  } else {
    sampling.max_frames = options.frames;
  }
  InterruptGuard interrupt;
  ProgressBar frames_bar("video", "frames");
  sampling.progress = [&](const Progress& progress) {
    frames_bar.update(progress);
    return !InterruptGuard::interrupted();
  };
  std::string video_sha256;
  const VideoTokens video = [&] {
    if (options.cache_dir.empty()) return tokenize_video(options.video, *vqgan, sampling);
    video_sha256 = file_sha256(options.video);
    const CachedVideoTokens cached =
        tokenize_video_cached(options.video, *vqgan, sampling, options.cache_dir, video_sha256);
    frames_bar.finish();
    std::fprintf(stderr, "lwm: %s of %s frames from the ingest cache '%s'\n",
                 format_count(cached.frames_from_cache).c_str(),
                 format_count(cached.tokens.codes.frames()).c_str(), cached.cache_file.c_str());
    return cached.tokens;
  }();
  frames_bar.finish();
  for (const auto& warning : video.report.warnings) {
    std::fprintf(stderr, "lwm: warning: %s\n", warning.c_str());
  }

  SessionOptions session_options;
  session_options.template_name = options.template_name;
  session_options.context = options.context;
  session_options.answer_reserve = options.max_tokens + kQuestionAllowance;
  session_options.prefill_chunk = options.prefill_chunk;
  set_devices(session_options, options);
  const auto session = Session::for_video(*model, tokenizer, video.codes, session_options);
  std::fprintf(stderr, "lwm: %s frames, %s video tokens, context %s tokens, KV cache %s\n",
               format_count(video.codes.frames()).c_str(),
               format_count(session->plan().source_tokens).c_str(),
               format_count(session->plan().context).c_str(),
               format_bytes(session->plan().kv_cache_bytes).c_str());
  ingest_through_cache(*session, options, model->config(), video_sha256);
  if (options.show_sources) {
    SourceMap sources;
    add_video_frames(sources, sources.add_video(options.video), session->source_prompt(), video);
    for (std::size_t f = 0; f < video.frames.size(); ++f) {
      const TokenRange range = session->source_prompt().frames()[f];
      std::fprintf(stderr, "lwm: frame %zu at %.3f s (video frame %lld): tokens %s-%s\n", f,
                   video.frames[f].seconds, static_cast<long long>(video.frames[f].frame),
                   format_count(range.begin).c_str(), format_count(range.end - 1).c_str());
    }
  }
  stream_answer(options, [&](const GenerationOptions& generation, const TokenCallback& on_token,
                             const ProgressCallback& on_prefill) {
    return session->ask(options.question, generation, on_token, on_prefill).generation;
  });
}

}  // namespace

Command add_ask_command(CLI::App& parent) {
  auto options = std::make_shared<AskOptions>();
  CLI::App* app = parent.add_subcommand(
      "ask",
      "Ask a question about a book (--book), a video (--video) or inline text (--prompt); the "
      "answer streams to stdout, progress and statistics go to stderr.");
  app->add_option("--model", options->model_dir,
                  "Model directory (config.json, *.safetensors, "
                  "tokenizer.model)")
      ->required();
  CLI::Option* book = app->add_option(
      "--book", options->book,
      "Book to ask about: plain text or Markdown (UTF-8, or Windows-1252 with a warning), EPUB "
      "or PDF");
  CLI::Option* prompt =
      app->add_option("--prompt", options->prompt, "Text to ask about, given inline")
          ->excludes(book);
  CLI::Option* video =
      app->add_option("--video", options->video,
                      "Video to ask about (any file FFmpeg reads), with a vision-language model "
                      "that has a VQGAN (vqgan.safetensors)")
          ->excludes(book)
          ->excludes(prompt);
  CLI::Option* frames =
      app->add_option("--frames", options->frames, "Frames sampled uniformly over the video")
          ->needs(video)
          ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 24))
          ->capture_default_str();
  app->add_option("--fps", options->fps, "Sample this many frames per second instead of --frames")
      ->needs(video)
      ->excludes(frames)
      ->check(CLI::Range(1e-6, 1000.0));
  app->add_option("--question", options->question, "The question")->required();
  app->add_option("--devices", options->devices,
                  "Where to run: cpu, or one GPU as cuda:N in a build with CUDA (see lwm "
                  "devices; cpu:N and several GPUs are refused by name until sequence-parallel "
                  "sessions land, never replaced by the CPU)")
      ->capture_default_str();
  app->add_option("--kv-cache", options->kv_cache,
                  "KV-cache precision: f32 (the CPU's), bf16 (a GPU's default) or int8 (GPU, "
                  "half of bf16's memory)")
      ->check(CLI::IsMember({"f32", "bf16", "int8"}));
  app->add_option("--cache-dir", options->cache_dir,
                  "Keep the ingest here: a video's codes frame by frame (a cancelled or killed "
                  "run resumes from the last complete frame) and the source's KV cache (asking "
                  "again about the same source with the same model skips its prefill)");
  app->add_flag("--show-sources", options->show_sources,
                "Print on stderr which prompt tokens hold which chapter (or page) of the book, or "
                "which frame (and its time) of the video");
  app->add_option("--template", options->template_name,
                  "Chat template (default: document-qa with --book, text-chat with --prompt, "
                  "video-chat-media-first with --video; a template without {context} gets the "
                  "text before the question)");
  app->add_option("--max-tokens", options->max_tokens, "Most tokens to generate")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40))
      ->capture_default_str();
  app->add_option("--temperature", options->temperature, "Sampling temperature; 0 is greedy")
      ->check(CLI::Range(0.0f, 100.0f))
      ->capture_default_str();
  app->add_option("--top-k", options->top_k, "Sample among the k likeliest tokens; 0: all")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app->add_option("--top-p", options->top_p, "Sample within this probability mass")
      ->check(CLI::Range(1e-6f, 1.0f))
      ->capture_default_str();
  app->add_option("--seed", options->seed, "Random seed for sampling")->capture_default_str();
  app->add_option("--prefill-chunk", options->prefill_chunk,
                  "Prompt tokens run per step (progress and Ctrl-C act between steps)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 30))
      ->capture_default_str();
  app->add_option("--context", options->context,
                  "Context (KV cache) size in tokens; default: prompt + --max-tokens, at most "
                  "the model's maximum sequence length")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40));
  return {app, [options, book, prompt, video] {
            options->has_book = book->count() > 0;
            options->has_prompt = prompt->count() > 0;
            options->has_video = video->count() > 0;
            run_ask(*options);
          }};
}

}  // namespace lwm::cli
