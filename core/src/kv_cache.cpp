#include "lwm/kv_cache.h"

#include <string>

#include "byte_units.h"
#include "lwm/error.h"

namespace lwm {

KVCache::KVCache(const ModelConfig& config, std::int64_t capacity) : capacity_(capacity) {
  if (capacity <= 0) {
    throw Error(ErrorKind::invalid_argument, "KV cache capacity must be positive, got " + std::to_string(capacity));
  }
  const std::int64_t needed = config.kv_bytes_per_token(DType::f32) * capacity;
  const std::int64_t available = available_memory_bytes();
  if (available >= 0 && needed > available) {
    throw Error(ErrorKind::out_of_memory,
                "a KV cache for " + std::to_string(capacity) + " tokens needs " + gib_text(needed) + " but only " +
                    gib_text(available) + " of memory is available; use a shorter context (at most about " +
                    std::to_string(available / config.kv_bytes_per_token(DType::f32)) + " tokens)");
  }
  const auto row = static_cast<std::size_t>(config.num_kv_heads * config.head_dim());
  keys_.resize(static_cast<std::size_t>(config.num_layers));
  values_.resize(static_cast<std::size_t>(config.num_layers));
  for (std::int64_t layer = 0; layer < config.num_layers; ++layer) {
    keys_[static_cast<std::size_t>(layer)].resize(row * static_cast<std::size_t>(capacity));
    values_[static_cast<std::size_t>(layer)].resize(row * static_cast<std::size_t>(capacity));
  }
}

std::int64_t KVCache::bytes() const noexcept {
  std::int64_t total = 0;
  for (const auto& k : keys_) total += static_cast<std::int64_t>(k.size() * sizeof(float));
  return total * 2;
}

void KVCache::truncate(std::int64_t size) {
  if (size < 0 || size > size_) {
    throw Error(ErrorKind::invalid_argument, "cannot truncate a KV cache of " + std::to_string(size_) +
                                                 " tokens to " + std::to_string(size));
  }
  size_ = size;
}

void KVCache::advance(std::int64_t n) {
  if (n < 0 || size_ + n > capacity_) {
    throw Error(ErrorKind::invalid_argument, "KV cache overflow: " + std::to_string(size_) + " + " +
                                                 std::to_string(n) + " tokens > capacity " + std::to_string(capacity_));
  }
  size_ += n;
}

}  // namespace lwm
