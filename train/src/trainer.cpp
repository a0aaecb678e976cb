#include "lwm/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "atomic_file.h"
#include "lwm/error.h"
#include "lwm/safetensors.h"

namespace lwm::train {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kRecipeFormat = "lwm-recipe";
constexpr const char* kCheckpointFormat = "lwm-train-checkpoint";
constexpr int kVersion = 1;

Error config_error(const std::string& source, const std::string& what) {
  return Error(ErrorKind::config, "recipe '" + source + "': " + what);
}

DataSpec parse_data(const json& j, const fs::path& base_dir, const std::string& where) {
  DataSpec d;
  d.weight = j.value("weight", 1.0);
  if (j.contains("copy_task")) {
    const json& c = j.at("copy_task");
    CopyTask t;
    t.low = c.value("low", t.low);
    t.high = c.value("high", t.high);
    t.separator = c.value("separator", t.separator);
    t.min_length = c.value("min_length", t.min_length);
    t.max_length = c.value("max_length", t.max_length);
    t.seed = c.value("seed", t.seed);
    d.copy_task = t;
    return d;
  }
  if (!j.contains("path")) throw Error(ErrorKind::config, where + " needs 'path' or 'copy_task'");
  const fs::path path = j.at("path").get<std::string>();
  d.path = path.is_absolute() ? path : base_dir / path;
  FieldFormat& f = d.format;
  f.fields = j.value("fields", std::string());
  f.fields_from_example = j.value("fields_from_example", std::string());
  f.fields_index = j.value("fields_index", f.fields_index);
  f.subfield_separator = j.value("subfield_separator", f.subfield_separator);
  f.add_bos_token = j.value("add_bos_token", f.add_bos_token);
  f.add_eos_token = j.value("add_eos_token", f.add_eos_token);
  f.prepend_text = j.value("prepend_text", f.prepend_text);
  f.max_frames = j.value("max_n_frames", f.max_frames);
  f.tokens_per_frame = j.value("n_tokens_per_frame", f.tokens_per_frame);
  if (f.fields.empty() && f.fields_from_example.empty()) {
    throw Error(ErrorKind::config, where + " needs 'fields' or 'fields_from_example'");
  }
  return d;
}

Stage parse_stage(const json& j, const fs::path& base_dir, const std::string& where) {
  Stage s;
  s.name = j.at("name").get<std::string>();
  s.context_length = j.at("context_length").get<std::int64_t>();
  s.rope_theta = j.at("rope_theta").get<double>();
  s.batch_tokens = j.at("batch_tokens").get<std::int64_t>();
  s.micro_batch_tokens = j.value("micro_batch_tokens", s.batch_tokens);
  s.schedule.kind = parse_schedule(j.value("schedule", std::string("constant")));
  s.schedule.peak = j.at("learning_rate").get<double>();
  s.schedule.end = j.value("end_learning_rate", s.schedule.peak);
  s.schedule.warmup_steps = j.value("warmup_steps", std::int64_t{0});
  if (j.contains("steps")) {
    s.steps = j.at("steps").get<std::int64_t>();
  } else if (j.contains("tokens")) {
    const auto tokens = j.at("tokens").get<double>();
    s.steps = static_cast<std::int64_t>(
        std::ceil(tokens / static_cast<double>(std::max<std::int64_t>(s.batch_tokens, 1))));
  } else {
    throw Error(ErrorKind::config, where + " needs 'steps' or 'tokens'");
  }
  s.schedule.decay_steps = j.value("decay_steps", s.steps);
  s.adamw.weight_decay = j.value("weight_decay", s.adamw.weight_decay);
  s.adamw.beta1 = j.value("beta1", s.adamw.beta1);
  s.adamw.beta2 = j.value("beta2", s.adamw.beta2);
  s.adamw.epsilon = j.value("epsilon", s.adamw.epsilon);
  s.clip_gradient = j.value("clip_gradient", s.clip_gradient);
  s.packing = parse_packing(j.value("packing", std::string("masked")));
  s.init = j.value("init", s.init);
  s.vision_vocab_size = j.value("vision_vocab_size", s.vision_vocab_size);
  if (s.init != "previous" && s.init != "random") {
    const fs::path p = s.init;
    s.init = (p.is_absolute() ? p : base_dir / p).string();
  }
  const json& data = j.at("data");
  for (std::size_t i = 0; i < data.size(); ++i) {
    s.data.push_back(parse_data(data[i], base_dir, where + " data[" + std::to_string(i) + "]"));
  }
  if (s.context_length <= 0 || s.batch_tokens <= 0 || s.micro_batch_tokens <= 0 || s.steps <= 0 ||
      s.micro_batch_tokens % s.context_length != 0 || s.batch_tokens % s.micro_batch_tokens != 0) {
    throw Error(ErrorKind::config,
                where +
                    ": context_length, batch_tokens, micro_batch_tokens and steps must be "
                    "positive, micro_batch_tokens a multiple of context_length and "
                    "batch_tokens a multiple of micro_batch_tokens");
  }
  if (s.data.empty()) throw Error(ErrorKind::config, where + " has no data");
  return s;
}

std::string clock(double seconds) {
  if (seconds < 0) return "?";
  const auto s = static_cast<std::int64_t>(seconds);
  char text[32];
  std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  return text;
}

std::unique_ptr<ExampleSource> build_data(const Stage& stage, const Recipe& recipe,
                                          const ModelConfig& model,
                                          const std::shared_ptr<const Tokenizer>& tokenizer,
                                          std::size_t stage_index) {
  std::vector<std::unique_ptr<ExampleSource>> sources;
  std::vector<double> weights;
  for (const DataSpec& d : stage.data) {
    if (d.copy_task) {
      CopyTask t = *d.copy_task;
      t.bos_id = model.bos_token_id;
      t.eos_id = model.eos_token_id;
      sources.push_back(std::make_unique<CopyTaskSource>(t));
    } else {
      ExampleProcessor processor(d.format, tokenizer, model.bos_token_id, model.eos_token_id);
      sources.push_back(std::make_unique<JsonlSource>(d.path, std::move(processor)));
    }
    weights.push_back(d.weight);
  }
  return std::make_unique<MixtureSource>(std::move(sources), weights,
                                         recipe.seed * 1000003 + stage_index);
}

fs::path checkpoint_dir(const fs::path& out, std::int64_t global_step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(global_step));
  return out / "checkpoints" / name;
}

