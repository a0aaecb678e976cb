#include "cuda/layer.h"

#include "cuda/ops.h"

namespace lwm::cuda {

LayerActivations::LayerActivations(Context& ctx, const ModelConfig& config, std::int64_t tokens,
                                   DType dtype)
    : normed(dtype, {tokens, config.hidden_size}, ctx.stream()),
      q(dtype, {tokens, config.num_heads, config.head_dim()}, ctx.stream()),
      k(dtype, {tokens, config.num_kv_heads, config.head_dim()}, ctx.stream()),
      v(dtype, {tokens, config.num_kv_heads, config.head_dim()}, ctx.stream()),
      attended(dtype, {tokens, config.hidden_size}, ctx.stream()),
      gate(dtype, {tokens, config.intermediate_size}, ctx.stream()),
      up(dtype, {tokens, config.intermediate_size}, ctx.stream()),
      projected(DType::f32, {tokens, config.hidden_size}, ctx.stream()) {}

void attention_inputs(Context& ctx, const ModelConfig& config, const DeviceLayer& layer,
                      const RotaryEmbedding& rotary, std::int64_t position_offset, DeviceTensor& h,
                      LayerActivations& a) {
  const auto eps = static_cast<float>(config.rms_norm_eps);
  residual_rms_norm(ctx, h, a.pending ? &a.projected : nullptr, layer.attention_norm, eps,
                    a.normed);
  a.pending = false;
  // The projections see q, k, v as [tokens, width] matrices; RoPE as [tokens, heads, head_dim].
  const std::int64_t tokens = h.dim(0);
  DeviceTensor q = a.q.reshaped({tokens, config.num_heads * config.head_dim()});
  DeviceTensor k = a.k.reshaped({tokens, config.num_kv_heads * config.head_dim()});
  DeviceTensor v = a.v.reshaped({tokens, config.num_kv_heads * config.head_dim()});
  linear(ctx, a.normed, layer.wq, q);
  linear(ctx, a.normed, layer.wk, k);
  linear(ctx, a.normed, layer.wv, v);
  rope(ctx, a.q, rotary, position_offset);
  rope(ctx, a.k, rotary, position_offset);
}

void attention_output_and_feed_forward(Context& ctx, const ModelConfig& config,
                                       const DeviceLayer& layer, DeviceTensor& h,
                                       LayerActivations& a) {
  const auto eps = static_cast<float>(config.rms_norm_eps);
  linear(ctx, a.attended, layer.wo, a.projected);
  residual_rms_norm(ctx, h, &a.projected, layer.ffn_norm, eps, a.normed);
  linear(ctx, a.normed, layer.w1, a.gate);
  linear(ctx, a.normed, layer.w3, a.up);
  swiglu(ctx, a.gate, a.up, a.gate);
  linear(ctx, a.gate, layer.w2, a.projected);
  a.pending = true;
}

}  // namespace lwm::cuda
