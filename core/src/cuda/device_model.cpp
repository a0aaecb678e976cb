#include "cuda/device_model.h"

#include <cuda_bf16.h>

#include <string>

#include "cuda/attention.h"
#include "cuda/ops.h"
#include "lwm/error.h"

namespace lwm::cuda {
namespace {

DeviceKvCache make_cache(const Model& model, std::int64_t capacity, KvPrecision kv,
                         cudaStream_t stream) {
  if (kv == KvPrecision::f32) {
    throw Error(ErrorKind::unsupported,
                "a GPU keeps its KV cache in bf16 or int8; f32 is the CPU's format");
  }
  if (!attention_head_dim_supported(model.config().head_dim())) {
    throw Error(ErrorKind::unsupported,
                "model '" + model.directory().string() + "' has head dim " +
                    std::to_string(model.config().head_dim()) +
                    ", which the CUDA attention kernels do not have (64 and 128 are built); run "
                    "it on the CPU");
  }
  return DeviceKvCache(model.config(), capacity, kv, stream);
}

}  // namespace

DeviceModel::DeviceModel(const Model& model, Context& ctx, std::int64_t capacity, KvPrecision kv)
    : model_(model), ctx_(ctx), cache_(make_cache(model, capacity, kv, ctx.stream())) {
  for (const Model::LayerWeights& host : model.layer_weights()) {
    layers_.push_back(DeviceLayer{upload_bf16(host.attention_norm), upload_bf16(host.ffn_norm),
                                  upload_bf16(host.wq), upload_bf16(host.wk), upload_bf16(host.wv),
                                  upload_bf16(host.wo), upload_bf16(host.w1), upload_bf16(host.w2),
                                  upload_bf16(host.w3)});
  }
  token_embedding_ = upload_bf16(model.token_embedding());
  final_norm_ = upload_bf16(model.final_norm());
  lm_head_ = upload_bf16(model.lm_head());
  if (model.config().has_vision()) {
    vision_embedding_ = upload_bf16(model.vision_embedding());
    vision_head_ = upload_bf16(model.vision_head());
  }
  ctx_.synchronize();  // uploads done (and any failure raised) before the first forward
}

DeviceTensor DeviceModel::upload_bf16(const Tensor& host) {
  weight_bytes_ += host.numel() * 2;
  DeviceTensor stored = DeviceTensor::upload(host, ctx_.stream());
  if (stored.dtype() == DType::bf16) return stored;
  DeviceTensor converted(DType::bf16, host.shape(), ctx_.stream());
  convert(ctx_, stored, converted);
  return converted;
}

DeviceLinear DeviceModel::upload_bf16(const Linear& host) {
  return DeviceLinear{upload_bf16(host.weight), host.layout};
}

// Each position takes its row from the text or the vision embedding (spec §2.2), a run of
// same-modality tokens at a time, as Model::embed does.
void DeviceModel::embed(std::span<const std::int32_t> tokens,
                        std::span<const std::uint8_t> vision_mask, DeviceTensor& out) {
  const auto is_vision = [&](std::size_t i) { return !vision_mask.empty() && vision_mask[i] != 0; };
  for (std::size_t begin = 0; begin < tokens.size();) {
    const bool vision = is_vision(begin);
    std::size_t end = begin + 1;
    while (end < tokens.size() && is_vision(end) == vision) ++end;
    DeviceTensor rows =
        out.slice_rows(static_cast<std::int64_t>(begin), static_cast<std::int64_t>(end));
    try {
      embedding(ctx_, vision ? vision_embedding_ : token_embedding_,
                tokens.subspan(begin, end - begin), rows);
    } catch (const Error& error) {
      throw Error(error.kind(), std::string(vision ? "vision" : "text") + " tokens from position " +
                                    std::to_string(begin) + ": " + error.what());
    }
    begin = end;
  }
}

// Causal attention of this call's n queries over the cache, whose rows [0, start + n) already
// hold this call's keys: the split-K decode kernel for a few queries, the flash kernel otherwise.
void DeviceModel::attend(std::int64_t layer, const DeviceTensor& q, std::int64_t n,
                         DeviceTensor& out) {
  const ModelConfig& c = model_.config();
  const std::int64_t start = cache_.size();
  const AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim()};
  DeviceAttentionOptions options;
  options.causal = true;
  options.query_offset = start;
  DeviceTensor out_f32(DType::f32, {n, c.num_heads * c.head_dim()}, ctx_.stream());
  DeviceTensor lse(DType::f32, {c.num_heads, n}, ctx_.stream());
  AttentionResult result;
  result.out = static_cast<float*>(out_f32.data());
  result.lse = static_cast<float*>(lse.data());
  result.out_bf16 = static_cast<__nv_bfloat16*>(out.data());
  const KvBlock keys = cache_.layer(layer, 0, start + n);
  const auto* queries = static_cast<const __nv_bfloat16*>(q.data());
  if (n <= kMaxDecodeQueries) {
    flash_attention_decode(queries, n, keys, shape, options, result, ctx_.stream());
  } else {
    flash_attention_forward(queries, n, keys, shape, options, result, ctx_.stream());
  }
}

