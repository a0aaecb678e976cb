// The flash-style forward kernel (prefill and ring steps). One thread block owns 64 query rows
// of one head and scans the keys in tiles of 64 with the online softmax of spec ring-attention
// §1.1. Four warps, 16 query rows each; the two products (S = Q·Kᵀ and O += P·V) run on tensor
// cores through bf16 WMMA fragments with fp32 accumulation, the softmax in fp32 on CUDA cores.
//
// Shared memory per block (head_dim 128: ~102 KiB, so two blocks fit on an H100 SM):
//   Q, K, V tiles   bf16 [64][D+8]     (int8 K/V are dequantised to bf16 while loading)
//   S / P           fp32 [64][68], P written over S as bf16 [64][72] row by row
//   O accumulator   fp32 [64][D+4]     (WMMA accumulators have no documented row layout, so
//                                       the per-row rescale happens here, between products)
//   row max, sum, rescale factor       fp32 [64] each
// The +8/+4 padding staggers rows across banks; every fragment pointer stays 32-byte aligned.
#include <mma.h>

#include <string>

#include "cuda/attention_common.cuh"
#include "cuda/cuda_check.h"
#include "lwm/error.h"

namespace lwm::cuda {
namespace {

using namespace attention_detail;
namespace wmma = nvcuda::wmma;

constexpr int kBlockM = 64;  // query rows per block
constexpr int kBlockN = 64;  // keys per tile
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kWarpRows = kBlockM / kWarps;  // 16: one WMMA row of fragments per warp

constexpr std::size_t round_up(std::size_t bytes) {
  return (bytes + 127) / 128 * 128;
}

template <int D>
struct ForwardLayout {
  static constexpr int kQkvLd = D + 8;      // bf16 elements per Q/K/V row
  static constexpr int kSLd = kBlockN + 4;  // fp32 elements per S row
  static constexpr int kPLd = kBlockN + 8;  // bf16 elements per P row (over S)
  static constexpr int kOLd = D + 4;        // fp32 elements per O row
  static constexpr std::size_t kQBytes = round_up(sizeof(__nv_bfloat16) * kBlockM * kQkvLd);
  static constexpr std::size_t kKvBytes = round_up(sizeof(__nv_bfloat16) * kBlockN * kQkvLd);
  static constexpr std::size_t kSBytes = round_up(sizeof(float) * kBlockM * kSLd);
  static constexpr std::size_t kOBytes = round_up(sizeof(float) * kBlockM * kOLd);
  static constexpr std::size_t kStatBytes = round_up(sizeof(float) * kBlockM);
  static constexpr std::size_t kQ = 0;
  static constexpr std::size_t kK = kQ + kQBytes;
  static constexpr std::size_t kV = kK + kKvBytes;
  static constexpr std::size_t kS = kV + kKvBytes;
  static constexpr std::size_t kO = kS + kSBytes;
  static constexpr std::size_t kMax = kO + kOBytes;
  static constexpr std::size_t kSum = kMax + kStatBytes;
  static constexpr std::size_t kAlpha = kSum + kStatBytes;
  static constexpr std::size_t kTotal = kAlpha + kStatBytes;
  // P (bf16, row r at byte 144·r of the warp's S rows) never overwrites an S row not yet read:
  // row r of P ends before S row r+1 begins.
  static_assert(sizeof(__nv_bfloat16) * kPLd <= sizeof(float) * kSLd, "P must fit over S");
};

struct ForwardParams {
  const __nv_bfloat16* q;
  KvBlock kv;
  std::int64_t num_queries;
  int num_heads;
  int num_kv_heads;
  float scale_log2;
  MaskParams mask;
  AttentionResult result;
};

template <int D, KvPrecision P>
__global__ void __launch_bounds__(kThreads) flash_forward_kernel(ForwardParams p) {
  using L = ForwardLayout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  auto* sq = reinterpret_cast<__nv_bfloat16*>(smem + L::kQ);
  auto* sk = reinterpret_cast<__nv_bfloat16*>(smem + L::kK);
  auto* sv = reinterpret_cast<__nv_bfloat16*>(smem + L::kV);
  auto* ss = reinterpret_cast<float*>(smem + L::kS);
  auto* so = reinterpret_cast<float*>(smem + L::kO);
  auto* row_max = reinterpret_cast<float*>(smem + L::kMax);
  auto* row_sum = reinterpret_cast<float*>(smem + L::kSum);
  auto* row_alpha = reinterpret_cast<float*>(smem + L::kAlpha);

  const int warp = static_cast<int>(threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x) % 32;
  // Causal work grows with the query tile; the heaviest tiles are scheduled first.
  const std::int64_t tile = static_cast<std::int64_t>(gridDim.x) - 1 - blockIdx.x;
  const std::int64_t q0 = tile * kBlockM;
  const int head = static_cast<int>(blockIdx.y);
  const int kv_head = head / (p.num_heads / p.num_kv_heads);
  const std::int64_t q_stride = static_cast<std::int64_t>(p.num_heads) * D;
  const std::int64_t kv_stride = static_cast<std::int64_t>(p.num_kv_heads) * D;
  const std::int64_t num_keys = p.kv.num_keys;
  constexpr int kChunks = D / 8;  // eight-element pieces per row

  for (int i = static_cast<int>(threadIdx.x); i < kBlockM * kChunks; i += kThreads) {
    const int r = i / kChunks;
    const int c = (i % kChunks) * 8;
    const std::int64_t qi = q0 + r;
    uint4 bits = make_uint4(0u, 0u, 0u, 0u);  // rows past the end are zero, never read back
    if (qi < p.num_queries) {
      bits = *reinterpret_cast<const uint4*>(p.q + qi * q_stride + head * D + c);
    }
    *reinterpret_cast<uint4*>(sq + r * L::kQkvLd + c) = bits;
  }
  for (int i = static_cast<int>(threadIdx.x); i < kBlockM * L::kOLd; i += kThreads) so[i] = 0.0f;
  for (int i = static_cast<int>(threadIdx.x); i < kBlockM; i += kThreads) {
    row_max[i] = negative_infinity();
    row_sum[i] = 0.0f;
  }
  __syncthreads();

  // This warp's query rows stay in registers as tensor-core operands for the whole scan.
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> q_frag[D / 16];
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    wmma::load_matrix_sync(q_frag[kk], sq + warp * kWarpRows * L::kQkvLd + kk * 16, L::kQkvLd);
  }
  float* ws = ss + warp * kWarpRows * L::kSLd;
  auto* wp = reinterpret_cast<__nv_bfloat16*>(ws);
  float* wo = so + warp * kWarpRows * L::kOLd;

