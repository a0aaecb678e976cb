// Kernels of ops.h. Memory-bound by design: each reads its inputs once and writes once, computes
// in f32, and rounds only when storing. Launch shapes: grid-stride loops for element-wise ops,
// one block per row for the row-wise ones (norm, RoPE, embedding).
#include "cuda/ops.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <limits>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/kernel_util.cuh"
#include "cuda/op_checks.h"
#include "lwm/error.h"

namespace lwm::cuda {
namespace {

constexpr int kThreads = 256;

TensorDesc desc(const DeviceTensor& t) {
  return {t.dtype(), t.shape()};
}

// ---------------------------------------------------------------------------------------------
// Element-wise

// Each kernel first runs `packs` whole packs (0 when a pointer is not pack-aligned), then the
// remaining elements one by one; the arithmetic per element is the same on both paths.

template <typename Y, typename X>
__global__ void add_kernel(Y* y, const X* x, std::int64_t n, std::int64_t packs) {
  const std::int64_t first = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  const std::int64_t stride = std::int64_t{gridDim.x} * blockDim.x;
  for (std::int64_t p = first; p < packs; p += stride) {
    float a[kPack];
    float b[kPack];
    load_pack(y + p * kPack, a);
    load_pack(x + p * kPack, b);
#pragma unroll
    for (int j = 0; j < kPack; ++j) a[j] += b[j];
    store_pack(y + p * kPack, a);
  }
  for (std::int64_t i = packs * kPack + first; i < n; i += stride) {
    y[i] = from_f32<Y>(to_f32(y[i]) + to_f32(x[i]));
  }
}

// expf, not the fast __expf: the CPU backend's std::exp is the reference (test tolerance).
__device__ __forceinline__ float silu_times(float g, float u) {
  return g / (1.0f + expf(-g)) * u;
}

template <typename T>
__global__ void swiglu_kernel(const T* gate, const T* up, T* out, std::int64_t n,
                              std::int64_t packs) {
  const std::int64_t first = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  const std::int64_t stride = std::int64_t{gridDim.x} * blockDim.x;
  for (std::int64_t p = first; p < packs; p += stride) {
    float g[kPack];
    float u[kPack];
    load_pack(gate + p * kPack, g);
    load_pack(up + p * kPack, u);
#pragma unroll
    for (int j = 0; j < kPack; ++j) g[j] = silu_times(g[j], u[j]);
    store_pack(out + p * kPack, g);
  }
  for (std::int64_t i = packs * kPack + first; i < n; i += stride) {
    out[i] = from_f32<T>(silu_times(to_f32(gate[i]), to_f32(up[i])));
  }
}

template <typename S, typename D>
__global__ void convert_kernel(const S* src, D* dst, std::int64_t n, std::int64_t packs) {
  const std::int64_t first = blockIdx.x * std::int64_t{blockDim.x} + threadIdx.x;
  const std::int64_t stride = std::int64_t{gridDim.x} * blockDim.x;
  for (std::int64_t p = first; p < packs; p += stride) {
    float v[kPack];
    load_pack(src + p * kPack, v);
    store_pack(dst + p * kPack, v);
  }
  for (std::int64_t i = packs * kPack + first; i < n; i += stride) {
    dst[i] = from_f32<D>(to_f32(src[i]));
  }
}

// Whole packs of n elements when every pointer allows them, else 0; and a grid for the work.
std::int64_t packs_of(std::int64_t n, bool aligned) {
  return aligned ? n / kPack : 0;
}
unsigned elementwise_grid(std::int64_t n, std::int64_t packs) {
  return grid_for(packs > 0 ? packs : n, kThreads);
}

// ---------------------------------------------------------------------------------------------
// Residual + RMSNorm: one block per row. The first pass adds x into h and sums the squares of
// the stored values; the second re-reads h (from L1/L2: one row is at most tens of KB) to scale.

template <typename R, typename X, typename W, typename O>
__global__ void residual_rms_norm_kernel(R* h, const X* x, const W* weight, O* out, std::int64_t n,
                                         float eps) {
  __shared__ float scratch[32];
  __shared__ float inverse;
  R* row = h + blockIdx.x * n;
  O* out_row = out + blockIdx.x * n;
  float squares = 0.0f;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    float v = to_f32(row[i]);
    if (x != nullptr) {
      const R stored = from_f32<R>(v + to_f32(x[blockIdx.x * n + i]));
      row[i] = stored;
      v = to_f32(stored);
    }
    squares += v * v;
  }
  const float total = block_sum(squares, scratch);
  if (threadIdx.x == 0) {
    // As the CPU backend: the reciprocal root in double, rounded once to float.
    inverse = static_cast<float>(
        1.0 / sqrt(static_cast<double>(total) / static_cast<double>(n) + static_cast<double>(eps)));
  }
  __syncthreads();
  const float inv = inverse;
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    out_row[i] = from_f32<O>(to_f32(row[i]) * inv * to_f32(weight[i]));
  }
}

