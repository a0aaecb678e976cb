// The KV cache of every layer for one sequence on a CUDA device (issue 3 item 3), in bf16 or in
// int8 with one fp32 scale per (token, kv head) row — the format planner.h accounts for
// (kv_bytes_per_token: head_dim + 4 bytes per row) and the attention kernels read directly
// (cuda/attention.h KvBlock). Like the CPU KVCache it is sized once up front, refuses a capacity
// the device cannot hold with the numbers, and the model stores a layer's new rows at size()
// then advances once every layer has them.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/attention.h"
#include "cuda/device_buffer.h"
#include "lwm/model_config.h"
#include "lwm/planner.h"

namespace lwm::cuda {

class DeviceKvCache {
 public:
  // precision: bf16 or int8 (f32 is the CPU cache's). Allocates on `stream` from the current
  // device's pool; throws Error(out_of_memory) naming the bytes needed and free when it cannot.
  DeviceKvCache(const ModelConfig& config, std::int64_t capacity, KvPrecision precision,
                cudaStream_t stream);

  std::int64_t size() const noexcept { return size_; }
  std::int64_t capacity() const noexcept { return capacity_; }
  KvPrecision precision() const noexcept { return precision_; }
  // Device bytes held: capacity × planner's kv_bytes_per_token(config, precision).
  std::int64_t bytes() const noexcept;

  // Writes n tokens' keys and values of one layer, bf16 [n, num_kv_heads, head_dim] on the
  // device, at positions size()..size()+n-1; int8 quantises on the way in (per row: scale =
  // max|x| / 127, q = round(x / scale), so |x - q·scale| <= scale / 2).
  void store(std::int64_t layer, const __nv_bfloat16* keys, const __nv_bfloat16* values,
             std::int64_t n, cudaStream_t stream);
  void advance(std::int64_t n);      // after every layer has stored the n tokens
  void truncate(std::int64_t size);  // forget tokens from `size` on

  // Tokens [begin, end) of one layer as the attention kernels read them.
  KvBlock layer(std::int64_t layer, std::int64_t begin, std::int64_t end) const;
  KvBlock layer(std::int64_t layer) const;  // tokens [0, size())

 private:
  void check_layer(std::int64_t layer) const;

  std::int64_t num_layers_;
  std::int64_t num_kv_heads_;
  std::int64_t head_dim_;
  std::int64_t capacity_;
  KvPrecision precision_;
  std::int64_t size_ = 0;
  std::int64_t element_bytes_;
  DeviceBuffer<unsigned char> data_;  // [layers][keys|values][capacity, kv_heads, head_dim]
  DeviceBuffer<float> scales_;        // int8: [layers][keys|values][capacity, kv_heads]
};

// Quantises rows of `width` bf16 values to int8 with one fp32 scale per row (the kernel behind
// DeviceKvCache::store; exposed for tests): one warp per row, any positive width.
void quantize_rows_int8(const __nv_bfloat16* input, std::int64_t rows, std::int64_t width,
                        std::int8_t* output, float* scales, cudaStream_t stream);

}  // namespace lwm::cuda