struct RunState {
  std::size_t stage = 0;
  std::int64_t stage_step = 0;
  std::int64_t global_step = 0;
  json data;  // packer state inside a stage; null at a stage boundary
};

void save_checkpoint(const fs::path& out, const Recipe& recipe, const RunState& state,
                     TrainableModel& model, AdamW& adamw) {
  // Files go to a side directory first; it takes the checkpoint's name (replacing one of the same
  // step, written at a stage boundary after a stop) and only then gets its DONE marker, so a crash
  // at any point leaves either no checkpoint of this step or a complete one.
  const fs::path dir = checkpoint_dir(out, state.global_step);
  fs::path partial = dir;
  partial += ".partial";
  fs::remove_all(partial);
  fs::create_directories(partial);
  model.save(partial, DType::f32);
  const auto n = static_cast<std::int64_t>(adamw.first_moment().size());
  write_safetensors(
      partial / "optimizer.safetensors",
      {{"adamw.m", Tensor::view(DType::f32, {n}, adamw.first_moment().data(), nullptr)},
       {"adamw.v", Tensor::view(DType::f32, {n}, adamw.second_moment().data(), nullptr)}},
      {{"format", kCheckpointFormat}});
  const json j = {{"format", kCheckpointFormat},    {"version", kVersion},
                  {"recipe", recipe.name},          {"stage", state.stage},
                  {"stage_step", state.stage_step}, {"global_step", state.global_step},
                  {"adamw_steps", adamw.steps()},   {"data", state.data}};
  write_file_atomically(partial / "state.json", j.dump(2) + "\n");
  fs::remove_all(dir);
  fs::rename(partial, dir);
  // Complete only now (design.md: checkpoints are complete only when their marker is written).
  write_file_atomically(dir / "DONE",
                        std::string(kCheckpointFormat) + " " + std::to_string(kVersion) + "\n");
  // Keep the newest few complete checkpoints.
  std::vector<fs::path> complete;
  for (const auto& entry : fs::directory_iterator(out / "checkpoints")) {
    if (fs::exists(entry.path() / "DONE")) complete.push_back(entry.path());
  }
  std::sort(complete.begin(), complete.end());
  for (std::size_t i = 0;
       i + static_cast<std::size_t>(std::max<std::int64_t>(recipe.keep_checkpoints, 1)) <
       complete.size();
       ++i) {
    fs::remove_all(complete[i]);
  }
}

}  // namespace

