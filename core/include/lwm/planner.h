// The ingest plan (design.md step 2): before anything is decoded or computed, what a source will
// cost on the chosen devices — the frames sampled and their times, the prompt's tokens, the
// memory each device holds (weights replicated, the sequence and its KV cache sharded across the
// ring's ranks, spec/ring-attention.md), whether that fits, what would fit when it does not, and
// an estimated time. Pure and cheap: no decoding, no weights loaded, so a GUI can re-plan on
// every change of a spin box.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lwm/chat_template.h"
#include "lwm/devices.h"
#include "lwm/model_config.h"
#include "lwm/tokenizer.h"
#include "lwm/video.h"
#include "lwm/vqgan.h"

namespace lwm {

// How the KV cache is stored. int8 keeps one float32 scale per token, layer and key/value head
// beside the 8-bit values (issue 3's per-block scales, one block per head row).
enum class KvPrecision { f32, bf16, int8 };
const char* to_string(KvPrecision precision) noexcept;    // "f32", "bf16", "int8"
KvPrecision parse_kv_precision(const std::string& name);  // throws Error(invalid_argument)
// K and V of one token over every layer.
std::int64_t kv_bytes_per_token(const ModelConfig& config, KvPrecision precision) noexcept;

// The token layout of a session's source prompt, apart from the source itself: fixed tokens
// (template text, <vision> and </vision>) plus, for a video, tokens per frame (its codes and one
// delimiter, spec §2.3). Exact: computed from the same rendering a Session uses.
struct PromptLayout {
  std::int64_t fixed_tokens = 0;
  std::int64_t tokens_per_frame = 0;  // 0 for text
};
// Layout of a video session (`template_name` empty → the session default) with `vqgan`'s frames.
PromptLayout video_prompt_layout(const Tokenizer& tokenizer, const VqganConfig& vqgan,
                                 const std::string& template_name = {});
// Exact source tokens of a text session over `text` (tokenizes the text once; not needed on
// every re-plan: the count does not depend on the plan's other choices).
std::int64_t text_source_tokens(const Tokenizer& tokenizer, const std::string& text,
                                const std::string& template_name = {});

// What a video probe (video.h probe_video) says, as far as planning needs it.
struct VideoSourceInfo {
  double duration_seconds = 0.0;
  double frame_rate = 0.0;  // frames per second (average); > 0
  std::int64_t frame_count = 0;
  int width = 0;  // decoded size, for the decoding-time estimate
  int height = 0;
};

struct TextSourceInfo {
  std::int64_t source_tokens = -1;  // exact (text_source_tokens()); -1: estimate from bytes
  std::int64_t bytes = 0;
  // For the estimate only. LLaMA's SentencePiece averages about 4 bytes per token on English
  // prose; the plan says the count is an estimate.
  double bytes_per_token = 4.0;
};

// Measured speeds for the time estimate. Defaults: this project's CPU benchmarks on a 2-core
// Intel Xeon @ 2.80 GHz (tests/bench/RESULTS.md, 2026-11-23); see planner.cpp for how each
// number is derived. Prefill divides across the ring's ranks (ideal scaling assumed).
struct Throughput {
  double index_frames_per_second = 71'500.0;     // packet index: 108,000 frames in 1.51 s
  double decode_pixels_per_second = 3.79e8;      // sequential decode 411 frames/s at 1280×720
  std::int64_t frames_decoded_per_sample = 125;  // half a 250-frame GOP decoded per sparse sample
  double vqgan_flops_per_second = 124e9;         // lwm_bench_vqgan encode, run 1
  double linear_flops_per_second = 41.5e9;       // lwm_bench_cpu run 3, fitted with attention
  double attention_flops_per_second = 86e9;      //   from its 2K and 8K prefill times
  // false when the devices are GPUs and no GPU numbers were given: the plan gives no time.
  bool measured_for_gpu = false;
};

struct PlanRequest {
  ModelConfig model;
  // Bytes of the model's weights on each device; 0 → parameter_count() × the stored dtype
  // (bf16 on GPUs, design.md "Precision").
  std::int64_t weight_bytes = 0;
  std::optional<VqganConfig> vqgan;  // required with a video; its weights sit on the first device
  PromptLayout layout;

