// Batches from examples (spec §5.2-5.4).
//
// masked (the paper's masked sequence packing, our default): whole examples are packed into rows
// of `length` tokens; each example is its own segment (attention stays inside it), its positions
// restart at 0, an example that does not fit in what is left of a row starts the next row (the
// rest is padding with weight 0), and one longer than the row is cut. The loss is normalised per
// segment and averaged over the segments of the batch, so packing gives the loss of unpacked
// training with padding.
//
// naive (the released trainer, kept for comparison): examples are concatenated into one stream;
// each row takes the next `length` tokens as inputs and the following ones as targets; positions
// run 0 … length−1 and attention is causal across example boundaries; the loss is normalised per
// row and averaged over rows.
//
// In both, a vision-language model's loss is 0.5·(vision loss + text loss), each normalised over
// its own targets (§5.4); a text-only model's loss is the text loss.
#pragma once

#include <cstdint>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "lwm/train/batch.h"
#include "lwm/train/data.h"

namespace lwm::train {

enum class PackingMode : std::uint8_t { masked, naive };
PackingMode parse_packing(const std::string& name);  // "masked" / "naive"; throws Error

struct PackingOptions {
  PackingMode mode = PackingMode::masked;
  std::int64_t rows = 1;
  std::int64_t length = 0;
  bool vision_model = false;
  std::int32_t pad_id = 0;
};

class Packer {
 public:
  Packer(ExampleSource& source, PackingOptions options);
  Batch next();
  // Enough to continue exactly: the source position of the first example not yet fully used
  // and how many of its tokens were used (naive mode).
  nlohmann::json state() const;
  void restore(const nlohmann::json& state);

 private:
  Batch next_masked();
  Batch next_naive();
  void assign_weights(Batch& batch, const std::vector<std::uint8_t>& loss_mask) const;

  ExampleSource& source_;
  PackingOptions options_;
  // Masked: an example read but not yet placed, and the source state before it.
  std::optional<Example> pending_;
  nlohmann::json pending_state_;
  // Naive: the examples buffered, their source states, and tokens of the first already used.
  std::deque<std::pair<Example, nlohmann::json>> buffer_;
  std::int64_t used_of_first_ = 0;
};

}  // namespace lwm::train
