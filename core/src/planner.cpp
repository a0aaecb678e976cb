// The ingest planner (planner.h). Everything here is arithmetic on the config, the probe and the
// devices' memory; the suggestions re-plan with one choice changed at a time.
//
// Where the default throughput numbers come from (tests/bench/RESULTS.md, 2026-11-23, 2-core
// Intel Xeon @ 2.80 GHz):
//  - video: lwm_bench_video's packet index of 108,000 frames took 1.51 s (71.5 k frames/s);
//    sequential decoding ran at 411 frames/s of 1280×720 (3.79e8 pixels/s); sparse samples of a
//    GOP-250 file decoded about 124 frames per sample (44,501 frames for 360 samples).
//  - VQGAN: lwm_bench_vqgan's encoder + quantizer ran at 124 GFLOP/s (run 1), counted as
//    VqganConfig::encode_flops_per_frame() counts them.
//  - prefill: lwm_bench_cpu run 3 (preset 100m, chunks of 512) took 6.19 s for 2,048 tokens and
//    31.95 s for 8,192. With 2·(layer weights) FLOP per token for the matrix products and
//    2·layers·hidden·t² for causal attention, those two times give 41.5 GFLOP/s for the products
//    and 86 GFLOP/s for attention (tests/core/test_planner.cpp checks the fit reproduces both).
#include "lwm/planner.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "byte_units.h"
#include "lwm/error.h"
#include "lwm/sequence_parallel.h"
#include "lwm/session.h"
#include "lwm/video.h"

