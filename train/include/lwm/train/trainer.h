// LWM's progressive training (spec §5.7, §5.8) as one headless loop: a recipe lists stages
// (context length, RoPE theta, batch, learning rate and schedule, steps, data mix, initial
// weights); each step accumulates micro-batches, clips, applies AdamW and logs one line; complete-
// or-nothing checkpoints let a run resume exactly where it stopped.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "lwm/model_config.h"
#include "lwm/progress.h"
#include "lwm/train/data.h"
#include "lwm/train/optimizer.h"
#include "lwm/train/packing.h"
#include "lwm/train/trainable_model.h"

namespace lwm::train {

// One data set of a stage's mix: a JSONL file with its field format, or the synthetic copy task.
struct DataSpec {
  std::filesystem::path path;  // JSONL; relative paths are relative to the recipe file
  FieldFormat format;
  std::optional<CopyTask> copy_task;
  double weight = 1.0;
};

struct Stage {
  std::string name;
  std::int64_t context_length = 0;  // tokens per row
  double rope_theta = 10000.0;
  std::int64_t batch_tokens = 0;        // tokens per optimizer step
  std::int64_t micro_batch_tokens = 0;  // tokens per forward/backward (0 → batch_tokens)
  LearningRateSchedule schedule;        // decay_steps 0 → the stage's steps
  std::int64_t steps = 0;               // or derived from `tokens` / batch_tokens
  AdamWOptions adamw;
  double clip_gradient = 1.0;
  PackingMode packing = PackingMode::masked;
  // "previous" (the last stage's result, or the recipe's model for the first stage), "random",
  // or a model directory.
  std::string init = "previous";
  // > 0: give a text model a vision vocabulary of this size at the start of the stage (the
  // text → vision-language switch of spec §5.7/§5.8), initialised normal(0, 0.02).
  std::int64_t vision_vocab_size = 0;
  std::vector<DataSpec> data;

  std::int64_t micro_batches() const { return batch_tokens / micro_batch_tokens; }
};

// The recipe file (JSON, format "lwm-recipe", version 1); see resources/recipes/README.md.
struct Recipe {
  std::string name;
  ModelConfig model;                 // for random initialisation (when init_model is empty)
  std::filesystem::path init_model;  // a model directory to start from instead (may be empty)
  std::filesystem::path tokenizer;   // needed only for text fields
  std::uint64_t seed = 0;
  std::int64_t checkpoint_every = 0;  // steps; 0 → only at the end of each stage and on cancel
  std::int64_t keep_checkpoints = 2;
  std::vector<Stage> stages;

  // Parses and validates; throws Error(config) naming the file and field at fault.
  static Recipe load(const std::filesystem::path& path);
  static Recipe from_json(const nlohmann::json& json, const std::filesystem::path& base_dir,
                          const std::string& source);
};

struct StepReport {
  std::int64_t global_step = 0;  // steps done over all stages
  std::int64_t total_steps = 0;
  std::size_t stage = 0;
  std::int64_t stage_step = 0;
  double loss = 0.0;
  double learning_rate = 0.0;
  double grad_norm = 0.0;
  double tokens_per_second = 0.0;
  double elapsed_seconds = 0.0;
  double eta_seconds = -1.0;
};

// "step 12/300 stage 32k loss 3.2134 lr 4.00e-05 grad_norm 1.2340 tok/s 1234 eta 0:01:23".
std::string format_step(const StepReport& report, const std::string& stage_name);

struct TrainerOptions {
  std::filesystem::path output_dir;
  bool resume = false;          // continue from the newest complete checkpoint in output_dir
  std::ostream* log = nullptr;  // one line per step
  std::function<bool(const StepReport&)> on_step;  // false → checkpoint and cancel
  std::int64_t stop_after_steps = -1;  // stop (with a checkpoint) after this many steps of this run
};

// Runs the recipe. Writes <out>/checkpoints/step-<n>/ (model.safetensors, optimizer.safetensors,
// state.json, config.json, then DONE last) and, after each stage, <out>/<stage name>/ as a model
// directory `lwm ask` can load. Cancel via on_step: saves a checkpoint, then throws
// Error(cancelled). Returns the final report.
StepReport run_recipe(const Recipe& recipe, const TrainerOptions& options);

// The newest checkpoint directory under <out>/checkpoints holding its DONE marker, or empty.
std::filesystem::path latest_complete_checkpoint(const std::filesystem::path& output_dir);

// Turns a checkpoint (`checkpoints/step-N/`, or a stage's model directory) into a model directory
// for `lwm ask` and Model::load: model.safetensors in `dtype` (bf16 to ship), config.json, and the
// tokenizer copied in as tokenizer.model. `max_sequence_length` > 0 sets the config's
// max_position_embeddings (how long a prompt `lwm ask` accepts; RoPE runs past the trained
// context, with whatever quality it has there). Written whole or not at all; refuses a non-empty
// `out`. Throws Error(io) naming a missing checkpoint or tokenizer file.
void export_model(const std::filesystem::path& checkpoint,
                  const std::filesystem::path& tokenizer_model, const std::filesystem::path& out,
                  DType dtype, std::int64_t max_sequence_length = 0);

// One optimizer step over the given micro-batches (gradient accumulation: the gradients of the k
// micro-batch losses are averaged, as optax MultiSteps does), clipping and AdamW at `lr`.
// Returns (mean micro-batch loss, gradient norm before clipping).
std::pair<double, double> optimizer_step(TrainableModel& model, AdamW& adamw,
                                         const std::vector<Batch>& micro_batches, double lr,
                                         double clip_gradient);

}  // namespace lwm::train