int norm_threads(std::int64_t n) {
  return n >= 4096 ? 512 : (n >= 1024 ? 256 : 128);
}

// ---------------------------------------------------------------------------------------------
// RoPE: one block per token. The block first forms the token's head_dim/2 cos/sin pairs in shared
// memory (double-precision sincos of the float32 angle, as RotaryEmbedding::angles), then every
// head of the token uses them.

struct InverseFrequencies {
  float value[kMaxRopeHeadDim / 2];
};

template <typename T>
__global__ void rope_kernel(T* x, int heads, int head_dim, InverseFrequencies inv_freq,
                            bool interleaved, std::int64_t position_offset,
                            const std::int64_t* positions) {
  __shared__ float cos_table[kMaxRopeHeadDim / 2];
  __shared__ float sin_table[kMaxRopeHeadDim / 2];
  const std::int64_t token = blockIdx.x;
  const std::int64_t position = position_offset + (positions != nullptr ? positions[token] : token);
  const int half = head_dim / 2;
  for (int i = static_cast<int>(threadIdx.x); i < half; i += static_cast<int>(blockDim.x)) {
    const float angle =
        static_cast<float>(static_cast<double>(position) * static_cast<double>(inv_freq.value[i]));
    double s = 0.0;
    double c = 0.0;
    sincos(static_cast<double>(angle), &s, &c);
    cos_table[i] = static_cast<float>(c);
    sin_table[i] = static_cast<float>(s);
  }
  __syncthreads();
  T* base = x + token * heads * head_dim;
  for (int j = static_cast<int>(threadIdx.x); j < heads * half; j += static_cast<int>(blockDim.x)) {
    const int head = j / half;
    const int i = j % half;
    // Interleaved pairs (2i, 2i+1) for LWM/JAX weights; (i, i + d/2) for HF rotate-half weights.
    const int a = interleaved ? 2 * i : i;
    const int b = interleaved ? 2 * i + 1 : i + half;
    T* v = base + head * head_dim;
    const float x0 = to_f32(v[a]);
    const float x1 = to_f32(v[b]);
    v[a] = from_f32<T>(x0 * cos_table[i] - x1 * sin_table[i]);
    v[b] = from_f32<T>(x0 * sin_table[i] + x1 * cos_table[i]);
  }
}

// ---------------------------------------------------------------------------------------------
// Embedding: one block per id. An id outside the vocabulary writes a zero row (never reads out
// of bounds) and records (position << 32 | id) in *first_bad when that is given; atomicMin keeps
// the lowest position (positions are below 2^31: one block each).

template <typename Table, typename O>
__global__ void embedding_kernel(const Table* table, const std::int32_t* ids, std::int64_t dim,
                                 std::int64_t vocab, O* out, unsigned long long* first_bad) {
  const std::int64_t row = blockIdx.x;
  const std::int32_t id = ids[row];
  O* destination = out + row * dim;
  if (id < 0 || id >= vocab) {
    if (threadIdx.x == 0 && first_bad != nullptr) {
      atomicMin(first_bad, (static_cast<unsigned long long>(row) << 32) |
                               static_cast<unsigned long long>(static_cast<std::uint32_t>(id)));
    }
    for (std::int64_t i = threadIdx.x; i < dim; i += blockDim.x) destination[i] = from_f32<O>(0.0f);
    return;
  }
  const Table* source = table + static_cast<std::int64_t>(id) * dim;
  for (std::int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    destination[i] = from_f32<O>(to_f32(source[i]));
  }
}

