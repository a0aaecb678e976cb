// Optimisation as LWM's trainer does it (spec §5.5, optax via tux): clip by global norm, then
// AdamW with decoupled weight decay on every parameter, under a linear warm-up followed by a
// cosine decay or a constant learning rate.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace lwm::train {

// sqrt(Σ g²), summed in double.
double global_norm(std::span<const float> values);
// Scales `gradients` by max_norm / norm when the norm exceeds max_norm (optax
// clip_by_global_norm); returns the norm before clipping. max_norm <= 0 → no clipping.
double clip_by_global_norm(std::span<float> gradients, double max_norm);

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double epsilon = 1e-8;
  double weight_decay = 0.1;
};

class AdamW {
 public:
  AdamW(std::size_t parameters, AdamWOptions options);

  // One update with learning rate lr: m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g²,
  // p ← p − lr·(m̂ / (sqrt(v̂) + ε) + wd·p) with the bias corrections m̂ = m/(1−β1^t), v̂ = v/(1−β2^t).
  void step(std::span<float> parameters, std::span<const float> gradients, double lr);

  const AdamWOptions& options() const noexcept { return options_; }
  void set_options(const AdamWOptions& options) { options_ = options; }
  std::int64_t steps() const noexcept { return steps_; }
  // Moments and step count, for checkpoints.
  std::vector<float>& first_moment() noexcept { return m_; }
  std::vector<float>& second_moment() noexcept { return v_; }
  void set_steps(std::int64_t steps) noexcept { steps_ = steps; }
  // Clears the moments and the step count (a new stage starts a fresh optimiser).
  void reset();

 private:
  AdamWOptions options_;
  std::vector<float> m_, v_;
  std::int64_t steps_ = 0;
};

enum class ScheduleKind : std::uint8_t { constant, cosine };
ScheduleKind parse_schedule(const std::string& name);  // "constant" / "cosine"; throws Error

// optax warmup_cosine_decay_schedule as tux uses it: from 0 to `peak` linearly over
// `warmup_steps`, then cosine down to `end` reached at `decay_steps` (counted from step 0,
// warm-up included) and flat after. Constant = the same warm-up, then `peak` throughout.
struct LearningRateSchedule {
  ScheduleKind kind = ScheduleKind::constant;
  double peak = 0.0;
  double end = 0.0;
  std::int64_t warmup_steps = 0;
  std::int64_t decay_steps = 0;
  double at(std::int64_t step) const;
};

}  // namespace lwm::train