Recipe Recipe::from_json(const json& j, const fs::path& base_dir, const std::string& source) {
  try {
    if (j.value("format", std::string()) != kRecipeFormat) {
      throw config_error(source, "'format' must be \"" + std::string(kRecipeFormat) + "\"");
    }
    if (j.value("version", 0) != kVersion)
      throw config_error(source, "unsupported 'version' (expected 1)");
    Recipe r;
    r.name = j.value("name", std::string("recipe"));
    r.seed = j.value("seed", std::uint64_t{0});
    r.checkpoint_every = j.value("checkpoint_every", std::int64_t{0});
    r.keep_checkpoints = j.value("keep_checkpoints", std::int64_t{2});
    if (j.contains("tokenizer")) {
      const fs::path t = j.at("tokenizer").get<std::string>();
      r.tokenizer = t.is_absolute() ? t : base_dir / t;
    }
    const json& model = j.at("model");
    if (model.contains("from")) {
      const fs::path p = model.at("from").get<std::string>();
      r.init_model = p.is_absolute() ? p : base_dir / p;  // its config is read when the run starts
    } else if (model.contains("preset")) {
      r.model = ModelConfig::preset(model.at("preset").get<std::string>());
    } else {
      r.model = ModelConfig::from_json(model.at("config"), source + " model.config");
    }
    const json& stages = j.at("stages");
    if (!stages.is_array() || stages.empty())
      throw config_error(source, "'stages' must be a non-empty list");
    for (std::size_t i = 0; i < stages.size(); ++i) {
      r.stages.push_back(
          parse_stage(stages[i], base_dir, "recipe '" + source + "' stage " + std::to_string(i)));
    }
    return r;
  } catch (const json::exception& e) {
    throw config_error(source, e.what());
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::config || e.kind() == ErrorKind::io) throw;
    throw config_error(source, e.what());
  }
}

Recipe Recipe::load(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorKind::io, "cannot open the recipe '" + path.string() + "'");
  const json j = json::parse(in, nullptr, false);
  if (j.is_discarded()) throw config_error(path.string(), "not valid JSON");
  return from_json(j, path.parent_path(), path.string());
}

std::string format_step(const StepReport& r, const std::string& stage_name) {
  char text[256];
  std::snprintf(text, sizeof text,
                "step %lld/%lld stage %s loss %.4f lr %.2e grad_norm %.4f tok/s %.0f eta %s",
                static_cast<long long>(r.global_step), static_cast<long long>(r.total_steps),
                stage_name.c_str(), r.loss, r.learning_rate, r.grad_norm, r.tokens_per_second,
                clock(r.eta_seconds).c_str());
  return text;
}

fs::path latest_complete_checkpoint(const fs::path& out) {
  const fs::path dir = out / "checkpoints";
  if (!fs::is_directory(dir)) return {};
  fs::path best;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (fs::exists(entry.path() / "DONE") && (best.empty() || entry.path() > best))
      best = entry.path();
  }
  return best;
}

std::pair<double, double> optimizer_step(TrainableModel& model, AdamW& adamw,
                                         const std::vector<Batch>& micro_batches, double lr,
                                         double clip_gradient) {
  model.zero_gradients();
  double loss = 0.0;
  for (const Batch& b : micro_batches) loss += model.forward_backward(b);
  const auto k = static_cast<float>(micro_batches.size());
  for (float& g : model.gradients()) g /= k;
  const double norm = clip_by_global_norm(model.gradients(), clip_gradient);
  adamw.step(model.parameters(), model.gradients(), lr);
  return {loss / k, norm};
}