void launch_embedding(Context& ctx, const DeviceTensor& table, const std::int32_t* device_ids,
                      std::int64_t count, DeviceTensor& out, unsigned long long* first_bad) {
  if (count == 0) return;
  with_storage_type(table.dtype(), [&](auto table_tag) {
    using Table = decltype(table_tag);
    with_activation_type(out.dtype(), [&](auto out_tag) {
      using O = decltype(out_tag);
      embedding_kernel<Table, O><<<static_cast<unsigned>(count), kThreads, 0, ctx.stream()>>>(
          static_cast<const Table*>(table.data()), device_ids, table.dim(1), table.dim(0),
          static_cast<O*>(out.data()), first_bad);
      LWM_CUDA_CHECK_LAUNCH("embedding_kernel");
    });
  });
}

}  // namespace

void add(Context& ctx, DeviceTensor& y, const DeviceTensor& x) {
  check_add(desc(y), desc(x));
  const std::int64_t n = y.numel();
  if (n == 0) return;
  with_activation_type(y.dtype(), [&](auto y_tag) {
    using Y = decltype(y_tag);
    with_activation_type(x.dtype(), [&](auto x_tag) {
      using X = decltype(x_tag);
      const std::int64_t packs = packs_of(n, packable<Y>(y.data()) && packable<X>(x.data()));
      add_kernel<Y, X><<<elementwise_grid(n, packs), kThreads, 0, ctx.stream()>>>(
          static_cast<Y*>(y.data()), static_cast<const X*>(x.data()), n, packs);
      LWM_CUDA_CHECK_LAUNCH("add_kernel");
    });
  });
}

void residual_rms_norm(Context& ctx, DeviceTensor& residual, const DeviceTensor* x,
                       const DeviceTensor& weight, float eps, DeviceTensor& out) {
  const TensorDesc x_desc = x != nullptr ? desc(*x) : TensorDesc{};
  const std::int64_t n = check_residual_rms_norm(desc(residual), x != nullptr ? &x_desc : nullptr,
                                                 desc(weight), desc(out));
  if (out.data() == residual.data() || (x != nullptr && out.data() == x->data())) {
    throw Error(ErrorKind::invalid_argument,
                "CUDA residual_rms_norm: out must not alias the residual or x (use a separate "
                "buffer)");
  }
  const std::int64_t rows = residual.numel() / n;
  if (rows == 0) return;
  // x, when absent, is passed as a null pointer of the residual's type (one instantiation).
  const DType x_dtype = x != nullptr ? x->dtype() : residual.dtype();
  with_activation_type(residual.dtype(), [&](auto r_tag) {
    using R = decltype(r_tag);
    with_activation_type(x_dtype, [&](auto x_tag) {
      using X = decltype(x_tag);
      with_storage_type(weight.dtype(), [&](auto w_tag) {
        using W = decltype(w_tag);
        with_activation_type(out.dtype(), [&](auto o_tag) {
          using O = decltype(o_tag);
          residual_rms_norm_kernel<R, X, W, O>
              <<<static_cast<unsigned>(rows), norm_threads(n), 0, ctx.stream()>>>(
                  static_cast<R*>(residual.data()),
                  x != nullptr ? static_cast<const X*>(x->data()) : nullptr,
                  static_cast<const W*>(weight.data()), static_cast<O*>(out.data()), n, eps);
          LWM_CUDA_CHECK_LAUNCH("residual_rms_norm_kernel");
        });
      });
    });
  });
}

void rope(Context& ctx, DeviceTensor& x, const RotaryEmbedding& rotary,
          std::int64_t position_offset, const std::int64_t* positions) {
  const std::int64_t tokens = check_rope(desc(x), rotary.head_dim());
  if (tokens == 0 || x.dim(1) == 0) return;
  InverseFrequencies inv_freq{};
  const auto& source = rotary.inverse_frequencies();
  for (std::size_t i = 0; i < source.size(); ++i) inv_freq.value[i] = source[i];
  const bool interleaved = rotary.pairing() == RopePairing::interleaved;
  with_activation_type(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    rope_kernel<T><<<static_cast<unsigned>(tokens), kThreads, 0, ctx.stream()>>>(
        static_cast<T*>(x.data()), static_cast<int>(x.dim(1)), static_cast<int>(rotary.head_dim()),
        inv_freq, interleaved, position_offset, positions);
    LWM_CUDA_CHECK_LAUNCH("rope_kernel");
  });
}

