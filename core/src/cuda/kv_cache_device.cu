#include <string>

#include "byte_units.h"
#include "cuda/cuda_check.h"
#include "cuda/kv_cache_device.h"
#include "lwm/error.h"

namespace lwm::cuda {
namespace {

constexpr int kRowsPerBlock = 4;  // one warp per row

// Symmetric absmax quantisation of one row per warp: scale = max|x| / 127, q = round(x / scale).
// A row of zeros gets scale 0 and codes 0 (dequantises exactly).
__global__ void quantize_rows_kernel(const __nv_bfloat16* input, std::int64_t rows, int width,
                                     std::int8_t* output, float* scales) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  if (row >= rows) return;  // the whole warp leaves together
  const __nv_bfloat16* in = input + row * width;
  float largest = 0.0f;
  for (int i = lane; i < width; i += 32) largest = fmaxf(largest, fabsf(__bfloat162float(in[i])));
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    largest = fmaxf(largest, __shfl_xor_sync(0xffffffffu, largest, offset));
  }
  const float inverse = largest > 0.0f ? 127.0f / largest : 0.0f;
  std::int8_t* out = output + row * width;
  for (int i = lane; i < width; i += 32) {
    const int code = __float2int_rn(__bfloat162float(in[i]) * inverse);
    out[i] = static_cast<std::int8_t>(max(-127, min(127, code)));
  }
  if (lane == 0) scales[row] = largest / 127.0f;
}

}  // namespace

void quantize_rows_int8(const __nv_bfloat16* input, std::int64_t rows, std::int64_t width,
                        std::int8_t* output, float* scales, cudaStream_t stream) {
  if (rows < 0 || width <= 0 || width > (1 << 20)) {
    throw Error(ErrorKind::invalid_argument, "int8 quantisation: impossible shape (" +
                                                 std::to_string(rows) + " rows of " +
                                                 std::to_string(width) + ")");
  }
  if (rows == 0) return;
  const std::int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  quantize_rows_kernel<<<static_cast<unsigned>(blocks), kRowsPerBlock * 32, 0, stream>>>(
      input, rows, static_cast<int>(width), output, scales);
  LWM_CUDA_CHECK_LAUNCH("quantize_rows_kernel");
}

DeviceKvCache::DeviceKvCache(const ModelConfig& config, std::int64_t capacity,
                             KvPrecision precision, cudaStream_t stream)
    : num_layers_(config.num_layers),
      num_kv_heads_(config.num_kv_heads),
      head_dim_(config.head_dim()),
      capacity_(capacity),
      precision_(precision),
      element_bytes_(precision == KvPrecision::int8 ? 1 : 2) {
  if (precision != KvPrecision::bf16 && precision != KvPrecision::int8) {
    throw Error(ErrorKind::unsupported,
                std::string("a GPU KV cache is bf16 or int8, not ") + to_string(precision));
  }
  if (capacity <= 0 || num_layers_ <= 0 || num_kv_heads_ <= 0 || head_dim_ <= 0) {
    throw Error(ErrorKind::invalid_argument,
                "GPU KV cache: capacity " + std::to_string(capacity) + ", layers " +
                    std::to_string(num_layers_) + ", kv heads " + std::to_string(num_kv_heads_) +
                    ", head_dim " + std::to_string(head_dim_) + " must all be positive");
  }
  std::size_t free_bytes = 0;
  std::size_t total_bytes = 0;
  LWM_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  const std::int64_t needed = kv_bytes_per_token(config, precision) * capacity;
  if (needed > static_cast<std::int64_t>(free_bytes)) {
    int device = 0;
    LWM_CUDA_CHECK(cudaGetDevice(&device));
    throw Error(ErrorKind::out_of_memory,
                "a " + std::string(to_string(precision)) + " KV cache for " +
                    std::to_string(capacity) + " tokens needs " + gib_text(needed) +
                    " but cuda:" + std::to_string(device) + " has " +
                    gib_text(static_cast<std::int64_t>(free_bytes)) +
                    " free; use a shorter context, an int8 KV cache or more GPUs");
  }
  const std::int64_t elements = 2 * num_layers_ * capacity_ * num_kv_heads_ * head_dim_;
  data_ = DeviceBuffer<unsigned char>(elements * element_bytes_, stream);
  if (precision_ == KvPrecision::int8) {
    scales_ = DeviceBuffer<float>(2 * num_layers_ * capacity_ * num_kv_heads_, stream);
  }
}

