// A model run with its sequence sharded over the ranks of a Communicator (design.md "Parallelism
// at inference"; spec ring-attention §1.4, §1.7). Weights are shared (replicated); each rank holds
// a shard of the KV cache, so the context is the sum of what the ranks hold.
//
// Every rank calls forward() with the same tokens (a collective; a configuration handshake
// checks it). A call of several tokens is sharded (zigzag by default, leftover rows to the ranks
// holding least) and each layer's attention runs as a ring over the cache shards; a call of one
// token is a decode step: every rank computes it, the token's keys and values stay on the rank
// holding least, and each layer merges the ranks' partial (out, log-sum-exp). Chunked prefill is
// forward() called chunk after chunk. Logits come out the same on every rank.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "lwm/communicator.h"
#include "lwm/kv_cache.h"
#include "lwm/model.h"
#include "lwm/progress.h"
#include "lwm/ring_attention.h"

namespace lwm {

class SequenceParallelRank {
 public:
  // `capacity` is the whole context over all ranks; this rank allocates about capacity / P
  // tokens of KV cache (plus a few rows of slack for uneven splits).
  SequenceParallelRank(const Model& model, Communicator& communicator, std::int64_t capacity,
                       ShardLayout layout = ShardLayout::zigzag);

  std::int64_t size() const noexcept { return size_; }  // tokens in the whole context
  std::int64_t capacity() const noexcept { return capacity_; }
  const KVCache& local_cache() const noexcept { return cache_; }
  // Global positions of the local cache rows, in row order.
  std::span<const PositionRun> local_positions() const noexcept { return runs_; }
  // KV-cache bytes one rank needs for a context of `capacity` tokens over `world_size` ranks.
  static std::int64_t kv_bytes_per_rank(const ModelConfig& config, std::int64_t capacity,
                                        int world_size);
  // KV-cache rows one rank allocates for a context of `capacity` tokens over `world_size` ranks.
  static std::int64_t local_capacity(std::int64_t capacity, int world_size);

  // Collective: runs `tokens` at positions size() … size()+n−1. Logits as Model::forward (the
  // last token's row, or every token's row in sequence order), identical on every rank.
  void forward(std::span<const std::int32_t> tokens, LogitsFor which, std::vector<float>* logits);

  // Collective chunked prefill: forward() over chunks of `chunk` tokens, returning the last
  // token's logits. `progress` is called on rank 0 after every chunk; its answer is broadcast, so
  // when it cancels every rank throws Error(cancelled) together and the context is put back to
  // where it was.
  std::vector<float> prefill(std::span<const std::int32_t> tokens, std::int64_t chunk,
                             const ProgressCallback& progress = {});

  // Collective: forgets every position from `size` on (to re-ask after a shared prefix).
  void truncate(std::int64_t size);

 private:
  void prefill_step(std::span<const std::int32_t> tokens, LogitsFor which,
                    std::vector<float>* logits);
  void decode_step(std::int32_t token, LogitsFor which, std::vector<float>* logits);
  void append_runs(std::span<const PositionRun> runs);

  const Model& model_;
  Communicator& communicator_;
  ShardLayout layout_;
  std::int64_t capacity_;
  std::int64_t size_ = 0;
  KVCache cache_;
  std::vector<PositionRun> runs_;
  std::vector<std::int64_t> held_;  // rows each rank holds (every rank tracks all of them)
};

}  // namespace lwm