namespace lwm {
namespace {

std::string count(std::int64_t n) {
  return std::to_string(n);
}

// Bytes of the model's weights on a device of `kind`.
std::int64_t model_weight_bytes(const PlanRequest& request, DeviceKind kind) {
  if (request.weight_bytes > 0) return request.weight_bytes;
  const DType stored = kind == DeviceKind::cuda ? DType::bf16 : request.model.torch_dtype;
  return request.model.parameter_count() * static_cast<std::int64_t>(dtype_size(stored));
}

// Activations of one prefill chunk: hidden states, q/k/v/o, the MLP's three intermediate rows,
// and one row of logits (an estimate; the allocator's slack is not counted).
std::int64_t prefill_workspace_bytes(const ModelConfig& model, std::int64_t chunk) {
  return chunk * (6 * model.hidden_size + 3 * model.intermediate_size) * 4 +
         (model.vocab_size + model.vision_vocab_size) * 4;
}

// The VQGAN's live activations for tokenize_video's batches of 4 frames: about three tensors of
// the first level's width at full resolution per frame.
std::int64_t vqgan_workspace_bytes(const VqganConfig& vqgan) {
  const std::int64_t per_frame =
      vqgan.resolution * vqgan.resolution * vqgan.level_channels(0) * 4 * 3;
  return std::min<std::int64_t>(4 * per_frame, VqganRunOptions{}.memory_budget_bytes);
}

// 2 FLOP per multiply-add of every layer's matrices (the head runs on one row per chunk).
double linear_flops_per_token(const ModelConfig& model) {
  const double kv_width = static_cast<double>(model.num_kv_heads * model.head_dim());
  const double h = static_cast<double>(model.hidden_size);
  const double per_layer = 2 * h * h + 2 * h * kv_width + 3 * h * model.intermediate_size;
  return 2.0 * per_layer * static_cast<double>(model.num_layers);
}

double attention_flops(const ModelConfig& model, std::int64_t tokens) {
  const double t = static_cast<double>(tokens);
  return 2.0 * static_cast<double>(model.num_layers * model.hidden_size) * t * t;
}

struct Core {
  std::int64_t source_tokens = 0;
  std::int64_t vision_tokens = 0;
  std::int64_t context = 0;
  std::vector<DevicePlan> devices;
  bool fits = false;
  std::string problem;
};

// Tokens, context and per-device memory for the request as it stands.
Core evaluate(const PlanRequest& request, std::int64_t frame_count) {
  Core core;
  const ModelConfig& model = request.model;
  if (request.video) {
    core.vision_tokens = frame_count * request.layout.tokens_per_frame;
    core.source_tokens = request.layout.fixed_tokens + core.vision_tokens;
  } else if (request.text->source_tokens >= 0) {
    core.source_tokens = request.text->source_tokens;
  } else {
    core.source_tokens =
        request.layout.fixed_tokens +
        static_cast<std::int64_t>(
            std::ceil(static_cast<double>(request.text->bytes) / request.text->bytes_per_token));
  }
  const std::int64_t limit = model.max_sequence_length;
  core.context = request.context > 0 ? request.context
                                     : std::min(core.source_tokens + request.answer_reserve, limit);

  const DeviceSelection& selection = request.devices;
  const int ranks = selection.ranks;
  const std::int64_t per_token = kv_bytes_per_token(model, request.kv_precision);
  const std::int64_t rows_per_rank =
      ranks == 1 ? core.context : SequenceParallelRank::local_capacity(core.context, ranks);
  const std::int64_t workspace = prefill_workspace_bytes(model, request.prefill_chunk);
  bool memory_fits = true;
  std::string memory_problem;
  for (std::size_t d = 0; d < selection.devices.size(); ++d) {
    const DeviceInfo& device = selection.devices[d];
    DevicePlan plan;
    plan.device = device.id();
    plan.ranks = selection.kind == DeviceKind::cpu ? ranks : 1;
    plan.context_tokens = rows_per_rank * plan.ranks;
    plan.weight_bytes = model_weight_bytes(request, device.kind);
    plan.workspace_bytes = workspace * plan.ranks;
    if (d == 0 && request.video && request.vqgan) {
      plan.weight_bytes += request.vqgan->parameter_count() * 4;
      plan.workspace_bytes = std::max(plan.workspace_bytes, vqgan_workspace_bytes(*request.vqgan));
    }
    plan.kv_cache_bytes = plan.context_tokens * per_token;
    plan.total_bytes = plan.weight_bytes + plan.kv_cache_bytes + plan.workspace_bytes;
    plan.available_bytes = device.available_bytes;
    plan.fits = device.available_bytes < 0 || plan.total_bytes <= device.available_bytes;
    if (!plan.fits && memory_fits) {
      memory_fits = false;
      memory_problem = plan.device + " needs " + gib_text(plan.total_bytes) + " (weights " +
                       gib_text(plan.weight_bytes) + ", " + to_string(request.kv_precision) +
                       " KV cache " + gib_text(plan.kv_cache_bytes) + " for " +
                       count(plan.context_tokens) + " tokens) but has " +
                       gib_text(device.available_bytes) + " free";
    }
    core.devices.push_back(std::move(plan));
  }
  if (core.context > limit) {
    core.problem = "a context of " + count(core.context) +
                   " tokens is more than the model's maximum sequence length of " + count(limit);
  } else if (core.source_tokens >= core.context) {
    core.problem = "the source is " + count(core.source_tokens) + " tokens but the context holds " +
                   count(core.context) + (request.context > 0 ? "" : " (the model's maximum)");
  } else if (!memory_fits) {
    core.problem = memory_problem;
  }
  core.fits = core.problem.empty();
  return core;
}

std::int64_t frame_count_for(const PlanRequest& request, std::int64_t frames, double fps) {
  return static_cast<std::int64_t>(plan_frames(*request.video, frames, fps).size());
}

// The largest x in [low, high] with fits(x), given that fits is monotone and fits(low) holds.
template <typename Fits>
std::int64_t largest_fitting(std::int64_t low, std::int64_t high, Fits&& fits) {
  while (low < high) {
    const std::int64_t mid = low + (high - low + 1) / 2;
    if (fits(mid)) {
      low = mid;
    } else {
      high = mid - 1;
    }
  }
  return low;
}

void suggest(const PlanRequest& request, IngestPlan& plan) {
  std::vector<std::string> options;
  const auto fits_with = [&](const PlanRequest& changed) {
    return evaluate(changed,
                    request.video ? frame_count_for(changed, changed.frames, changed.fps) : 0)
        .fits;
  };
  if (request.video) {
    const std::int64_t planned = static_cast<std::int64_t>(plan.frames.size());
    PlanRequest fewer = request;
    fewer.fps = 0.0;
    fewer.frames = 1;
    if (planned > 1 && fits_with(fewer)) {
      plan.max_frames = largest_fitting(1, planned - 1, [&](std::int64_t n) {
        return evaluate(request, n).fits;  // token and memory cost depend only on the count
      });
      if (request.fps > 0) {
        // The highest rate (3 significant digits, rounded down) whose frames fit.
        double low = 0.0;
        double high = request.fps;
        for (int i = 0; i < 50; ++i) {
          const double mid = 0.5 * (low + high);
          (frame_count_for(request, 0, mid) <= plan.max_frames ? low : high) = mid;
        }
        const double scale = std::pow(10.0, 2 - std::floor(std::log10(low)));
        plan.max_fps = std::floor(low * scale) / scale;
        char text[96];
        std::snprintf(text, sizeof text, "at most %.3g frames per second (%lld frames)",
                      plan.max_fps,
                      static_cast<long long>(frame_count_for(request, 0, plan.max_fps)));
        options.push_back(text);
      } else {
        options.push_back("at most " + count(plan.max_frames) + " frames");
      }
    }
  } else {
    // Text: the longest source that fits, everything else unchanged.
    PlanRequest shorter = request;
    shorter.text = TextSourceInfo{};
    shorter.text->source_tokens = request.layout.fixed_tokens + 1;
    if (plan.source_tokens > 1 && fits_with(shorter)) {
      const std::int64_t most = largest_fitting(1, plan.source_tokens - 1, [&](std::int64_t n) {
        shorter.text->source_tokens = n;
        return fits_with(shorter);
      });
      options.push_back("a text of at most " + count(most) + " tokens (this one has " +
                        count(plan.source_tokens) + ")");
    }
  }
  if (request.context > 0 && plan.source_tokens >= request.context &&
      plan.source_tokens < request.model.max_sequence_length) {
    PlanRequest larger = request;
    larger.context = 0;
    if (fits_with(larger)) options.push_back("the context sized automatically (source + answer room)");
  }
  for (const KvPrecision smaller : {KvPrecision::bf16, KvPrecision::int8}) {
    if (kv_bytes_per_token(request.model, smaller) >=
        kv_bytes_per_token(request.model, request.kv_precision)) {
      continue;
    }
    PlanRequest changed = request;
    changed.kv_precision = smaller;
    if (fits_with(changed)) {
      plan.smaller_kv_that_fits = smaller;
      options.push_back(std::string(smaller == KvPrecision::int8 ? "an 8-bit" : "a bf16") +
                        " KV cache (" + to_string(smaller) + ")");
      break;
    }
  }
  if (request.devices.kind == DeviceKind::cuda) {
    std::vector<DeviceInfo> gpus;
    for (const auto& device : request.all_devices) {
      if (device.kind == DeviceKind::cuda) gpus.push_back(device);
    }
    std::stable_sort(gpus.begin(), gpus.end(), [](const DeviceInfo& a, const DeviceInfo& b) {
      return a.available_bytes > b.available_bytes;
    });
    for (std::size_t k = request.devices.devices.size() + 1; k <= gpus.size(); ++k) {
      PlanRequest changed = request;
      changed.devices.devices.assign(gpus.begin(), gpus.begin() + static_cast<std::ptrdiff_t>(k));
      std::sort(changed.devices.devices.begin(), changed.devices.devices.end(),
                [](const DeviceInfo& a, const DeviceInfo& b) { return a.index < b.index; });
      changed.devices.ranks = static_cast<int>(k);
      if (fits_with(changed)) {
        plan.gpus_that_fit = static_cast<int>(k);
        options.push_back(count(static_cast<std::int64_t>(k)) + " GPUs (" +
                          changed.devices.to_string() + ")");
        break;
      }
    }
  }
  if (options.empty()) {
    plan.suggestion =
        "Nothing on this machine would hold it: choose a model with a longer context "
        "or use a machine with more memory.";
    return;
  }
  plan.suggestion = "It would fit with " + options.front();
  for (std::size_t i = 1; i < options.size(); ++i) plan.suggestion += ", or with " + options[i];
  plan.suggestion += ".";
}

StageSeconds estimate_seconds(const PlanRequest& request, const IngestPlan& plan) {
  const Throughput& speed = request.throughput;
  StageSeconds seconds;
  if (request.video) {
    const VideoSourceInfo& video = *request.video;
    const auto samples = static_cast<std::int64_t>(plan.frames.size());
    const std::int64_t decoded = std::min(
        video.frame_count, samples * std::max<std::int64_t>(speed.frames_decoded_per_sample, 1));
    seconds.decoding =
        static_cast<double>(video.frame_count) / speed.index_frames_per_second +
        static_cast<double>(decoded) * video.width * video.height / speed.decode_pixels_per_second;
    seconds.tokenizing = static_cast<double>(samples) * request.vqgan->encode_flops_per_frame() /
                         speed.vqgan_flops_per_second;
  }
  const double ranks = static_cast<double>(request.devices.ranks);
  seconds.prefill =
      (linear_flops_per_token(request.model) * static_cast<double>(plan.source_tokens) /
           speed.linear_flops_per_second +
       attention_flops(request.model, plan.source_tokens) / speed.attention_flops_per_second) /
      ranks;
  return seconds;
}

}  // namespace

const char* to_string(KvPrecision precision) noexcept {
  switch (precision) {
    case KvPrecision::f32:
      return "f32";
    case KvPrecision::bf16:
      return "bf16";
    case KvPrecision::int8:
      return "int8";
  }
  return "f32";
}

KvPrecision parse_kv_precision(const std::string& name) {
  for (const KvPrecision precision : {KvPrecision::f32, KvPrecision::bf16, KvPrecision::int8}) {
    if (name == to_string(precision)) return precision;
  }
  throw Error(ErrorKind::invalid_argument,
              "unknown KV-cache precision '" + name + "'; choose f32, bf16 or int8");
}

std::int64_t kv_bytes_per_token(const ModelConfig& config, KvPrecision precision) noexcept {
  const std::int64_t rows = 2 * config.num_layers * config.num_kv_heads;
  switch (precision) {
    case KvPrecision::f32:
      return config.kv_bytes_per_token(DType::f32);
    case KvPrecision::bf16:
      return config.kv_bytes_per_token(DType::bf16);
    case KvPrecision::int8:
      return rows * (config.head_dim() + 4);
  }
  return config.kv_bytes_per_token(DType::f32);
}

PromptLayout video_prompt_layout(const Tokenizer& tokenizer, const VqganConfig& vqgan,
                                 const std::string& template_name) {
  const ChatTemplate& chat_template = ChatTemplates::builtin().get(
      template_name.empty() ? default_session_template(true) : template_name);
  // Vision tokens never merge with text, so the prompt grows by exactly one frame's codes and
  // delimiter per frame: one rendering of a one-frame video gives the fixed part.
  VideoCodes one_frame;
  one_frame.codes_per_frame = vqgan.tokens_per_frame();
  one_frame.vocabulary.codebook_size = static_cast<std::int32_t>(vqgan.num_embeddings);
  one_frame.codes.assign(static_cast<std::size_t>(one_frame.codes_per_frame), 0);
  const Prompt prompt = session_source_prompt(chat_template, tokenizer, {}, &one_frame);
  PromptLayout layout;
  layout.tokens_per_frame = one_frame.codes_per_frame + 1;
  layout.fixed_tokens = prompt.size() - layout.tokens_per_frame;
  return layout;
}

std::int64_t text_source_tokens(const Tokenizer& tokenizer, const std::string& text,
                                const std::string& template_name) {
  const ChatTemplate& chat_template = ChatTemplates::builtin().get(
      template_name.empty() ? default_session_template(false) : template_name);
  return session_source_prompt(chat_template, tokenizer, text, nullptr).size();
}

std::vector<PlannedFrame> plan_frames(const VideoSourceInfo& video, std::int64_t frames,
                                      double fps) {
  if (video.frame_count <= 0 || !(video.frame_rate > 0)) {
    throw Error(ErrorKind::invalid_argument,
                "planning frames needs the video's frame count and frame rate; the probe gave " +
                    count(video.frame_count) + " frames at " + std::to_string(video.frame_rate) +
                    " fps");
  }
  std::vector<PlannedFrame> out;
  if (fps > 0) {
    // As the reader's rate selection: the frame on screen at each instant k/fps before the end.
    const double end = static_cast<double>(video.frame_count) / video.frame_rate;
    for (std::int64_t k = 0;; ++k) {
      const double instant = static_cast<double>(k) / fps;
      if (instant >= end - 1e-9) break;
      const std::int64_t index = std::min<std::int64_t>(
          static_cast<std::int64_t>(std::floor(instant * video.frame_rate + 1e-9)),
          video.frame_count - 1);
      if (out.empty() || out.back().frame_index != index) {
        out.push_back({index, static_cast<double>(index) / video.frame_rate});
      }
    }
    return out;
  }
  if (frames < 1) {
    throw Error(ErrorKind::invalid_argument,
                "the plan needs at least one frame, got " + count(frames));
  }
  for (const std::int64_t index : uniform_frame_indices(video.frame_count, frames)) {
    out.push_back({index, static_cast<double>(index) / video.frame_rate});
  }
  return out;
}

VideoSourceInfo video_source_info(const VideoInfo& probe) {
  VideoSourceInfo video;
  video.duration_seconds = probe.duration_seconds;
  video.frame_rate =
      probe.average_frame_rate > 0 ? probe.average_frame_rate : probe.real_frame_rate;
  video.frame_count = probe.frame_count;
  video.width = probe.width;
  video.height = probe.height;
  return video;
}

PlanRequest plan_request_for_video(const ModelConfig& model, const VqganConfig& vqgan,
                                   const Tokenizer& tokenizer, const VideoInfo& probe,
                                   const std::string& template_name) {
  PlanRequest request;
  request.model = model;
  request.vqgan = vqgan;
  request.layout = video_prompt_layout(tokenizer, vqgan, template_name);
  request.video = video_source_info(probe);
  return request;
}

PlanRequest plan_request_for_text(const ModelConfig& model, const Tokenizer& tokenizer,
                                  const std::string& text, const std::string& template_name) {
  PlanRequest request;
  request.model = model;
  request.text = TextSourceInfo{};
  request.text->source_tokens = text_source_tokens(tokenizer, text, template_name);
  request.text->bytes = static_cast<std::int64_t>(text.size());
  return request;
}

IngestPlan plan_ingest(const PlanRequest& request) {
  if (request.video.has_value() == request.text.has_value()) {
    throw Error(ErrorKind::invalid_argument, "a plan needs exactly one source: a video or a text");
  }
  if (request.video && !request.vqgan) {
    throw Error(ErrorKind::invalid_argument,
                "planning a video needs the model's VQGAN config (its tokens per frame)");
  }
  if (request.video && !request.model.has_vision()) {
    throw Error(ErrorKind::invalid_argument,
                "the model is text-only; a video needs a vision-language model");
  }
  if (request.devices.devices.empty() || request.devices.ranks < 1) {
    throw Error(ErrorKind::invalid_argument, "a plan needs at least one device");
  }
  if (request.fps < 0 || !std::isfinite(request.fps) || request.prefill_chunk < 1 ||
      request.answer_reserve < 0 || request.context < 0) {
    throw Error(ErrorKind::invalid_argument,
                "plan choices: fps must be finite and not negative, prefill_chunk positive, "
                "context and answer_reserve not negative");
  }
  if (request.text && !(request.text->source_tokens >= 0 || request.text->bytes_per_token > 0)) {
    throw Error(ErrorKind::invalid_argument, "a text plan needs its tokens or bytes per token");
  }
  IngestPlan plan;
  if (request.video) plan.frames = plan_frames(*request.video, request.frames, request.fps);
  const Core core = evaluate(request, static_cast<std::int64_t>(plan.frames.size()));
  plan.source_tokens = core.source_tokens;
  plan.vision_tokens = core.vision_tokens;
  plan.tokens_exact = !request.text || request.text->source_tokens >= 0;
  plan.context = core.context;
  plan.kv_bytes_per_token = kv_bytes_per_token(request.model, request.kv_precision);
  plan.devices = core.devices;
  plan.fits = core.fits;
  if (!plan.fits) {
    plan.problem = "It does not fit: " + core.problem + ".";
    suggest(request, plan);
  }
  if (request.devices.kind == DeviceKind::cpu || request.throughput.measured_for_gpu) {
    plan.seconds = estimate_seconds(request, plan);
  }
  return plan;
}

}  // namespace lwm