std::int64_t DeviceKvCache::bytes() const noexcept {
  return static_cast<std::int64_t>(data_.bytes() + scales_.bytes());
}

void DeviceKvCache::check_layer(std::int64_t layer) const {
  if (layer < 0 || layer >= num_layers_) {
    throw Error(ErrorKind::invalid_argument, "GPU KV cache: layer " + std::to_string(layer) +
                                                 " outside 0.." + std::to_string(num_layers_ - 1));
  }
}

void DeviceKvCache::store(std::int64_t layer, const __nv_bfloat16* keys,
                          const __nv_bfloat16* values, std::int64_t n, cudaStream_t stream) {
  check_layer(layer);
  if (n < 0 || size_ + n > capacity_) {
    throw Error(ErrorKind::invalid_argument, "GPU KV cache: storing " + std::to_string(n) +
                                                 " tokens after " + std::to_string(size_) +
                                                 " exceeds the capacity of " +
                                                 std::to_string(capacity_));
  }
  if (n == 0) return;
  const std::int64_t row_elements = num_kv_heads_ * head_dim_;
  const std::int64_t rows = n * num_kv_heads_;
  for (int which = 0; which < 2; ++which) {
    const __nv_bfloat16* source = which == 0 ? keys : values;
    const std::int64_t slab = (2 * layer + which) * capacity_;  // first token of this slab
    unsigned char* destination = data_.data() + (slab + size_) * row_elements * element_bytes_;
    if (precision_ == KvPrecision::bf16) {
      LWM_CUDA_CHECK(cudaMemcpyAsync(destination, source,
                                     static_cast<std::size_t>(n * row_elements) * 2,
                                     cudaMemcpyDeviceToDevice, stream));
    } else {
      quantize_rows_int8(source, rows, head_dim_, reinterpret_cast<std::int8_t*>(destination),
                         scales_.data() + (slab + size_) * num_kv_heads_, stream);
    }
  }
}

void DeviceKvCache::advance(std::int64_t n) {
  if (n < 0 || size_ + n > capacity_) {
    throw Error(ErrorKind::invalid_argument, "GPU KV cache: advancing by " + std::to_string(n) +
                                                 " past the capacity of " +
                                                 std::to_string(capacity_));
  }
  size_ += n;
}

void DeviceKvCache::truncate(std::int64_t size) {
  if (size < 0 || size > size_) {
    throw Error(ErrorKind::invalid_argument, "cannot truncate a GPU KV cache of " +
                                                 std::to_string(size_) + " tokens to " +
                                                 std::to_string(size));
  }
  size_ = size;
}

KvBlock DeviceKvCache::layer(std::int64_t layer, std::int64_t begin, std::int64_t end) const {
  check_layer(layer);
  if (begin < 0 || begin > end || end > size_) {
    throw Error(ErrorKind::invalid_argument, "GPU KV cache: tokens [" + std::to_string(begin) +
                                                 ", " + std::to_string(end) + ") outside the " +
                                                 std::to_string(size_) + " stored");
  }
  const std::int64_t row_elements = num_kv_heads_ * head_dim_;
  const std::int64_t key_slab = 2 * layer * capacity_;
  const std::int64_t value_slab = key_slab + capacity_;
  KvBlock block;
  block.precision = precision_;
  block.keys = data_.data() + (key_slab + begin) * row_elements * element_bytes_;
  block.values = data_.data() + (value_slab + begin) * row_elements * element_bytes_;
  if (precision_ == KvPrecision::int8) {
    block.key_scales = scales_.data() + (key_slab + begin) * num_kv_heads_;
    block.value_scales = scales_.data() + (value_slab + begin) * num_kv_heads_;
  }
  block.num_keys = end - begin;
  return block;
}

KvBlock DeviceKvCache::layer(std::int64_t layer) const {
  return this->layer(layer, 0, size_);
}

}  // namespace lwm::cuda