void DeviceModel::forward(std::span<const std::int32_t> tokens, const ForwardOptions& options,
                          std::vector<float>* logits) {
  const auto n = static_cast<std::int64_t>(tokens.size());
  const LogitsFor which = options.logits_for;
  if (n == 0) throw Error(ErrorKind::invalid_argument, "forward: no tokens");
  model_.check_modalities(options, n);
  const std::int64_t start = cache_.size();
  if (start + n > cache_.capacity()) {
    throw Error(ErrorKind::invalid_argument,
                "forward: " + std::to_string(n) + " tokens do not fit in the GPU's KV cache (" +
                    std::to_string(start) + " of " + std::to_string(cache_.capacity()) + " used)");
  }
  if (which != LogitsFor::none && logits == nullptr) {
    throw Error(ErrorKind::invalid_argument, "forward: logits requested without an output");
  }
  const ModelConfig& c = model_.config();
  DeviceTensor h(DType::f32, {n, c.hidden_size}, ctx_.stream());  // the residual stream
  embed(tokens, options.vision_mask, h);
  LayerActivations a(ctx_, c, n);
  for (std::int64_t l = 0; l < c.num_layers; ++l) {
    const DeviceLayer& layer = layers_[static_cast<std::size_t>(l)];
    attention_inputs(ctx_, c, layer, model_.rotary(), start, h, a);
    cache_.store(l, static_cast<const __nv_bfloat16*>(a.k.data()),
                 static_cast<const __nv_bfloat16*>(a.v.data()), n, ctx_.stream());
    attend(l, a.q, n, a.attended);
    attention_output_and_feed_forward(ctx_, c, layer, h, a);
  }
  cache_.advance(n);
  if (which == LogitsFor::none) {
    ctx_.synchronize();  // raise an asynchronous failure of this call here, not in a later one
    return;
  }
  // Only the rows whose logits are asked for take the last residual add and the final norm.
  const std::int64_t first = which == LogitsFor::last ? n - 1 : 0;
  DeviceTensor h_rows = h.slice_rows(first, n);
  DeviceTensor pending = a.projected.slice_rows(first, n);
  DeviceTensor normed_rows = a.normed.slice_rows(first, n);
  residual_rms_norm(ctx_, h_rows, a.pending ? &pending : nullptr, final_norm_,
                    static_cast<float>(c.rms_norm_eps), normed_rows);
  const DeviceLinear& head = options.head == Head::vision ? vision_head_ : lm_head_;
  DeviceTensor out(DType::f32, {n - first, head.out_features()}, ctx_.stream());
  linear(ctx_, normed_rows, head, out);
  const Tensor host = out.download();
  logits->assign(host.f32(), host.f32() + host.numel());
}

}  // namespace lwm::cuda
