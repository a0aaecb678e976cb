// `lwm convert`: turns LWM's released checkpoints and Hugging Face LLaMA directories into our model
// directory (config.json, safetensors shards with an index, tokenizer.model, vqgan.safetensors).
//
// Sources (detected from the bytes, not the name):
//   - a tux streaming params file (spec §4.1), stacked or per-layer, bf16/f16/f32, chunked or not;
//   - a tux train-state file (§4.2 trainstate_params: only the params/params/ leaves are kept);
//   - a flax msgpack params file (§4.2 flax_params);
//   - a directory holding one of those (`params`, `streaming_params`, `streaming_train_state`),
//     whose `tokenizer.model` and `vqgan` are picked up too;
//   - a VQGAN pickle (§3.8) on its own: the result holds only vqgan.safetensors;
//   - a Hugging Face LlamaForCausalLM directory with safetensors weights, or with the
//     pytorch_model*.bin files (torch.save zips) of LWM's PyTorch releases (§1.6).
// JAX tensors keep their tree paths joined by '.' and their layout (no re-layout; the model
// loader runs both conventions). Every tensor's shape is checked against the config and missing
// or extra tensors are reported before anything is written. Data are streamed from the memory-
// mapped source (or, for PyTorch zips, read one tensor at a time) into the output, so memory stays
// bounded whatever the model size; the result is
// built beside the destination and renamed into place, so a failure or a cancel leaves nothing.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "lwm/model_config.h"
#include "lwm/progress.h"

namespace lwm {

enum class ConvertSource : std::uint8_t {
  tux_params,
  tux_train_state,
  flax_params,
  vqgan_pickle,
  hf_directory
};
const char* convert_source_name(ConvertSource source) noexcept;  // "tux params", ...

struct ConvertOptions {
  std::filesystem::path vqgan;      // VQGAN pickle to include; default: `vqgan` beside a tux file
  std::filesystem::path tokenizer;  // default: tokenizer.model beside the source
  // The config: an LWM preset ("7b"), or a config.json (ours, LWM's or Hugging Face's). With
  // neither, shapes come from the weights and the rest from the LWM preset of the same size.
  std::string preset;
  std::filesystem::path config_file;
  std::optional<double> rope_theta;  // LWM's long-context models need theta (spec §5.8)
  std::optional<std::int64_t> max_sequence_length;
  std::int64_t max_shard_bytes = std::int64_t{4} << 30;
};

struct ConvertResult {
  ConvertSource source = ConvertSource::tux_params;
  ModelConfig config;                  // as written (meaningless for a VQGAN-only conversion)
  std::int64_t vision_vocab_size = 0;  // 0 for a text-only model
  std::int64_t tensors = 0;            // tensors written, VQGAN included
  std::int64_t bytes = 0;              // tensor bytes written
  std::int64_t shards = 0;
  bool vqgan = false;
  std::vector<std::string> notes;  // what the user should know: assumed values, skipped leaves
};

// Converts `source` into the new directory `destination` (which must not exist, or be empty).
// Progress counts bytes; returning false cancels (Error cancelled). Throws Error naming the file,
// key and shape at fault.
ConvertResult convert_model(const std::filesystem::path& source,
                            const std::filesystem::path& destination,
                            const ConvertOptions& options = {},
                            const ProgressCallback& progress = {});

}  // namespace lwm
