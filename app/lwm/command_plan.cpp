// lwm plan: what ingesting a video or a book will cost before anything is computed — frames,
// tokens, memory per device, time — and, when it does not fit, what would (lwm::plan_ingest).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "commands.h"
#include "lwm/book.h"
#include "lwm/devices.h"
#include "lwm/planner.h"
#include "lwm/video.h"
#include "lwm/vqgan.h"
#include "terminal.h"

namespace lwm::cli {
namespace {

struct PlanOptions {
  std::string model_dir;
  std::string video;
  std::string book;
  std::int64_t frames = 8;
  double fps = 0.0;
  std::string devices = "cpu";
  std::string kv_cache;  // empty: f32 on the CPU, bf16 on GPUs
  std::int64_t context = 0;
  std::int64_t max_tokens = 256;
  std::string template_name;
  bool json = false;
};

std::string seconds_text(double seconds) {
  return format_duration(seconds);
}

void print_plan(const PlanRequest& request, const IngestPlan& plan, const std::string& source) {
  std::printf("source     %s\n", source.c_str());
  if (!plan.frames.empty()) {
    std::string times;
    const std::size_t shown = std::min<std::size_t>(plan.frames.size(), 6);
    for (std::size_t i = 0; i < shown; ++i) {
      char text[32];
      std::snprintf(text, sizeof text, "%s%.2f s", i ? ", " : "", plan.frames[i].time_seconds);
      times += text;
    }
    if (shown < plan.frames.size()) {
      char text[48];
      std::snprintf(text, sizeof text, ", ... %.2f s", plan.frames.back().time_seconds);
      times += text;
    }
    std::printf("frames     %s (%s): %s\n",
                format_count(static_cast<std::int64_t>(plan.frames.size())).c_str(),
                request.fps > 0 ? "rate" : "uniform", times.c_str());
  }
  std::printf("tokens     %s%s source tokens", plan.tokens_exact ? "" : "about ",
              format_count(plan.source_tokens).c_str());
  if (plan.vision_tokens > 0) {
    std::printf(" (%s vision)", format_count(plan.vision_tokens).c_str());
  }
  std::printf(", context %s of the model's %s\n", format_count(plan.context).c_str(),
              format_count(request.model.max_sequence_length).c_str());
  std::printf("KV cache   %s, %s per token\n", to_string(request.kv_precision),
              format_bytes(plan.kv_bytes_per_token).c_str());
  for (const auto& device : plan.devices) {
    std::printf(
        "%-10s weights %s + KV cache %s (%s tokens) + work %s = %s of %s free: %s\n",
        device.device.c_str(), format_bytes(device.weight_bytes).c_str(),
        format_bytes(device.kv_cache_bytes).c_str(), format_count(device.context_tokens).c_str(),
        format_bytes(device.workspace_bytes).c_str(), format_bytes(device.total_bytes).c_str(),
        format_bytes(device.available_bytes).c_str(), device.fits ? "fits" : "does not fit");
  }
  if (plan.seconds) {
    std::printf("time       about %s: decoding %s, tokenizing %s, prefill %s\n",
                seconds_text(plan.seconds->total()).c_str(),
                seconds_text(plan.seconds->decoding).c_str(),
                seconds_text(plan.seconds->tokenizing).c_str(),
                seconds_text(plan.seconds->prefill).c_str());
  } else {
    std::printf("time       unknown (no throughput measured for these devices)\n");
  }
  std::printf("verdict    %s\n",
              plan.fits ? "fits" : (plan.problem + " " + plan.suggestion).c_str());
}

nlohmann::json plan_json(const PlanRequest& request, const IngestPlan& plan) {
  nlohmann::json frames = nlohmann::json::array();
  for (const auto& frame : plan.frames) {
    frames.push_back({{"frame", frame.frame_index}, {"seconds", frame.time_seconds}});
  }
  nlohmann::json devices = nlohmann::json::array();
  for (const auto& device : plan.devices) {
    devices.push_back({{"device", device.device},
                       {"ranks", device.ranks},
                       {"context_tokens", device.context_tokens},
                       {"weight_bytes", device.weight_bytes},
                       {"kv_cache_bytes", device.kv_cache_bytes},
                       {"workspace_bytes", device.workspace_bytes},
                       {"total_bytes", device.total_bytes},
                       {"available_bytes", device.available_bytes},
                       {"fits", device.fits}});
  }
  nlohmann::json out = {{"frames", frames},
                        {"source_tokens", plan.source_tokens},
                        {"vision_tokens", plan.vision_tokens},
                        {"tokens_exact", plan.tokens_exact},
                        {"context", plan.context},
                        {"kv_cache", to_string(request.kv_precision)},
                        {"kv_bytes_per_token", plan.kv_bytes_per_token},
                        {"devices", devices},
                        {"fits", plan.fits},
                        {"problem", plan.problem},
                        {"suggestion", plan.suggestion},
                        {"max_frames", plan.max_frames},
                        {"max_fps", plan.max_fps},
                        {"gpus_that_fit", plan.gpus_that_fit}};
  out["smaller_kv_cache_that_fits"] =
      plan.smaller_kv_that_fits ? nlohmann::json(to_string(*plan.smaller_kv_that_fits)) : nullptr;
  if (plan.seconds) {
    out["seconds"] = {{"decoding", plan.seconds->decoding},
                      {"tokenizing", plan.seconds->tokenizing},
                      {"prefill", plan.seconds->prefill},
                      {"total", plan.seconds->total()}};
  } else {
    out["seconds"] = nullptr;
  }
  return out;
}

void run_plan(const PlanOptions& options, bool has_video, bool has_book) {
  if (int{has_video} + int{has_book} != 1) {
    throw Error(ErrorKind::invalid_argument, "give exactly one of --video FILE or --book FILE");
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(options.model_dir, ec)) {
    throw Error(ErrorKind::io, "model directory '" + options.model_dir +
                                   "' does not exist; pass --model a model directory");
  }
  const ModelConfig model = ModelConfig::load(options.model_dir);
  const Tokenizer tokenizer = load_tokenizer(options.model_dir, "to count the prompt's tokens");
  PlanRequest request;
  std::string source;
  if (has_video) {
    if (!model.has_vision()) {
      throw Error(ErrorKind::invalid_argument,
                  "model '" + options.model_dir +
                      "' is a text-only model; a video needs a vision-language model");
    }
    const VideoInfo probe = probe_video(options.video);
    request = plan_request_for_video(model, VqganConfig::load(options.model_dir), tokenizer, probe,
                                     options.template_name);
    char text[160];
    std::snprintf(text, sizeof text, ": %.1f s at %.3g fps, %s frames, %dx%d",
                  probe.duration_seconds, request.video->frame_rate,
                  format_count(probe.frame_count).c_str(), probe.width, probe.height);
    source = "video '" + options.video + "'" + text;
  } else {
    const Book book = load_book(options.book);
    request = plan_request_for_text(model, tokenizer, book.text,
                                    options.template_name.empty() ? "" : options.template_name);
    source = std::string(to_string(book.format)) + " '" + options.book +
             "': " + format_count(static_cast<std::int64_t>(book.text.size())) + " bytes of text";
  }
  const DeviceList devices = list_devices();
  request.devices = parse_device_list(options.devices, devices);
  request.all_devices = devices.devices;
  request.kv_precision = !options.kv_cache.empty() ? parse_kv_precision(options.kv_cache)
                         : request.devices.kind == DeviceKind::cuda ? KvPrecision::bf16
                                                                    : KvPrecision::f32;
  request.frames = options.frames;
  request.fps = options.fps;
  request.context = options.context;
  request.answer_reserve = options.max_tokens + kQuestionAllowance;
  const IngestPlan plan = plan_ingest(request);
  if (options.json) {
    std::cout << plan_json(request, plan).dump(2) << '\n';
  } else {
    print_plan(request, plan, source);
  }
  std::fflush(stdout);
  if (!plan.fits) throw Error(ErrorKind::out_of_memory, plan.problem + " " + plan.suggestion);
}

}  // namespace

Command add_plan_command(CLI::App& parent) {
  auto options = std::make_shared<PlanOptions>();
  CLI::App* app = parent.add_subcommand(
      "plan",
      "Show what ingesting a video or a book will cost before doing it: the frames and their "
      "times, the token count, the memory on each device and an estimated time; when it does "
      "not fit, say what would (exit code 3).");
  app->add_option("--model", options->model_dir, "Model directory")->required();
  CLI::Option* video = app->add_option("--video", options->video, "Video to plan for");
  CLI::Option* book =
      app->add_option("--book", options->book, "Book to plan for (.txt, .md, .epub, .pdf)")
          ->excludes(video);
  CLI::Option* frames =
      app->add_option("--frames", options->frames, "Frames sampled uniformly over the video")
          ->needs(video)
          ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 24))
          ->capture_default_str();
  app->add_option("--fps", options->fps, "Sample this many frames per second instead")
      ->needs(video)
      ->excludes(frames)
      ->check(CLI::Range(1e-6, 1000.0));
  app->add_option("--devices", options->devices,
                  "cpu, cpu:N (N ring ranks on the CPU), cuda:I[,J...] or cuda (see lwm devices)")
      ->capture_default_str();
  app->add_option("--kv-cache", options->kv_cache,
                  "KV-cache precision: f32, bf16 or int8 (default f32 on the CPU, bf16 on GPUs)")
      ->check(CLI::IsMember({"f32", "bf16", "int8"}));
  app->add_option("--context", options->context,
                  "Context in tokens; default: the source + --max-tokens + room for the question")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40));
  app->add_option("--max-tokens", options->max_tokens, "Answer tokens to leave room for")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40))
      ->capture_default_str();
  app->add_option("--template", options->template_name, "Chat template (as lwm ask)");
  app->add_flag("--json", options->json, "Print JSON instead of a table");
  return {app,
          [options, video, book] { run_plan(*options, video->count() > 0, book->count() > 0); }};
}

}  // namespace lwm::cli
