// SequenceRunner on one GPU: a Context and a DeviceModel (the CUDA backend).
#include "cuda_runner.h"

#include "cuda/context.h"
#include "cuda/device_model.h"

namespace lwm {
namespace {

class CudaSequenceRunner final : public SequenceRunner {
 public:
  CudaSequenceRunner(const Model& model, int device, std::int64_t capacity, KvPrecision kv)
      : context_(device), model_(model, context_, capacity, kv) {}

  const Model& model() const noexcept override { return model_.model(); }
  std::string device() const override { return "cuda:" + std::to_string(context_.device()); }
  KvPrecision kv_precision() const noexcept override { return model_.kv_precision(); }
  std::int64_t size() const noexcept override { return model_.size(); }
  std::int64_t capacity() const noexcept override { return model_.capacity(); }
  std::int64_t kv_cache_bytes() const noexcept override { return model_.cache_bytes(); }
  void forward(std::span<const std::int32_t> tokens, const ForwardOptions& options,
               std::vector<float>* logits) override {
    model_.forward(tokens, options, logits);
  }
  void truncate(std::int64_t size) override { model_.truncate(size); }

 private:
  cuda::Context context_;  // first: the model's memory and work live on its device and stream
  cuda::DeviceModel model_;
};

}  // namespace

std::unique_ptr<SequenceRunner> make_cuda_runner(const Model& model, int device,
                                                 std::int64_t capacity, KvPrecision kv) {
  return std::make_unique<CudaSequenceRunner>(model, device, capacity, kv);
}

}  // namespace lwm
