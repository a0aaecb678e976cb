#include "lwm/train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "lwm/error.h"

namespace lwm::train {

double global_norm(std::span<const float> values) {
  double sum = 0.0;
  for (float v : values) sum += static_cast<double>(v) * v;
  return std::sqrt(sum);
}

double clip_by_global_norm(std::span<float> gradients, double max_norm) {
  const double norm = global_norm(gradients);
  if (max_norm > 0.0 && norm > max_norm) {
    const auto scale = static_cast<float>(max_norm / norm);
    for (float& g : gradients) g *= scale;
  }
  return norm;
}

AdamW::AdamW(std::size_t parameters, AdamWOptions options)
    : options_(options), m_(parameters, 0.0f), v_(parameters, 0.0f) {}

void AdamW::reset() {
  std::fill(m_.begin(), m_.end(), 0.0f);
  std::fill(v_.begin(), v_.end(), 0.0f);
  steps_ = 0;
}

void AdamW::step(std::span<float> parameters, std::span<const float> gradients, double lr) {
  if (parameters.size() != m_.size() || gradients.size() != m_.size()) {
    throw Error(ErrorKind::invalid_argument,
                "AdamW: " + std::to_string(parameters.size()) + " parameters and " +
                    std::to_string(gradients.size()) + " gradients for a state of " +
                    std::to_string(m_.size()));
  }
  ++steps_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double correction1 = 1.0 - std::pow(b1, static_cast<double>(steps_));
  const double correction2 = 1.0 - std::pow(b2, static_cast<double>(steps_));
  const auto n = static_cast<std::int64_t>(m_.size());
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    const double g = gradients[static_cast<std::size_t>(i)];
    float& m = m_[static_cast<std::size_t>(i)];
    float& v = v_[static_cast<std::size_t>(i)];
    m = static_cast<float>(b1 * m + (1.0 - b1) * g);
    v = static_cast<float>(b2 * v + (1.0 - b2) * g * g);
    float& p = parameters[static_cast<std::size_t>(i)];
    const double update = (m / correction1) / (std::sqrt(v / correction2) + options_.epsilon);
    p = static_cast<float>(p - lr * (update + options_.weight_decay * p));
  }
}

ScheduleKind parse_schedule(const std::string& name) {
  if (name == "constant") return ScheduleKind::constant;
  if (name == "cosine") return ScheduleKind::cosine;
  throw Error(ErrorKind::invalid_argument,
              "unknown learning-rate schedule '" + name + "' (expected constant or cosine)");
}

double LearningRateSchedule::at(std::int64_t step) const {
  if (step < warmup_steps)
    return peak * static_cast<double>(step) / static_cast<double>(warmup_steps);
  if (kind == ScheduleKind::constant) return peak;
  const std::int64_t span = std::max<std::int64_t>(decay_steps - warmup_steps, 1);
  const double progress =
      std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(span));
  return end + (peak - end) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

}  // namespace lwm::train
