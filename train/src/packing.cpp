#include "lwm/train/packing.h"

#include <algorithm>
#include <map>

#include "lwm/error.h"

namespace lwm::train {

using nlohmann::json;

PackingMode parse_packing(const std::string& name) {
  if (name == "masked") return PackingMode::masked;
  if (name == "naive") return PackingMode::naive;
  throw Error(ErrorKind::invalid_argument,
              "unknown packing '" + name + "' (expected masked or naive)");
}

Packer::Packer(ExampleSource& source, PackingOptions options) : source_(source), options_(options) {
  if (options_.rows <= 0 || options_.length <= 0) {
    throw Error(ErrorKind::invalid_argument, "packing needs positive rows and length");
  }
}

Batch Packer::next() {
  return options_.mode == PackingMode::masked ? next_masked() : next_naive();
}

namespace {

Batch empty_batch(std::int64_t rows, std::int64_t length, std::int32_t pad_id, bool segments) {
  Batch b;
  b.rows = rows;
  b.length = length;
  const auto n = static_cast<std::size_t>(rows * length);
  b.inputs.assign(n, pad_id);
  b.targets.assign(n, pad_id);
  b.input_vision.assign(n, 0);
  b.target_vision.assign(n, 0);
  b.loss_weights.assign(n, 0.0f);
  b.positions.assign(n, 0);
  if (segments) b.segments.assign(n, -1);  // padding is its own segment
  return b;
}

}  // namespace

Batch Packer::next_masked() {
  const std::int64_t length = options_.length;
  Batch b = empty_batch(options_.rows, length, options_.pad_id, true);
  std::vector<std::uint8_t> loss_mask(b.inputs.size(), 0);
  for (std::int64_t row = 0; row < options_.rows; ++row) {
    std::int64_t used = 0;
    std::int32_t segment = 0;
    for (;;) {
      if (!pending_) {
        pending_state_ = source_.state();
        pending_ = source_.next();
      }
      const Example& e = *pending_;
      // An example of n+1 tokens gives n (input, target) pairs; longer than a row → cut.
      const std::int64_t pairs =
          std::min<std::int64_t>(static_cast<std::int64_t>(e.tokens.size()) - 1, length);
      if (pairs <= 0) {  // a single token predicts nothing
        pending_.reset();
        continue;
      }
      if (used > 0 && used + pairs > length) break;  // starts the next row
      for (std::int64_t i = 0; i < pairs; ++i) {
        const auto t = static_cast<std::size_t>(row * length + used + i);
        const auto k = static_cast<std::size_t>(i);
        b.inputs[t] = e.tokens[k];
        b.input_vision[t] = e.vision_mask[k];
        b.targets[t] = e.tokens[k + 1];
        b.target_vision[t] = e.vision_mask[k + 1];
        loss_mask[t] = e.loss_mask[k + 1];
        b.segments[t] = segment;
        b.positions[t] = i;  // positions restart per segment (spec §5.3 [ours])
      }
      used += pairs;
      ++segment;
      pending_.reset();
      if (used == length) break;
    }
  }
  assign_weights(b, loss_mask);
  return b;
}

Batch Packer::next_naive() {
  const std::int64_t length = options_.length;
  const std::int64_t needed = options_.rows * length + 1;
  auto buffered = [&] {
    std::int64_t total = -used_of_first_;
    for (const auto& [e, state] : buffer_) total += static_cast<std::int64_t>(e.tokens.size());
    return total;
  };
  while (buffered() < needed) {
    json state = source_.state();
    buffer_.emplace_back(source_.next(), std::move(state));
  }
  // The stream from the first unused token on, as (example, token) coordinates.
  std::vector<std::pair<std::size_t, std::size_t>> stream;
  stream.reserve(static_cast<std::size_t>(needed));
  for (std::size_t ex = 0; ex < buffer_.size() && static_cast<std::int64_t>(stream.size()) < needed;
       ++ex) {
    const std::size_t first = ex == 0 ? static_cast<std::size_t>(used_of_first_) : 0;
    for (std::size_t k = first;
         k < buffer_[ex].first.tokens.size() && static_cast<std::int64_t>(stream.size()) < needed;
         ++k) {
      stream.emplace_back(ex, k);
    }
  }
  Batch b = empty_batch(options_.rows, length, options_.pad_id, false);
  std::vector<std::uint8_t> loss_mask(b.inputs.size(), 0);
  for (std::int64_t row = 0; row < options_.rows; ++row) {
    for (std::int64_t i = 0; i < length; ++i) {
      const auto t = static_cast<std::size_t>(row * length + i);
      const auto [ie, ik] = stream[t];
      const auto [te, tk] = stream[t + 1];
      b.inputs[t] = buffer_[ie].first.tokens[ik];
      b.input_vision[t] = buffer_[ie].first.vision_mask[ik];
      b.targets[t] = buffer_[te].first.tokens[tk];
      b.target_vision[t] = buffer_[te].first.vision_mask[tk];
      loss_mask[t] = buffer_[te].first.loss_mask[tk];
      b.positions[t] = i;
    }
  }
  // Advance by rows·length tokens: the last target becomes the next batch's first input.
  const auto [next_example, next_token] = stream[static_cast<std::size_t>(options_.rows * length)];
  for (std::size_t i = 0; i < next_example; ++i) buffer_.pop_front();
  used_of_first_ = static_cast<std::int64_t>(next_token);
  assign_weights(b, loss_mask);
  return b;
}

// Spec §5.4, per unit (a segment in masked packing, a row in naive): text and vision losses each
// normalised by their own mask count, combined 0.5/0.5 for vision models; units averaged.
void Packer::assign_weights(Batch& b, const std::vector<std::uint8_t>& loss_mask) const {
  std::map<std::pair<std::int64_t, std::int32_t>, std::pair<double, double>>
      counts;  // unit → (text, vision)
  auto unit_of = [&](std::size_t t) {
    const auto row = static_cast<std::int64_t>(t) / b.length;
    return std::pair{row, b.segments.empty() ? 0 : b.segments[t]};
  };
  for (std::size_t t = 0; t < b.inputs.size(); ++t) {
    if (!b.segments.empty() && b.segments[t] < 0) continue;  // padding is no unit
    auto& c = counts[unit_of(t)];
    if (loss_mask[t] != 0) (b.target_vision[t] != 0 ? c.second : c.first) += 1.0;
  }
  if (counts.empty()) return;
  const double units = static_cast<double>(counts.size());
  for (std::size_t t = 0; t < b.inputs.size(); ++t) {
    if (loss_mask[t] == 0 || (!b.segments.empty() && b.segments[t] < 0)) continue;
    const auto& c = counts[unit_of(t)];
    const bool vision = b.target_vision[t] != 0;
    const double share = 1.0 / std::max(vision ? c.second : c.first, 1e-10);
    const double head_weight = options_.vision_model ? 0.5 : 1.0;
    b.loss_weights[t] = static_cast<float>(head_weight * share / units);
  }
}

json Packer::state() const {
  if (options_.mode == PackingMode::masked) {
    return {{"source", pending_ ? pending_state_ : source_.state()}, {"used", 0}};
  }
  if (buffer_.empty()) return {{"source", source_.state()}, {"used", 0}};
  return {{"source", buffer_.front().second}, {"used", used_of_first_}};
}

void Packer::restore(const json& state) {
  pending_.reset();
  buffer_.clear();
  source_.restore(state.at("source"));
  used_of_first_ = 0;
  const auto used = state.at("used").get<std::int64_t>();
  if (options_.mode == PackingMode::naive && used > 0) {
    json s = source_.state();
    buffer_.emplace_back(source_.next(), std::move(s));
    used_of_first_ = used;
  }
}

}  // namespace lwm::train
