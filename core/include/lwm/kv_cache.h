// The key/value cache of every layer for one sequence, float32 on the CPU.
// Sized once up front: the constructor refuses (Error out_of_memory, with the numbers) a capacity
// that would not fit in the memory the machine has available, instead of failing mid-prefill.
#pragma once

#include <cstdint>
#include <vector>

#include "lwm/model_config.h"

namespace lwm {

class KVCache {
 public:
  KVCache(const ModelConfig& config, std::int64_t capacity);

  std::int64_t size() const noexcept { return size_; }  // tokens stored
  std::int64_t capacity() const noexcept { return capacity_; }
  std::int64_t bytes() const noexcept;
  // Forgets every token from position `size` on (to re-ask after a shared prefix).
  void truncate(std::int64_t size);

  // [capacity, num_kv_heads, head_dim] rows of one layer.
  float* keys(std::int64_t layer) noexcept { return keys_[layer].data(); }
  float* values(std::int64_t layer) noexcept { return values_[layer].data(); }
  const float* keys(std::int64_t layer) const noexcept { return keys_[layer].data(); }
  const float* values(std::int64_t layer) const noexcept { return values_[layer].data(); }
  // Marks n more tokens as stored (called by the model after writing them in every layer).
  void advance(std::int64_t n);

 private:
  std::int64_t capacity_;
  std::int64_t size_ = 0;
  std::vector<std::vector<float>> keys_;
  std::vector<std::vector<float>> values_;
};

// Bytes of memory the machine can give us now (MemAvailable), for planning; defined with the
// device list (devices.cpp).
std::int64_t available_memory_bytes();

}  // namespace lwm