  // Keys past the last row's causal horizon are masked for every row of the tile: skipped. With
  // a negative query offset the limit can be <= 0 and no key is scanned at all.
  std::int64_t key_end = num_keys;
  if (p.mask.causal) key_end = min(key_end, p.mask.query_offset + q0 + kBlockM);

  for (std::int64_t k0 = 0; k0 < key_end; k0 += kBlockN) {
    for (int i = static_cast<int>(threadIdx.x); i < kBlockN * kChunks; i += kThreads) {
      const int r = i / kChunks;
      const int c = (i % kChunks) * 8;
      const std::int64_t kj = k0 + r;
      Raw8<P> key;
      Raw8<P> value;
      if (kj < num_keys) {
        // Zero rows past the end: a masked score gives p = 0, but 0·garbage could be NaN.
        const std::int64_t element = kj * kv_stride + kv_head * D + c;
        const std::int64_t row = kj * p.num_kv_heads + kv_head;
        key.load(p.kv.keys, p.kv.key_scales, element, row);
        value.load(p.kv.values, p.kv.value_scales, element, row);
      } else {
        key.zero();
        value.zero();
      }
      key.to_bf16(sk + r * L::kQkvLd + c);
      value.to_bf16(sv + r * L::kQkvLd + c);
    }
    __syncthreads();

    // S = Q·Kᵀ for this warp's 16 rows × 64 keys. K is stored [key][d], which is Kᵀ in
    // column-major order: exactly the matrix_b operand.
    {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> s_frag[kBlockN / 16];
#pragma unroll
      for (int n = 0; n < kBlockN / 16; ++n) wmma::fill_fragment(s_frag[n], 0.0f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
        for (int n = 0; n < kBlockN / 16; ++n) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> k_frag;
          wmma::load_matrix_sync(k_frag, sk + n * 16 * L::kQkvLd + kk * 16, L::kQkvLd);
          wmma::mma_sync(s_frag[n], q_frag[kk], k_frag, s_frag[n]);
        }
      }
#pragma unroll
      for (int n = 0; n < kBlockN / 16; ++n) {
        wmma::store_matrix_sync(ws + n * 16, s_frag[n], L::kSLd, wmma::mem_row_major);
      }
    }
    __syncwarp();

