// Where one sequence's tokens run: a model and the KV cache its forward appends to, on the CPU or
// on one GPU (the CUDA backend). Generation (generation.h) and sessions (session.h) run the same
// on each. The device is chosen once, when the runner is made, and never changed behind the
// caller's back (design.md: nothing falls back to the CPU silently).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "lwm/devices.h"
#include "lwm/kv_cache.h"
#include "lwm/model.h"
#include "lwm/planner.h"

namespace lwm {

class SequenceRunner {
 public:
  virtual ~SequenceRunner() = default;

  virtual const Model& model() const noexcept = 0;
  virtual std::string device() const = 0;  // "cpu", "cuda:0"
  virtual KvPrecision kv_precision() const noexcept = 0;
  virtual std::int64_t size() const noexcept = 0;      // tokens in the KV cache
  virtual std::int64_t capacity() const noexcept = 0;  // tokens the KV cache can hold
  virtual std::int64_t kv_cache_bytes() const noexcept = 0;

  // As Model::forward: runs `tokens` at positions size() … size()+n−1, appending their keys and
  // values, and writes the logits asked for to `logits` (host memory).
  virtual void forward(std::span<const std::int32_t> tokens, const ForwardOptions& options,
                       std::vector<float>* logits) = 0;
  // Forgets every token from position `size` on.
  virtual void truncate(std::int64_t size) = 0;
  // The KV cache in host memory, for snapshots (Session::save and restore); null where the cache
  // lives on a device.
  virtual KVCache* host_cache() const noexcept { return nullptr; }
};

// The CPU backend: `model` running into an f32 KVCache, the caller's or its own.
class CpuSequenceRunner final : public SequenceRunner {
 public:
  CpuSequenceRunner(const Model& model, KVCache& cache) : model_(model), cache_(&cache) {}
  // Owns a new cache of `capacity` tokens (KVCache refuses what the machine cannot hold).
  CpuSequenceRunner(const Model& model, std::int64_t capacity);

  const Model& model() const noexcept override { return model_; }
  std::string device() const override { return "cpu"; }
  KvPrecision kv_precision() const noexcept override { return KvPrecision::f32; }
  std::int64_t size() const noexcept override { return cache_->size(); }
  std::int64_t capacity() const noexcept override { return cache_->capacity(); }
  std::int64_t kv_cache_bytes() const noexcept override { return cache_->bytes(); }
  void forward(std::span<const std::int32_t> tokens, const ForwardOptions& options,
               std::vector<float>* logits) override {
    model_.forward(tokens, *cache_, options, logits);
  }
  void truncate(std::int64_t size) override { cache_->truncate(size); }
  KVCache* host_cache() const noexcept override { return cache_; }

 private:
  const Model& model_;
  std::unique_ptr<KVCache> owned_;
  KVCache* cache_;
};

// Throws Error(unsupported) saying what is missing when a model cannot run on `devices` with a
// `kv_precision` cache in this build (unset: default_kv_precision): the CPU with f32, or one GPU
// of a build with the CUDA backend with bf16 or int8. Several ranks (sequence-parallel sessions,
// issue 4) are refused by name; nothing is ever replaced by the CPU. Cheap: no device is touched,
// so plans call it on every change.
void check_runnable(const DeviceSelection& devices, std::optional<KvPrecision> kv_precision = {});

// A runner for `model` on `devices` (devices.h parse_device_list) with a KV cache of `capacity`
// tokens. The CPU keeps an f32 cache; a GPU keeps bf16 (the default) or int8. Throws as
// check_runnable, and Error(out_of_memory) with the numbers when the weights or the cache do not
// fit.
std::unique_ptr<SequenceRunner> make_sequence_runner(const Model& model,
                                                     const DeviceSelection& devices,
                                                     std::int64_t capacity,
                                                     std::optional<KvPrecision> kv_precision = {});

// The KV-cache precision a runner on `devices` uses when none is asked for: f32 on the CPU, bf16
// on a GPU (design.md "Precision").
KvPrecision default_kv_precision(const DeviceSelection& devices) noexcept;

}  // namespace lwm
