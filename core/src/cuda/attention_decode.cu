// Split-K decode attention (flash-decoding): a few queries against a long KV run is memory bound,
// and one block per head would leave most of the GPU idle, so the keys are split across blocks.
// Each block streams its key range once for every query, keeping an online-softmax state per
// lane in fp32; the lanes and warps of the block are then merged by log-sum-exp into one partial
// (out, lse) per split, and a second kernel merges the splits (spec ring-attention §1.1, §1.7).
//
// Lanes: a K/V row of D elements is read by D/8 lanes (16 bytes of bf16 or 8 of int8 each), so a
// warp reads 32/(D/8) rows per step, fully coalesced; each step issues kUnroll rows' loads before
// using any, to keep enough bytes in flight.
#include <algorithm>
#include <string>

#include "cuda/attention_common.cuh"
#include "cuda/cuda_check.h"
#include "cuda/device_buffer.h"
#include "lwm/error.h"

namespace lwm::cuda {
namespace {

using namespace attention_detail;

constexpr int kDecodeWarps = 4;
constexpr int kDecodeThreads = kDecodeWarps * 32;
constexpr int kUnroll = 4;
constexpr std::int64_t kMinKeysPerSplit = 256;  // below this a split costs more than it saves

struct DecodeParams {
  const __nv_bfloat16* q;
  KvBlock kv;
  std::int64_t num_queries;
  int num_heads;
  int num_kv_heads;
  float scale_log2;
  MaskParams mask;
  std::int64_t keys_per_split;
  float* partial_out;  // [splits, num_queries, num_heads, D]
  float* partial_lse;  // [splits, num_heads, num_queries]
};

// Merges (m_b, l_b, acc_b) into (m, l, acc): the unnormalised form of §1.1, base 2.
template <int N>
__device__ __forceinline__ void merge_state(float& m, float& l, float (&acc)[N], float m_b,
                                            float l_b, const float (&acc_b)[N]) {
  const float top = fmaxf(m, m_b);
  if (top == negative_infinity()) return;  // both empty
  const float a = exp2f(m - top);
  const float b = exp2f(m_b - top);
  l = l * a + l_b * b;
#pragma unroll
  for (int e = 0; e < N; ++e) acc[e] = acc[e] * a + acc_b[e] * b;
  m = top;
}

template <int D, KvPrecision P, int NQ>
__global__ void __launch_bounds__(kDecodeThreads) decode_split_kernel(DecodeParams p) {
  constexpr int G = D / 8;  // lanes per K/V row
  constexpr int kRowsPerWarp = 32 / G;
  constexpr int kRowsPerStep = kRowsPerWarp * kDecodeWarps;
  __shared__ float block_acc[kDecodeWarps][NQ][D];
  __shared__ float block_max[kDecodeWarps][NQ];
  __shared__ float block_sum[kDecodeWarps][NQ];

  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int sub = lane / G;   // which row of the warp's step
  const int part = lane % G;  // which eight elements of the row
  const std::int64_t split = blockIdx.x;
  const int head = static_cast<int>(blockIdx.y);
  const int kv_head = head / (p.num_heads / p.num_kv_heads);
  const std::int64_t nq = p.num_queries;
  const std::int64_t num_keys = p.kv.num_keys;
  const std::int64_t kv_stride = static_cast<std::int64_t>(p.num_kv_heads) * D;
  const bool segments = p.mask.query_segments != nullptr;

  const std::int64_t begin = split * p.keys_per_split;
  std::int64_t end = min(num_keys, begin + p.keys_per_split);
  // No query sees past key query_offset + nq - 1 when causal.
  if (p.mask.causal) end = min(end, p.mask.query_offset + nq);

  float q[NQ][8];
  std::int32_t q_segment[NQ];
  float m[NQ];
  float l[NQ];
  float acc[NQ][8];
#pragma unroll
  for (int qq = 0; qq < NQ; ++qq) {
    m[qq] = negative_infinity();
    l[qq] = 0.0f;
    q_segment[qq] = 0;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      acc[qq][e] = 0.0f;
      q[qq][e] = 0.0f;
    }
    if (qq < nq) {
      Raw8<KvPrecision::bf16> raw;
      raw.load(p.q, nullptr, (qq * p.num_heads + head) * static_cast<std::int64_t>(D) + part * 8,
               0);
      raw.to_float(q[qq]);
#pragma unroll
      for (int e = 0; e < 8; ++e) q[qq][e] *= p.scale_log2;
      if (segments) q_segment[qq] = p.mask.query_segments[qq];
    }
  }

