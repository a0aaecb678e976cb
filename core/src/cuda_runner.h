// The CUDA backend's SequenceRunner (cuda/cuda_runner.cpp), or, in a build without CUDA,
// cuda_runner_unavailable.cpp, which says so.
#pragma once

#include <cstdint>
#include <memory>

#include "lwm/sequence_runner.h"

namespace lwm {

// `model` on GPU `device` with a KV cache of `capacity` tokens in `kv` precision (bf16 or int8).
std::unique_ptr<SequenceRunner> make_cuda_runner(const Model& model, int device,
                                                 std::int64_t capacity, KvPrecision kv);

}  // namespace lwm
