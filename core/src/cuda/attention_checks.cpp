#include "cuda/attention_checks.h"

#include <cmath>
#include <string>

#include "lwm/error.h"

namespace lwm::cuda {

bool attention_head_dim_supported(std::int64_t head_dim) noexcept {
  return head_dim == 64 || head_dim == 128;
}

namespace attention_detail {
namespace {

bool aligned(const void* pointer, std::size_t bytes) {
  return reinterpret_cast<std::uintptr_t>(pointer) % bytes == 0;
}

}  // namespace

void check_attention_call(const char* what, const __nv_bfloat16* q, std::int64_t num_queries,
                          const KvBlock& kv, const AttentionShape& shape,
                          const DeviceAttentionOptions& options, const AttentionResult& result) {
  const std::string name = std::string("CUDA attention (") + what + ")";
  if (shape.num_heads <= 0 || shape.num_kv_heads <= 0 || shape.head_dim <= 0 ||
      shape.num_heads % shape.num_kv_heads != 0) {
    throw Error(ErrorKind::invalid_argument,
                name + ": impossible shape (heads " + std::to_string(shape.num_heads) +
                    ", kv heads " + std::to_string(shape.num_kv_heads) + ", head_dim " +
                    std::to_string(shape.head_dim) +
                    "); heads must be a positive multiple of kv heads");
  }
  if (shape.num_heads > 65535) {
    throw Error(ErrorKind::invalid_argument, name + ": " + std::to_string(shape.num_heads) +
                                                 " heads exceed the 65535 the grid holds");
  }
  if (!attention_head_dim_supported(shape.head_dim)) {
    throw Error(
        ErrorKind::unsupported,
        name + ": head_dim " + std::to_string(shape.head_dim) +
            " has no kernel; the CUDA kernels are built for head_dim 64 and 128 (use the CPU "
            "blockwise_attention for other sizes)");
  }
  if (num_queries < 0 || kv.num_keys < 0) {
    throw Error(ErrorKind::invalid_argument, name + ": negative sequence length (queries " +
                                                 std::to_string(num_queries) + ", keys " +
                                                 std::to_string(kv.num_keys) + ")");
  }
  if (kv.precision != KvPrecision::bf16 && kv.precision != KvPrecision::int8) {
    throw Error(ErrorKind::unsupported, name + ": keys/values in " + to_string(kv.precision) +
                                            "; the GPU reads bf16 or int8 KV storage");
  }
  if (num_queries > 0 && q == nullptr) {
    throw Error(ErrorKind::invalid_argument, name + ": queries pointer is null");
  }
  if (kv.num_keys > 0 && (kv.keys == nullptr || kv.values == nullptr)) {
    throw Error(ErrorKind::invalid_argument, name + ": keys or values pointer is null");
  }
  if (kv.num_keys > 0 && kv.precision == KvPrecision::int8 &&
      (kv.key_scales == nullptr || kv.value_scales == nullptr)) {
    throw Error(ErrorKind::invalid_argument,
                name + ": int8 keys/values need their per-row scales (key_scales, value_scales)");
  }
  if ((options.query_segments == nullptr) != (options.key_segments == nullptr)) {
    throw Error(ErrorKind::invalid_argument,
                name + ": segment ids must be given for both queries and keys");
  }
  if (result.out == nullptr && result.out_bf16 == nullptr) {
    throw Error(ErrorKind::invalid_argument, name + ": no output pointer (out or out_bf16)");
  }
  if (result.merge && (result.out == nullptr || result.lse == nullptr)) {
    throw Error(ErrorKind::invalid_argument,
                name + ": merging into an incoming state needs both its fp32 out and lse");
  }
  // The kernels read eight elements at once: bf16 rows as 16-byte and int8 rows as 8-byte
  // vectors. Row strides are multiples of that (head_dim is 64 or 128); the bases must be too.
  const std::size_t kv_alignment = kv.precision == KvPrecision::bf16 ? 16 : 8;
  if (!aligned(q, 16) || !aligned(kv.keys, kv_alignment) || !aligned(kv.values, kv_alignment)) {
    throw Error(ErrorKind::invalid_argument,
                name + ": queries must start on a 16-byte boundary and keys/values on a " +
                    std::to_string(kv_alignment) +
                    "-byte one (pass whole rows of a cudaMalloc'd buffer)");
  }
}

float scale_log2(const AttentionShape& shape, const DeviceAttentionOptions& options) {
  const float scale =
      options.scale != 0.0f ? options.scale : 1.0f / std::sqrt(static_cast<float>(shape.head_dim));
  return scale * 1.4426950408889634f;
}

}  // namespace attention_detail
}  // namespace lwm::cuda
