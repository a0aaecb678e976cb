// Device-side helpers shared by the backend's kernels (.cu files only): float32 loads and stores
// of each storage type, block-wide reductions, launch sizes, and the host-side switch from a
// runtime DType to the kernel template instantiated for it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "lwm/dtype.h"
#include "lwm/error.h"

namespace lwm::cuda {

__device__ __forceinline__ float to_f32(float v) {
  return v;
}
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
__device__ __forceinline__ float to_f32(__half v) {
  return __half2float(v);
}

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) {
  return __float2half_rn(v);
}

// Element-wise kernels move kPack consecutive elements per thread and step as one aligned vector
// access (16 bytes of bf16, 32 of f32) instead of kPack narrow ones: memory-bound kernels need
// few, wide requests in flight to approach HBM bandwidth. Used only when every pointer is
// aligned to a whole pack (packable()); the remainder and unaligned views go element by element.
constexpr int kPack = 8;

template <typename T>
struct alignas(sizeof(T) * kPack) Pack {
  T v[kPack];
};

template <typename T>
__device__ __forceinline__ void load_pack(const T* p, float (&out)[kPack]) {
  const Pack<T> pack = *reinterpret_cast<const Pack<T>*>(p);
#pragma unroll
  for (int j = 0; j < kPack; ++j) out[j] = to_f32(pack.v[j]);
}

template <typename T>
__device__ __forceinline__ void store_pack(T* p, const float (&in)[kPack]) {
  Pack<T> pack;
#pragma unroll
  for (int j = 0; j < kPack; ++j) pack.v[j] = from_f32<T>(in[j]);
  *reinterpret_cast<Pack<T>*>(p) = pack;
}

template <typename T>
bool packable(const void* pointer) {
  return reinterpret_cast<std::uintptr_t>(pointer) % sizeof(Pack<T>) == 0;
}

// Sum of `value` over the block (blockDim.x a multiple of 32, at most 1024); every thread gets
// the result. `scratch` holds 32 floats; the call synchronizes the block twice.
__device__ __forceinline__ float block_sum(float value, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = value;
  __syncthreads();
  const int warps = static_cast<int>(blockDim.x) / 32;
  value = lane < warps ? scratch[lane] : 0.0f;
  for (int offset = 16; offset > 0; offset /= 2)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// Grid size for a grid-stride loop over n elements with `threads` per block: enough blocks to
// fill the GPU several times over, never more than the elements need.
inline unsigned grid_for(std::int64_t n, int threads) {
  const std::int64_t blocks = (n + threads - 1) / threads;
  constexpr std::int64_t kMaxBlocks = 65536;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

// Calls fn(T{}) with T the device type stored as `dtype`; activations allow f32 and bf16 only.
template <typename Fn>
void with_storage_type(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::f32:
      fn(float{});
      return;
    case DType::bf16:
      fn(__nv_bfloat16{});
      return;
    case DType::f16:
      fn(__half{});
      return;
  }
  throw Error(ErrorKind::unsupported, "CUDA backend: unknown storage dtype");
}

template <typename Fn>
void with_activation_type(DType dtype, Fn&& fn) {
  if (dtype == DType::f32) {
    fn(float{});
  } else if (dtype == DType::bf16) {
    fn(__nv_bfloat16{});
  } else {
    throw Error(ErrorKind::unsupported, std::string("CUDA backend: activations in ") +
                                            dtype_name(dtype) + " are not supported");
  }
}

}  // namespace lwm::cuda
