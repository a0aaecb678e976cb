// One training batch as the model sees it: rows of `length` input tokens, the target of each
// (the next token of its example), which vocabulary each belongs to, the weight of each target in
// the loss, and the per-token segment ids and positions of masked sequence packing (spec §5.3).
#pragma once

#include <cstdint>
#include <vector>

namespace lwm::train {

struct Batch {
  std::int64_t rows = 0;
  std::int64_t length = 0;
  // All [rows · length], row-major.
  std::vector<std::int32_t> inputs;
  std::vector<std::int32_t> targets;
  std::vector<std::uint8_t> input_vision;   // 1 → the input id is a vision id (spec §2.2)
  std::vector<std::uint8_t> target_vision;  // 1 → the target is predicted by the vision head
  // The batch loss is Σ_t loss_weights[t] · cross_entropy_t; the packer folds the loss masks,
  // the per-row or per-segment normalisation and the vision/text weighting of §5.4 into them.
  std::vector<float> loss_weights;
  // Equal ids attend to each other (with the causal mask); empty → the whole row is one segment.
  std::vector<std::int32_t> segments;
  std::vector<std::int64_t> positions;  // RoPE positions; empty → 0 … length−1 in every row

  std::int64_t tokens() const noexcept { return rows * length; }
};

}  // namespace lwm::train