    // Online softmax, one row at a time across the warp (lane owns keys lane and lane + 32).
    const bool full_tile = k0 + kBlockN <= num_keys;
    for (int r = 0; r < kWarpRows; ++r) {
      const int row = warp * kWarpRows + r;
      const std::int64_t qi = q0 + row;
      const bool real_row = qi < p.num_queries;
      const std::int64_t horizon = p.mask.query_offset + qi;  // last visible key when causal
      const std::int32_t segment =
          (p.mask.query_segments != nullptr && real_row) ? p.mask.query_segments[qi] : 0;
      float s[2];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int column = lane + 32 * half;
        const std::int64_t kj = k0 + column;
        bool visible = full_tile || kj < num_keys;
        if (p.mask.causal && kj > horizon) visible = false;
        if (visible && p.mask.query_segments != nullptr && real_row &&
            p.mask.key_segments[kj] != segment) {
          visible = false;
        }
        s[half] = visible ? ws[r * L::kSLd + column] * p.scale_log2 : negative_infinity();
      }
      const float m_old = row_max[row];
      const float m_new = fmaxf(m_old, warp_max(fmaxf(s[0], s[1])));
      float p0 = 0.0f;
      float p1 = 0.0f;
      float alpha = 1.0f;
      if (m_new != negative_infinity()) {  // else nothing visible yet: the row stays empty
        p0 = exp2f(s[0] - m_new);          // exp2(-inf) = 0 for masked keys
        p1 = exp2f(s[1] - m_new);
        alpha = exp2f(m_old - m_new);  // 0 when the row had seen nothing before
      }
      const float tile_sum = warp_sum(p0 + p1);
      __syncwarp();  // every lane has read S row r before P row r overwrites it
      wp[r * L::kPLd + lane] = __float2bfloat16_rn(p0);
      wp[r * L::kPLd + lane + 32] = __float2bfloat16_rn(p1);
      if (lane == 0) {
        row_max[row] = m_new;
        row_sum[row] = row_sum[row] * alpha + tile_sum;
        row_alpha[row] = alpha;
      }
    }
    __syncwarp();