  for (std::int64_t base = begin + warp * kRowsPerWarp; base < end;
       base += static_cast<std::int64_t>(kRowsPerStep) * kUnroll) {
    Raw8<P> key[kUnroll];
    Raw8<P> value[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const std::int64_t kj = base + u * kRowsPerStep + sub;
      if (kj < end) {
        const std::int64_t element = kj * kv_stride + kv_head * D + part * 8;
        const std::int64_t row = kj * p.num_kv_heads + kv_head;
        key[u].load(p.kv.keys, p.kv.key_scales, element, row);
        value[u].load(p.kv.values, p.kv.value_scales, element, row);
      } else {
        key[u].zero();
        value[u].zero();
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const std::int64_t kj = base + u * kRowsPerStep + sub;
      const bool valid = kj < end;
      float k[8];
      float v[8];
      key[u].to_float(k);
      value[u].to_float(v);
      const std::int32_t k_segment = (valid && segments) ? p.mask.key_segments[kj] : 0;
#pragma unroll
      for (int qq = 0; qq < NQ; ++qq) {
        if (qq >= nq) break;  // uniform across the warp: the shuffles below stay converged
        float s = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) s = fmaf(q[qq][e], k[e], s);
#pragma unroll
        for (int offset = G / 2; offset > 0; offset >>= 1) {
          s += __shfl_xor_sync(0xffffffffu, s, offset);
        }
        bool visible = valid;
        if (p.mask.causal && kj > p.mask.query_offset + qq) visible = false;
        if (segments && k_segment != q_segment[qq]) visible = false;
        if (visible) {
          const float top = fmaxf(m[qq], s);
          const float alpha = exp2f(m[qq] - top);
          const float weight = exp2f(s - top);
          l[qq] = l[qq] * alpha + weight;
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[qq][e] = fmaf(acc[qq][e], alpha, weight * v[e]);
          m[qq] = top;
        }
      }
    }
  }

  // Lanes holding the same eight elements for different rows: merge across the warp.
#pragma unroll
  for (int offset = G; offset < 32; offset <<= 1) {
#pragma unroll
    for (int qq = 0; qq < NQ; ++qq) {
      if (qq >= nq) break;
      const float m_b = __shfl_xor_sync(0xffffffffu, m[qq], offset);
      const float l_b = __shfl_xor_sync(0xffffffffu, l[qq], offset);
      float acc_b[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) acc_b[e] = __shfl_xor_sync(0xffffffffu, acc[qq][e], offset);
      merge_state(m[qq], l[qq], acc[qq], m_b, l_b, acc_b);
    }
  }
  if (sub == 0) {
    for (int qq = 0; qq < nq && qq < NQ; ++qq) {
#pragma unroll
      for (int e = 0; e < 8; ++e) block_acc[warp][qq][part * 8 + e] = acc[qq][e];
      if (part == 0) {
        block_max[warp][qq] = m[qq];
        block_sum[warp][qq] = l[qq];
      }
    }
  }
  __syncthreads();

  // Merge the warps and write this split's normalised partial (out, lse).
  for (int index = static_cast<int>(threadIdx.x); index < nq * D; index += kDecodeThreads) {
    const int qq = index / D;
    const int d = index % D;
    float top = negative_infinity();
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) top = fmaxf(top, block_max[w][qq]);
    float out = 0.0f;
    float lse = negative_infinity();
    if (top != negative_infinity()) {
      float sum = 0.0f;
      float numerator = 0.0f;
#pragma unroll
      for (int w = 0; w < kDecodeWarps; ++w) {
        const float weight = exp2f(block_max[w][qq] - top);
        sum += block_sum[w][qq] * weight;
        numerator += block_acc[w][qq][d] * weight;
      }
      out = numerator / sum;
      lse = (top + log2f(sum)) * kLn2;
    }
    p.partial_out[((split * nq + qq) * p.num_heads + head) * D + d] = out;
    if (d == 0) p.partial_lse[(split * p.num_heads + head) * nq + qq] = lse;
  }
}

struct DecodeMergeParams {
  const float* partial_out;
  const float* partial_lse;
  std::int64_t splits;
  std::int64_t num_queries;
  int num_heads;
  int head_dim;
  AttentionResult result;
};

// One block per (query, head), one thread per output element.
__global__ void decode_merge_kernel(DecodeMergeParams p) {
  const std::int64_t qi = blockIdx.x;
  const int head = static_cast<int>(blockIdx.y);
  const int d = static_cast<int>(threadIdx.x);
  const std::int64_t nq = p.num_queries;
  float top = negative_infinity();
  for (std::int64_t s = 0; s < p.splits; ++s) {
    top = fmaxf(top, p.partial_lse[(s * p.num_heads + head) * nq + qi]);
  }
  float out = 0.0f;
  float lse = negative_infinity();
  if (top != negative_infinity()) {
    float sum = 0.0f;
    float numerator = 0.0f;
    for (std::int64_t s = 0; s < p.splits; ++s) {
      const float split_lse = p.partial_lse[(s * p.num_heads + head) * nq + qi];
      if (split_lse == negative_infinity()) continue;
      const float weight = expf(split_lse - top);
      sum += weight;
      numerator += weight * p.partial_out[((s * nq + qi) * p.num_heads + head) * p.head_dim + d];
    }
    out = numerator / sum;
    lse = top + logf(sum);
  }
  MergeWeights w{0.0f, 1.0f, lse};
  if (p.result.merge) w = merge_weights(p.result.lse[head * nq + qi], lse);
  const std::int64_t index = (qi * p.num_heads + head) * p.head_dim + d;
  float o = out * w.w_new;
  if (w.w_in != 0.0f) o += w.w_in * p.result.out[index];
  // Every thread has read its incoming element before thread 0 replaces the shared lse.
  if (p.result.out != nullptr) p.result.out[index] = o;
  if (p.result.out_bf16 != nullptr) p.result.out_bf16[index] = __float2bfloat16_rn(o);
  __syncthreads();
  if (d == 0 && p.result.lse != nullptr) p.result.lse[head * nq + qi] = w.lse;
}