  // The source: exactly one of these.
  std::optional<VideoSourceInfo> video;
  std::optional<TextSourceInfo> text;

  // Choices. Frames: uniform `frames` (spec §3.1), or one per 1/fps seconds when fps > 0.
  std::int64_t frames = 8;
  double fps = 0.0;
  KvPrecision kv_precision = KvPrecision::f32;
  std::int64_t context = 0;  // 0 → source + answer_reserve, at most the model's maximum
  std::int64_t answer_reserve = 1024;
  std::int64_t prefill_chunk = 512;
  DeviceSelection devices;  // with the memory each device has free
  // Every device there is, to suggest more GPUs when the chosen ones are too small.
  std::vector<DeviceInfo> all_devices;
  Throughput throughput;
};

struct PlannedFrame {
  std::int64_t frame_index = 0;
  double time_seconds = 0.0;
};

struct DevicePlan {
  std::string device;               // "cpu", "cuda:1"
  int ranks = 1;                    // sequence-parallel ranks it runs (cpu:N runs N in one memory)
  std::int64_t context_tokens = 0;  // KV-cache rows it holds
  std::int64_t weight_bytes = 0;    // model (and, on the first device of a video, the VQGAN)
  std::int64_t kv_cache_bytes = 0;
  std::int64_t workspace_bytes = 0;  // activations of one prefill chunk per rank (estimate)
  std::int64_t total_bytes = 0;
  std::int64_t available_bytes = 0;
  bool fits = false;
};

struct StageSeconds {
  double decoding = 0.0;
  double tokenizing = 0.0;
  double prefill = 0.0;
  double total() const noexcept { return decoding + tokenizing + prefill; }
};

struct IngestPlan {
  std::vector<PlannedFrame> frames;  // empty for text
  std::int64_t source_tokens = 0;    // the session's question-independent prompt
  std::int64_t vision_tokens = 0;
  bool tokens_exact = true;  // false when a text's tokens were estimated from bytes
  std::int64_t context = 0;  // KV-cache capacity over all ranks
  std::int64_t kv_bytes_per_token = 0;
  std::vector<DevicePlan> devices;
  bool fits = false;
  // When it does not fit: what is wrong and what would fit, as sentences for the user.
  std::string problem;
  std::string suggestion;
  // The same suggestions as numbers (-1 / nullopt where none applies).
  std::int64_t max_frames = -1;  // the most frames that fit with the other choices unchanged
  double max_fps = -1.0;         // the highest rate that fits (fps choices only)
  std::optional<KvPrecision> smaller_kv_that_fits;
  int gpus_that_fit = -1;  // how many of the machine's GPUs (largest first) would hold it
  std::optional<StageSeconds> seconds;  // absent when no throughput is known for the devices
};

// Requests with the source and layout filled in (the caller sets the choices and devices):
// a video from its probe and the model's VQGAN config, a text with its exact token count.
VideoSourceInfo video_source_info(const VideoInfo& probe);
PlanRequest plan_request_for_video(const ModelConfig& model, const VqganConfig& vqgan,
                                   const Tokenizer& tokenizer, const VideoInfo& probe,
                                   const std::string& template_name = {});
PlanRequest plan_request_for_text(const ModelConfig& model, const Tokenizer& tokenizer,
                                  const std::string& text, const std::string& template_name = {});

// Throws Error(invalid_argument) for an impossible request (no source or two, a video without a
// VQGAN, non-positive frames or rates, no device); everything that is merely too big is a plan
// with fits = false.
IngestPlan plan_ingest(const PlanRequest& request);

// Frames a video choice samples, as sample_video_frames() will for a constant-rate video (uniform:
// exactly; rate: from the probe's frame rate).
std::vector<PlannedFrame> plan_frames(const VideoSourceInfo& video, std::int64_t frames,
                                      double fps);

}  // namespace lwm