void swiglu(Context& ctx, const DeviceTensor& gate, const DeviceTensor& up, DeviceTensor& out) {
  check_swiglu(desc(gate), desc(up), desc(out));
  const std::int64_t n = gate.numel();
  if (n == 0) return;
  with_activation_type(gate.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const std::int64_t packs =
        packs_of(n, packable<T>(gate.data()) && packable<T>(up.data()) && packable<T>(out.data()));
    swiglu_kernel<T><<<elementwise_grid(n, packs), kThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(gate.data()), static_cast<const T*>(up.data()),
        static_cast<T*>(out.data()), n, packs);
    LWM_CUDA_CHECK_LAUNCH("swiglu_kernel");
  });
}

void embedding(Context& ctx, const DeviceTensor& table, std::span<const std::int32_t> ids,
               DeviceTensor& out) {
  const auto count = static_cast<std::int64_t>(ids.size());
  check_embedding(desc(table), count, desc(out));
  check_token_ids(ids, table.dim(0));
  if (count == 0) return;
  DeviceBuffer<std::int32_t> device_ids(count, ctx.stream());
  device_ids.upload(ids.data(), count);
  launch_embedding(ctx, table, device_ids.data(), count, out, nullptr);
}

TokenIdCheck::TokenIdCheck(Context& ctx) : word_(1, ctx.stream()) {
  clear(ctx);
}

void TokenIdCheck::clear(Context& ctx) {
  // All bits set: nothing recorded (atomicMin lowers it).
  LWM_CUDA_CHECK(cudaMemsetAsync(word_.data(), 0xff, sizeof(unsigned long long), ctx.stream()));
}

void TokenIdCheck::throw_if_bad(Context& ctx, std::int64_t vocab) const {
  unsigned long long record = 0;
  LWM_CUDA_CHECK(
      cudaMemcpyAsync(&record, word_.data(), sizeof record, cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.synchronize();
  if (record == std::numeric_limits<unsigned long long>::max()) return;
  const auto id = static_cast<std::int32_t>(static_cast<std::uint32_t>(record & 0xffffffffull));
  throw Error(ErrorKind::invalid_argument, "CUDA embedding: token id " + std::to_string(id) +
                                               " at position " + std::to_string(record >> 32) +
                                               " is outside the vocabulary of " +
                                               std::to_string(vocab));
}

void embedding(Context& ctx, const DeviceTensor& table, const std::int32_t* device_ids,
               std::int64_t count, DeviceTensor& out, TokenIdCheck& check) {
  check_embedding(desc(table), count, desc(out));
  if (count > (std::int64_t{1} << 31) - 1) {
    throw Error(ErrorKind::invalid_argument,
                "CUDA embedding: " + std::to_string(count) + " ids in one call; at most 2^31 - 1");
  }
  launch_embedding(ctx, table, device_ids, count, out, check.device_word());
}

void embedding(Context& ctx, const DeviceTensor& table, const std::int32_t* device_ids,
               std::int64_t count, DeviceTensor& out) {
  check_embedding(desc(table), count, desc(out));
  if (count == 0) return;
  TokenIdCheck check(ctx);
  embedding(ctx, table, device_ids, count, out, check);
  check.throw_if_bad(ctx, table.dim(0));
}

void convert(Context& ctx, const DeviceTensor& src, DeviceTensor& dst) {
  check_convert(desc(src), desc(dst));
  const std::int64_t n = src.numel();
  if (n == 0) return;
  with_storage_type(src.dtype(), [&](auto s_tag) {
    using S = decltype(s_tag);
    with_storage_type(dst.dtype(), [&](auto d_tag) {
      using D = decltype(d_tag);
      const std::int64_t packs = packs_of(n, packable<S>(src.data()) && packable<D>(dst.data()));
      convert_kernel<S, D><<<elementwise_grid(n, packs), kThreads, 0, ctx.stream()>>>(
          static_cast<const S*>(src.data()), static_cast<D*>(dst.data()), n, packs);
      LWM_CUDA_CHECK_LAUNCH("convert_kernel");
    });
  });
}

}  // namespace lwm::cuda
