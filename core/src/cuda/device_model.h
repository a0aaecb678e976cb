// The LWM transformer on one GPU (issue 3): a loaded Model's weights uploaded once, in bf16
// whatever the file stores (design.md "Precision"), a device KV cache in bf16 or int8, and
// model.cpp's forward composed from the CUDA layer steps (cuda/layer.h) and attention kernels
// (cuda/attention.h): the residual stream in f32, GEMM inputs and outputs in bf16 with f32
// accumulation, attention statistics in f32, logits in f32. The same tokens give the CPU model's
// logits within what bf16 activations cost (tests/core/gpu/test_cuda_model.cpp).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cuda/context.h"
#include "cuda/device_tensor.h"
#include "cuda/kv_cache_device.h"
#include "cuda/layer.h"
#include "cuda/linear.h"
#include "lwm/model.h"
#include "lwm/planner.h"

namespace lwm::cuda {

class DeviceModel {
 public:
  // Uploads `model`'s weights to ctx's device and allocates a KV cache of `capacity` tokens in
  // `kv` precision (bf16 or int8). Throws Error(out_of_memory) with the numbers when they do
  // not fit, Error(unsupported) for an f32 cache or a head dim the attention kernels lack.
  // `model` and `ctx` must outlive this object.
  DeviceModel(const Model& model, Context& ctx, std::int64_t capacity, KvPrecision kv);

  const Model& model() const noexcept { return model_; }
  KvPrecision kv_precision() const noexcept { return cache_.precision(); }
  std::int64_t size() const noexcept { return cache_.size(); }  // tokens in the KV cache
  std::int64_t capacity() const noexcept { return cache_.capacity(); }
  std::int64_t weight_bytes() const noexcept { return weight_bytes_; }
  std::int64_t cache_bytes() const noexcept { return cache_.bytes(); }

  // As Model::forward: runs `tokens` at positions size() … size()+n−1, appending their keys and
  // values, and writes the last token's logits (or every token's) to `logits` on the host.
  void forward(std::span<const std::int32_t> tokens, const ForwardOptions& options,
               std::vector<float>* logits);
  // Forgets every token from position `size` on.
  void truncate(std::int64_t size) { cache_.truncate(size); }

 private:
  DeviceTensor upload_bf16(const Tensor& host);
  DeviceLinear upload_bf16(const Linear& host);
  void embed(std::span<const std::int32_t> tokens, std::span<const std::uint8_t> vision_mask,
             DeviceTensor& out);
  void attend(std::int64_t layer, const DeviceTensor& q, std::int64_t n, DeviceTensor& out);

  const Model& model_;
  Context& ctx_;
  DeviceKvCache cache_;
  std::vector<DeviceLayer> layers_;
  DeviceTensor token_embedding_, vision_embedding_, final_norm_;
  DeviceLinear lm_head_, vision_head_;
  std::int64_t weight_bytes_ = 0;
};

}  // namespace lwm::cuda