template <int D, KvPrecision P>
void launch_decode_split(const DecodeParams& params, std::int64_t splits, int num_heads,
                         cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(splits), static_cast<unsigned>(num_heads));
  if (params.num_queries == 1) {
    decode_split_kernel<D, P, 1><<<grid, kDecodeThreads, 0, stream>>>(params);
  } else {
    decode_split_kernel<D, P, static_cast<int>(kMaxDecodeQueries)>
        <<<grid, kDecodeThreads, 0, stream>>>(params);
  }
  LWM_CUDA_CHECK_LAUNCH("decode_split_kernel");
}

}  // namespace

std::int64_t decode_key_splits(std::int64_t num_keys, const AttentionShape& shape) {
  int device = 0;
  int multiprocessors = 0;
  LWM_CUDA_CHECK(cudaGetDevice(&device));
  LWM_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
  // About four blocks per SM in flight keeps HBM busy; never split below kMinKeysPerSplit keys.
  const std::int64_t heads = std::max<std::int64_t>(1, shape.num_heads);
  const std::int64_t wanted = (4 * static_cast<std::int64_t>(multiprocessors) + heads - 1) / heads;
  const std::int64_t most =
      std::max<std::int64_t>(1, (num_keys + kMinKeysPerSplit - 1) / kMinKeysPerSplit);
  return std::clamp<std::int64_t>(wanted, 1, most);
}

void flash_attention_decode(const __nv_bfloat16* q, std::int64_t num_queries, const KvBlock& kv,
                            const AttentionShape& shape, const DeviceAttentionOptions& options,
                            const AttentionResult& result, cudaStream_t stream,
                            std::int64_t key_splits) {
  check_attention_call("decode", q, num_queries, kv, shape, options, result);
  if (num_queries > kMaxDecodeQueries) {
    throw Error(ErrorKind::invalid_argument,
                "CUDA attention (decode): " + std::to_string(num_queries) +
                    " queries; decode takes at most " + std::to_string(kMaxDecodeQueries) +
                    " (use flash_attention_forward for more)");
  }
  if (key_splits < 0 || key_splits > 65535) {
    throw Error(ErrorKind::invalid_argument, "CUDA attention (decode): key_splits " +
                                                 std::to_string(key_splits) + " outside 0..65535");
  }
  if (num_queries == 0) return;
  std::int64_t splits = key_splits > 0 ? key_splits : decode_key_splits(kv.num_keys, shape);
  const std::int64_t keys_per_split =
      std::max<std::int64_t>(1, (kv.num_keys + splits - 1) / splits);
  const int heads = static_cast<int>(shape.num_heads);
  const int d = static_cast<int>(shape.head_dim);
  DeviceBuffer<float> partial_out(splits * num_queries * shape.num_heads * shape.head_dim, stream);
  DeviceBuffer<float> partial_lse(splits * num_queries * shape.num_heads, stream);
  const DecodeParams params{q,
                            kv,
                            num_queries,
                            heads,
                            static_cast<int>(shape.num_kv_heads),
                            scale_log2(shape, options),
                            MaskParams{options.causal, options.query_offset, options.query_segments,
                                       options.key_segments},
                            keys_per_split,
                            partial_out.data(),
                            partial_lse.data()};
  const bool int8 = kv.precision == KvPrecision::int8;
  if (d == 64) {
    if (int8) {
      launch_decode_split<64, KvPrecision::int8>(params, splits, heads, stream);
    } else {
      launch_decode_split<64, KvPrecision::bf16>(params, splits, heads, stream);
    }
  } else {
    if (int8) {
      launch_decode_split<128, KvPrecision::int8>(params, splits, heads, stream);
    } else {
      launch_decode_split<128, KvPrecision::bf16>(params, splits, heads, stream);
    }
  }
  const DecodeMergeParams merge{
      partial_out.data(), partial_lse.data(), splits, num_queries, heads, d, result};
  decode_merge_kernel<<<dim3(static_cast<unsigned>(num_queries), static_cast<unsigned>(heads)), d,
                        0, stream>>>(merge);
  LWM_CUDA_CHECK_LAUNCH("decode_merge_kernel");
}

}  // namespace lwm::cuda