    // O = O·alpha + P·V: rescale the rows in shared memory, then accumulate on tensor cores.
    for (int i = lane; i < kWarpRows * D; i += 32) {
      const int r = i / D;
      wo[r * L::kOLd + i % D] *= row_alpha[warp * kWarpRows + r];
    }
    __syncwarp();
    {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>
          p_frag[kBlockN / 16];
#pragma unroll
      for (int kk = 0; kk < kBlockN / 16; ++kk) {
        wmma::load_matrix_sync(p_frag[kk], wp + kk * 16, L::kPLd);
      }
#pragma unroll
      for (int j = 0; j < D / 16; ++j) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> o_frag;
        wmma::load_matrix_sync(o_frag, wo + j * 16, L::kOLd, wmma::mem_row_major);
#pragma unroll
        for (int kk = 0; kk < kBlockN / 16; ++kk) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> v_frag;
          wmma::load_matrix_sync(v_frag, sv + kk * 16 * L::kQkvLd + j * 16, L::kQkvLd);
          wmma::mma_sync(o_frag, p_frag[kk], v_frag, o_frag);
        }
        wmma::store_matrix_sync(wo + j * 16, o_frag, L::kOLd, wmma::mem_row_major);
      }
    }
    __syncthreads();  // K/V tiles are overwritten next
  }
  __syncwarp();

  // Normalise, merge into the incoming state if asked, write fp32 (and bf16) out and lse.
  const std::int64_t nq = p.num_queries;
  for (int r = 0; r < kWarpRows; ++r) {
    const int row = warp * kWarpRows + r;
    const std::int64_t qi = q0 + row;
    if (qi >= nq) break;
    const float sum = row_sum[row];
    const float lse_new = sum > 0.0f ? (row_max[row] + log2f(sum)) * kLn2 : negative_infinity();
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    MergeWeights w{0.0f, 1.0f, lse_new};
    if (p.result.merge) w = merge_weights(p.result.lse[head * nq + qi], lse_new);
    const std::int64_t base = qi * q_stride + head * D;
    for (int c = lane; c < D; c += 32) {
      float o = wo[r * L::kOLd + c] * inv * w.w_new;
      if (w.w_in != 0.0f) o += w.w_in * p.result.out[base + c];
      if (p.result.out != nullptr) p.result.out[base + c] = o;
      if (p.result.out_bf16 != nullptr) p.result.out_bf16[base + c] = __float2bfloat16_rn(o);
    }
    if (lane == 0 && p.result.lse != nullptr) p.result.lse[head * nq + qi] = w.lse;
  }
}

template <int D, KvPrecision P>
void launch_forward(const ForwardParams& params, std::int64_t query_tiles, int num_heads,
                    cudaStream_t stream) {
  constexpr std::size_t bytes = ForwardLayout<D>::kTotal;
  // Over 48 KiB of dynamic shared memory must be opted into per kernel.
  LWM_CUDA_CHECK(cudaFuncSetAttribute(flash_forward_kernel<D, P>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(bytes)));
  const dim3 grid(static_cast<unsigned>(query_tiles), static_cast<unsigned>(num_heads));
  flash_forward_kernel<D, P><<<grid, kThreads, bytes, stream>>>(params);
  LWM_CUDA_CHECK_LAUNCH("flash_forward_kernel");
}

}  // namespace

void flash_attention_forward(const __nv_bfloat16* q, std::int64_t num_queries, const KvBlock& kv,
                             const AttentionShape& shape, const DeviceAttentionOptions& options,
                             const AttentionResult& result, cudaStream_t stream) {
  check_attention_call("forward", q, num_queries, kv, shape, options, result);
  if (num_queries == 0) return;
  const std::int64_t query_tiles = (num_queries + kBlockM - 1) / kBlockM;
  if (query_tiles > 0x7fffffff) {
    throw Error(ErrorKind::invalid_argument,
                "CUDA attention (forward): " + std::to_string(num_queries) +
                    " queries exceed one launch; split them into chunks");
  }
  ForwardParams params{q,
                       kv,
                       num_queries,
                       static_cast<int>(shape.num_heads),
                       static_cast<int>(shape.num_kv_heads),
                       scale_log2(shape, options),
                       MaskParams{options.causal, options.query_offset, options.query_segments,
                                  options.key_segments},
                       result};
  const int heads = static_cast<int>(shape.num_heads);
  const bool int8 = kv.precision == KvPrecision::int8;
  if (shape.head_dim == 64) {
    if (int8) {
      launch_forward<64, KvPrecision::int8>(params, query_tiles, heads, stream);
    } else {
      launch_forward<64, KvPrecision::bf16>(params, query_tiles, heads, stream);
    }
  } else {
    if (int8) {
      launch_forward<128, KvPrecision::int8>(params, query_tiles, heads, stream);
    } else {
      launch_forward<128, KvPrecision::bf16>(params, query_tiles, heads, stream);
    }
  }
}

}  // namespace lwm::cuda
