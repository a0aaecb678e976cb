// Next-token choice on the GPU, one row of logits per sequence, so decoding never copies a
// vocabulary-sized row to the host: greedy (argmax, lowest id on ties, NaN never chosen, as
// lwm::Sampler) and temperature sampling with an optional top-p nucleus.
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
  // Validates `params` as lwm::Sampler does; top-k is not implemented on the GPU yet
  // (Error(unsupported) when top_k > 0).
  explicit DeviceSampler(const SamplingParams& params);

  // One token per row. Temperature 0 is argmax. Otherwise weights exp((l - max) / T); with
  // top_p < 1 only the tokens whose weight is at least the nucleus threshold are kept (the
  // threshold is the largest weight w such that the tokens weighing ≥ w carry ≥ top_p of the
  // mass: the CPU sampler's nucleus, except that ties at the threshold are all kept), then one
  // draw. The draw of call c, row r depends only on (seed, c, r): a seed replays a run exactly.
  void sample(Context& ctx, const DeviceTensor& logits, std::int32_t* device_ids);

  const SamplingParams& params() const noexcept { return params_; }

 private:
  SamplingParams params_;
  std::uint64_t calls_ = 0;
};

}  // namespace lwm::cuda
