// Host-side argument checks shared by the CUDA attention entry points (attention_forward.cu,
// attention_decode.cu), compiled as plain C++ so their messages follow the project's rules.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/attention.h"

namespace lwm::cuda::attention_detail {

// Validates shapes, options, result pointers and alignment (16-byte K/V rows for the vector
// loads); throws lwm::Error naming what is wrong and what to change. `what` names the entry point.
void check_attention_call(const char* what, const __nv_bfloat16* q, std::int64_t num_queries,
                          const KvBlock& kv, const AttentionShape& shape,
                          const DeviceAttentionOptions& options, const AttentionResult& result);

// scale·log2(e) with the CPU's default scale 1/sqrt(head_dim): the kernels use exp2.
float scale_log2(const AttentionShape& shape, const DeviceAttentionOptions& options);

}  // namespace lwm::cuda::attention_detail
