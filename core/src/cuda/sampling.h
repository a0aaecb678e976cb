// Next-token choice on the GPU, one row of logits per sequence, so decoding never copies a
// vocabulary-sized row to the host: greedy (argmax, lowest id on ties, NaN never chosen, as
// lwm::Sampler) and temperature sampling with optional top-k and top-p.
#pragma once

#include <cstdint>

#include "cuda/context.h"
#include "cuda/device_tensor.h"
#include "lwm/generation.h"

namespace lwm::cuda {

// ids[r] = argmax of logits row r. logits: [rows, vocab] f32 or bf16; ids: `rows` device ints.
void argmax(Context& ctx, const DeviceTensor& logits, std::int32_t* device_ids);

class DeviceSampler {
 public:
  // Validates `params` as lwm::Sampler does (Error(invalid_argument)).
  explicit DeviceSampler(const SamplingParams& params);

  // One token per row. Temperature 0 is argmax. Otherwise weights exp((l - max) / T), then, as
  // lwm::Sampler orders them, top-k (the tokens whose weight is at least the k-th largest) and
  // top-p (the tokens whose weight is at least the largest w such that the tokens weighing ≥ w
  // carry ≥ top_p of the mass top-k kept), then one draw. Ties at a threshold are all kept where
  // the CPU sampler keeps the lower ids first. The draw of call c, row r depends only on
  // (seed, c, r): a seed replays a run exactly.
  void sample(Context& ctx, const DeviceTensor& logits, std::int32_t* device_ids);

  const SamplingParams& params() const noexcept { return params_; }

 private:
  SamplingParams params_;
  std::uint64_t calls_ = 0;
};

}  // namespace lwm::cuda