StepReport run_recipe(const Recipe& recipe, const TrainerOptions& options) {
  const fs::path& out = options.output_dir;
  RunState state;
  std::optional<TrainableModel> model;
  std::optional<AdamW> adamw;
  if (options.resume) {
    const fs::path ckpt = latest_complete_checkpoint(out);
    if (ckpt.empty()) {
      throw Error(ErrorKind::io, "no complete checkpoint under '" + (out / "checkpoints").string() +
                                     "' to resume from");
    }
    std::ifstream in(ckpt / "state.json");
    const json j = json::parse(in, nullptr, false);
    if (j.is_discarded() || j.value("format", std::string()) != kCheckpointFormat ||
        j.value("version", 0) != kVersion) {
      throw Error(ErrorKind::file_format,
                  "checkpoint '" + ckpt.string() + "' has no valid state.json");
    }
    if (j.value("recipe", std::string()) != recipe.name) {
      throw Error(ErrorKind::invalid_argument,
                  "checkpoint '" + ckpt.string() + "' belongs to the recipe '" +
                      j.value("recipe", std::string()) + "', not '" + recipe.name + "'");
    }
    state.stage = j.at("stage").get<std::size_t>();
    state.stage_step = j.at("stage_step").get<std::int64_t>();
    state.global_step = j.at("global_step").get<std::int64_t>();
    state.data = j.at("data");
    model.emplace(TrainableModel::load(ckpt));
    adamw.emplace(model->parameters().size(), AdamWOptions{});
    const SafetensorsFile opt(ckpt / "optimizer.safetensors");
    const auto m = opt.tensor("adamw.m").to_floats(), v = opt.tensor("adamw.v").to_floats();
    if (m.size() != adamw->first_moment().size() || v.size() != m.size()) {
      throw Error(ErrorKind::file_format,
                  "checkpoint '" + ckpt.string() + "': optimizer state does not match the model");
    }
    adamw->first_moment() = m;
    adamw->second_moment() = v;
    adamw->set_steps(j.at("adamw_steps").get<std::int64_t>());
  } else if (!latest_complete_checkpoint(out).empty()) {
    throw Error(ErrorKind::invalid_argument,
                "'" + out.string() +
                    "' already holds checkpoints; resume with --resume or choose another output");
  }
  fs::create_directories(out / "checkpoints");

  std::shared_ptr<const Tokenizer> tokenizer;
  if (!recipe.tokenizer.empty()) tokenizer = std::make_shared<Tokenizer>(recipe.tokenizer);
  std::int64_t total_steps = 0;
  for (const Stage& s : recipe.stages) total_steps += s.steps;

  StepReport report;
  report.total_steps = total_steps;
  report.global_step = state.global_step;
  const auto run_start = std::chrono::steady_clock::now();
  std::int64_t steps_this_run = 0;

  for (std::size_t si = state.stage; si < recipe.stages.size(); ++si) {
    const Stage& stage = recipe.stages[si];
    const bool mid_stage = state.stage == si && state.stage_step > 0;
    if (!mid_stage) {
      // Initial weights of the stage (spec §5.8 "init from").
      if (stage.init == "random" ||
          (stage.init == "previous" && !model && recipe.init_model.empty())) {
        model.emplace(recipe.init_model.empty() ? recipe.model
                                                : ModelConfig::load(recipe.init_model));
        model->initialize(recipe.seed + si);
      } else if (stage.init == "previous" && !model) {
        model.emplace(TrainableModel::load(recipe.init_model));
      } else if (stage.init != "previous") {
        model.emplace(TrainableModel::load(stage.init));
      }
      const std::int64_t vision_vocab =
          stage.vision_vocab_size > 0 ? stage.vision_vocab_size : recipe.model.vision_vocab_size;
      if (vision_vocab > 0 && !model->config().has_vision()) {
        model->add_vision(vision_vocab, recipe.seed + 7919 * (si + 1));
      }
      adamw.emplace(model->parameters().size(), stage.adamw);
      state = {si, 0, state.global_step, json()};
    }
    adamw->set_options(stage.adamw);
    model->set_rope_theta(stage.rope_theta);
    model->set_max_sequence_length(
        std::max(model->config().max_sequence_length, stage.context_length));

    const std::unique_ptr<ExampleSource> source =
        build_data(stage, recipe, model->config(), tokenizer, si);
    Packer packer(*source, {stage.packing, stage.micro_batch_tokens / stage.context_length,
                            stage.context_length, model->config().has_vision(),
                            model->config().pad_token_id});
    if (mid_stage && !state.data.is_null()) packer.restore(state.data);
    report.stage = si;

    while (state.stage_step < stage.steps) {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<Batch> micro;
      for (std::int64_t k = 0; k < stage.micro_batches(); ++k) micro.push_back(packer.next());
      // The update at optimizer count c uses the schedule's value at c (optax).
      const double lr = stage.schedule.at(adamw->steps());
      const auto [loss, norm] = optimizer_step(*model, *adamw, micro, lr, stage.clip_gradient);
      ++state.stage_step;
      ++state.global_step;
      ++steps_this_run;
      state.data = packer.state();
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
      report.global_step = state.global_step;
      report.stage_step = state.stage_step;
      report.loss = loss;
      report.learning_rate = stage.schedule.at(adamw->steps());  // logged post-update (spec §5.5)
      report.grad_norm = norm;
      report.tokens_per_second =
          seconds > 0 ? static_cast<double>(stage.batch_tokens) / seconds : 0.0;
      report.elapsed_seconds = elapsed;
      report.eta_seconds = elapsed / static_cast<double>(steps_this_run) *
                           static_cast<double>(total_steps - state.global_step);
      if (options.log != nullptr) *options.log << format_step(report, stage.name) << std::endl;
      const bool go_on = !options.on_step || options.on_step(report);
      const bool stop = options.stop_after_steps >= 0 && steps_this_run >= options.stop_after_steps;
      const bool periodic =
          recipe.checkpoint_every > 0 && state.global_step % recipe.checkpoint_every == 0;
      if (!go_on || stop || (periodic && state.stage_step < stage.steps)) {
        save_checkpoint(out, recipe, state, *model, *adamw);
      }
      if (!go_on) {
        throw Error(ErrorKind::cancelled, "training cancelled at step " +
                                              std::to_string(state.global_step) +
                                              "; checkpoint saved, continue with --resume");
      }
      if (stop) return report;
    }
    // End of stage: a model directory for `lwm ask`, and a checkpoint at the stage boundary.
    model->save(out / stage.name, DType::f32);
    state = {si + 1, 0, state.global_step, json()};
    save_checkpoint(out, recipe, state, *model, *adamw);
  }
  return report;
}

void export_model(const fs::path& checkpoint, const fs::path& tokenizer_model, const fs::path& out,
                  DType dtype, std::int64_t max_sequence_length) {
  if (!fs::is_regular_file(checkpoint / "model.safetensors") ||
      !fs::is_regular_file(checkpoint / "config.json")) {
    throw Error(ErrorKind::io, "'" + checkpoint.string() +
                                   "' is not a checkpoint: it needs model.safetensors and "
                                   "config.json (use checkpoints/step-N or a stage directory)");
  }
  if (!fs::is_regular_file(tokenizer_model)) {
    throw Error(ErrorKind::io, "tokenizer '" + tokenizer_model.string() + "' does not exist");
  }
  if (fs::exists(out) && !(fs::is_directory(out) && fs::is_empty(out))) {
    throw Error(ErrorKind::invalid_argument,
                "'" + out.string() + "' already exists; export into a new directory");
  }
  TrainableModel model = TrainableModel::load(checkpoint);
  if (max_sequence_length > 0) model.set_max_sequence_length(max_sequence_length);
  StagingDirectory staging(out);
  model.save(staging.path(), dtype);
  fs::copy_file(tokenizer_model, staging.path() / "tokenizer.model");
  staging.commit(out);
}

}  // namespace lwm::train
