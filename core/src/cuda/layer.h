// The steps of one LWM transformer layer around attention on the GPU, composed from ops.h and
// linear.h exactly as Model::forward composes the CPU ops (spec §1.2), with the residual add
// fused into the next norm: a layer's last projection stays pending and is added to the residual
// stream by the next layer's (or the final) residual_rms_norm. Attention itself, and where K and
// V are stored, belong to the caller (the attention kernels and the KV cache).
#pragma once

#include <cstdint>

#include "cuda/context.h"
#include "cuda/device_tensor.h"
#include "cuda/linear.h"
#include "lwm/model_config.h"
#include "lwm/rope.h"

namespace lwm::cuda {

// One layer's weights on the GPU, in the layouts their file stores (bf16 for the bf16 backend).
struct DeviceLayer {
  DeviceTensor attention_norm, ffn_norm;  // [hidden]
  DeviceLinear wq, wk, wv, wo, w1, w2, w3;
};

// Activations of one chunk of `tokens` rows, allocated once and reused by every layer. bf16
// (`dtype`) except `projected`, the pending f32 residual update.
struct LayerActivations {
  LayerActivations(Context& ctx, const ModelConfig& config, std::int64_t tokens,
                   DType dtype = DType::bf16);
  DeviceTensor normed;     // [tokens, hidden]
  DeviceTensor q;          // [tokens, heads, head_dim]
  DeviceTensor k, v;       // [tokens, kv_heads, head_dim]
  DeviceTensor attended;   // [tokens, hidden]: the caller's attention writes it
  DeviceTensor gate, up;   // [tokens, intermediate]
  DeviceTensor projected;  // [tokens, hidden] f32
  bool pending = false;    // `projected` still has to be added to the residual stream
};

// h += the pending projection (if any); normed = rmsnorm(h)·attention_norm; q, k, v = normed·W;
// RoPE on q and k at positions position_offset + row. h: [tokens, hidden] f32.
void attention_inputs(Context& ctx, const ModelConfig& config, const DeviceLayer& layer,
                      const RotaryEmbedding& rotary, std::int64_t position_offset, DeviceTensor& h,
                      LayerActivations& a);

// After attention: h += attended·wo; normed = rmsnorm(h)·ffn_norm; projected =
// w2·(silu(w1·normed) ⊙ w3·normed), left pending.
void attention_output_and_feed_forward(Context& ctx, const ModelConfig& config,
                                       const DeviceLayer& layer, DeviceTensor& h,
                                       LayerActivations& a);

}  // namespace lwm::cuda
