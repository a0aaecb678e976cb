// Kernels of sampling.h: one block of 1024 threads per row of logits.
//
// Sampling needs no sort. Weights w = exp((l - max) / T) lie in (0, 1] and positive floats order
// like their bit patterns, so the nucleus threshold is found by bisection over those bits (31
// block-wide sums of the weights at or above a candidate), then the draw walks the kept weights
// in id order: each thread owns a contiguous chunk, a block scan gives each chunk's start, and
// the one thread whose span holds the draw walks its chunk.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <string>

#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "cuda/kernel_util.cuh"
#include "cuda/op_checks.h"
#include "cuda/sampling.h"
#include "lwm/error.h"

namespace lwm::cuda {
namespace {

constexpr int kSampleThreads = 1024;

__device__ __forceinline__ bool better(float v, int i, float best, int best_index) {
  return !isnan(v) && (v > best || (v == best && i < best_index));
}

// Block-wide argmax: every thread gets the winning (value, index).
__device__ void block_argmax(float& value, int& index) {
  __shared__ float values[32];
  __shared__ int indices[32];
  for (int offset = 16; offset > 0; offset /= 2) {
    const float v = __shfl_xor_sync(0xffffffffu, value, offset);
    const int i = __shfl_xor_sync(0xffffffffu, index, offset);
    if (better(v, i, value, index)) {
      value = v;
      index = i;
    }
  }
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  __syncthreads();
  if (lane == 0) {
    values[warp] = value;
    indices[warp] = index;
  }
  __syncthreads();
  const int warps = static_cast<int>(blockDim.x) / 32;
  value = lane < warps ? values[lane] : -INFINITY;
  index = lane < warps ? indices[lane] : 0x7fffffff;
  for (int offset = 16; offset > 0; offset /= 2) {
    const float v = __shfl_xor_sync(0xffffffffu, value, offset);
    const int i = __shfl_xor_sync(0xffffffffu, index, offset);
    if (better(v, i, value, index)) {
      value = v;
      index = i;
    }
  }
}

template <typename T>
__device__ void row_argmax(const T* row, int vocab, float& value, int& index) {
  value = -INFINITY;
  index = 0x7fffffff;
  for (int i = static_cast<int>(threadIdx.x); i < vocab; i += static_cast<int>(blockDim.x)) {
    const float v = to_f32(row[i]);
    if (better(v, i, value, index)) {
      value = v;
      index = i;
    }
  }
  block_argmax(value, index);
}

// __launch_bounds__: a 1024-thread block must fit the register file on every GPU the PTX is
// compiled for at load time (≤ 64 registers a thread).
template <typename T>
__global__ void __launch_bounds__(kSampleThreads)
    argmax_kernel(const T* logits, int vocab, std::int32_t* ids) {
  float value = 0.0f;
  int index = 0;
  row_argmax(logits + static_cast<std::int64_t>(blockIdx.x) * vocab, vocab, value, index);
  // A row of NaNs only: token 0, like the CPU's argmax.
  if (threadIdx.x == 0) ids[blockIdx.x] = index == 0x7fffffff ? 0 : index;
}

// splitmix64, the CPU sampler's generator, keyed by (seed, call, row).
__device__ __forceinline__ std::uint64_t mix(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Whether a token is in the nucleus. Zero weights (underflowed exponentials) never are, so no
// rounding fallback can pick one.
__device__ __forceinline__ bool kept(float weight, float threshold) {
  return weight > 0.0f && weight >= threshold;
}

// How many weights the block keeps at `threshold` (exact in float below 2^24 tokens).
__device__ float kept_count(const float* weights, int vocab, float threshold, float* scratch) {
  float count = 0.0f;
  for (int i = static_cast<int>(threadIdx.x); i < vocab; i += static_cast<int>(blockDim.x)) {
    if (kept(weights[i], threshold)) count += 1.0f;
  }
  return block_sum(count, scratch);
}

// Sum over the block of the weights at or above `threshold`.
__device__ float kept_mass(const float* weights, int vocab, float threshold, float* scratch) {
  float sum = 0.0f;
  for (int i = static_cast<int>(threadIdx.x); i < vocab; i += static_cast<int>(blockDim.x)) {
    const float w = weights[i];
    if (kept(w, threshold)) sum += w;
  }
  return block_sum(sum, scratch);
}

template <typename T>
__global__ void __launch_bounds__(kSampleThreads)
    sample_kernel(const T* logits, int vocab, float inverse_temperature, int top_k, float top_p,
                  std::uint64_t seed, std::uint64_t call, float* weights_all, std::int32_t* ids) {
  __shared__ float scratch[32];
  __shared__ float chunk_starts[kSampleThreads];
  __shared__ int chosen;
  const std::int64_t row_index = blockIdx.x;
  const T* row = logits + row_index * vocab;
  float* weights = weights_all + row_index * vocab;

  float best = 0.0f;
  int best_index = 0;
  row_argmax(row, vocab, best, best_index);
  if (best_index == 0x7fffffff || isinf(best)) {
    // No finite maximum (all NaN or all -inf, or +inf present): the argmax is the only choice
    // that means anything.
    if (threadIdx.x == 0) ids[row_index] = best_index == 0x7fffffff ? 0 : best_index;
    return;
  }
  for (int i = static_cast<int>(threadIdx.x); i < vocab; i += static_cast<int>(blockDim.x)) {
    const float v = to_f32(row[i]);
    weights[i] = isnan(v) ? 0.0f : expf((v - best) * inverse_temperature);
  }
  __syncthreads();  // each thread reads other threads' weights below

  // Top-k, then top-p, as lwm::Sampler orders them. The top-k threshold: the largest bit
  // pattern t whose count of weights ≥ t is still ≥ k (t = 0 keeps every positive weight).
  unsigned threshold_bits = 0;
  if (top_k > 0 && top_k < vocab) {
    unsigned low = 0;
    unsigned high = __float_as_uint(1.0f);
    while (low < high) {
      const unsigned middle = low + (high - low + 1) / 2;
      if (kept_count(weights, vocab, __uint_as_float(middle), scratch) >=
          static_cast<float>(top_k)) {
        low = middle;
      } else {
        high = middle - 1;
      }
    }
    threshold_bits = low;
  }
  // The nucleus threshold: the largest bit pattern t at or above that one whose kept mass still
  // reaches top_p of the mass top-k kept.
  float mass = kept_mass(weights, vocab, __uint_as_float(threshold_bits), scratch);
  if (top_p < 1.0f) {
    const float target = top_p * mass;
    unsigned low = threshold_bits;
    unsigned high = __float_as_uint(1.0f);
    while (low < high) {
      const unsigned middle = low + (high - low + 1) / 2;
      if (kept_mass(weights, vocab, __uint_as_float(middle), scratch) >= target) {
        low = middle;
      } else {
        high = middle - 1;
      }
    }
    threshold_bits = low;
    mass = kept_mass(weights, vocab, __uint_as_float(low), scratch);
  }
  const float threshold = __uint_as_float(threshold_bits);

  const std::uint64_t random = mix(mix(seed ^ mix(call)) ^ static_cast<std::uint64_t>(row_index));
  const float draw = static_cast<float>(static_cast<double>(random >> 11) * 0x1.0p-53) * mass;

  // Contiguous chunks in id order; exclusive prefix of the chunk sums by a simple block scan.
  const int chunk = (vocab + static_cast<int>(blockDim.x) - 1) / static_cast<int>(blockDim.x);
  const int begin = min(vocab, static_cast<int>(threadIdx.x) * chunk);
  const int end = min(vocab, begin + chunk);
  float own = 0.0f;
  int last_kept = -1;
  for (int i = begin; i < end; ++i) {
    if (kept(weights[i], threshold)) {
      own += weights[i];
      last_kept = i;
    }
  }
  chunk_starts[threadIdx.x] = own;
  __syncthreads();
  for (int offset = 1; offset < static_cast<int>(blockDim.x); offset *= 2) {
    const float add = threadIdx.x >= static_cast<unsigned>(offset)
                          ? chunk_starts[threadIdx.x - static_cast<unsigned>(offset)]
                          : 0.0f;
    __syncthreads();
    chunk_starts[threadIdx.x] += add;
    __syncthreads();
  }
  const float start = chunk_starts[threadIdx.x] - own;  // inclusive → exclusive
  // Fallback when rounding puts the draw past the last span: the last kept token.
  float fallback_value = static_cast<float>(last_kept);
  int fallback_index = last_kept;
  block_argmax(fallback_value, fallback_index);
  if (threadIdx.x == 0) chosen = fallback_index;
  __syncthreads();
  if (own > 0.0f && draw >= start && draw < start + own) {
    float cumulative = start;
    int pick = last_kept;
    for (int i = begin; i < end; ++i) {
      if (kept(weights[i], threshold)) {
        cumulative += weights[i];
        if (draw < cumulative) {
          pick = i;
          break;
        }
      }
    }
    chosen = pick;
  }
  __syncthreads();
  if (threadIdx.x == 0) ids[row_index] = chosen;
}

TensorDesc desc(const DeviceTensor& t) {
  return {t.dtype(), t.shape()};
}

}  // namespace

void argmax(Context& ctx, const DeviceTensor& logits, std::int32_t* device_ids) {
  const std::int64_t rows = check_logits(desc(logits));
  if (rows == 0) return;
  with_activation_type(logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    argmax_kernel<T><<<static_cast<unsigned>(rows), kSampleThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(logits.data()), static_cast<int>(logits.dim(1)), device_ids);
    LWM_CUDA_CHECK_LAUNCH("argmax_kernel");
  });
}

DeviceSampler::DeviceSampler(const SamplingParams& params) : params_(params) {
  // The CPU sampler's constructor is the one place the parameters are validated.
  static_cast<void>(lwm::Sampler(params));
}

void DeviceSampler::sample(Context& ctx, const DeviceTensor& logits, std::int32_t* device_ids) {
  const std::int64_t rows = check_logits(desc(logits));
  const std::uint64_t call = calls_++;
  if (rows == 0) return;
  if (params_.temperature == 0.0f) {
    argmax(ctx, logits, device_ids);
    return;
  }
  const std::int64_t vocab = logits.dim(1);
  // The rows' weights, from the stream-ordered pool: free again as soon as the kernel is done.
  DeviceBuffer<float> weights(rows * vocab, ctx.stream());
  const float inverse_temperature = 1.0f / params_.temperature;
  with_activation_type(logits.dtype(), [&](auto tag) {
    using T = decltype(tag);
    sample_kernel<T><<<static_cast<unsigned>(rows), kSampleThreads, 0, ctx.stream()>>>(
        static_cast<const T*>(logits.data()), static_cast<int>(vocab), inverse_temperature,
        params_.top_k, params_.top_p, params_.seed, call, weights.data(), device_ids);
    LWM_CUDA_CHECK_LAUNCH("sample_kernel");
  });
}

}  // namespace lwm::cuda
