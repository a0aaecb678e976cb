// Sequence-parallel attention over the ranks of a Communicator (spec ring-attention §1).
//
// Prefill: each rank keeps its shard of the queries and passes its keys and values (with their
// segment ids and global positions) around the ring; after P−1 hops every query has met every key.
// Causal masks come from global positions, never from local row numbers (§1.9 pitfall 7), so any
// layout works; zigzag (§1.4) balances causal work. Each hop's partial (out, log-sum-exp) is
// folded into a float64 running state (max, sum, accumulator) and normalised once at the end:
// no partial result is rounded per hop, so the error does not grow with P (§1.1, pitfall 2).
//
// Decode (§1.7): the queries are replicated, the KV shards stay where they are; each rank attends
// to its own shard and the partial (out, lse) of all ranks are all-gathered and merged in rank
// order, so every rank ends with the same bits.
//
// Lengths need not divide by P or 2P (pitfall 5): shards are simply uneven, by at most a row or
// two, and a rank may hold no rows at all.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "lwm/attention.h"
#include "lwm/communicator.h"

namespace lwm {

enum class ShardLayout : std::uint8_t {
  contiguous,  // rank r holds one consecutive P-th (causal work grows with r)
  zigzag,      // 2P chunks, rank r holds chunks r and 2P−1−r: equal causal work per rank
  striped,     // position i on the (i mod P)-th rank: equal causal work, positions strided
};
const char* to_string(ShardLayout layout) noexcept;

// Consecutive local rows holding global positions position, position+stride, … (count of them).
struct PositionRun {
  std::int64_t position = 0;
  std::int64_t count = 0;
  std::int64_t stride = 1;
};

// Where the positions first … first+length−1 of a sequence live across `world_size` ranks.
class SequenceSharding {
 public:
  // `held` (optional, one entry per rank) is how many rows each rank already stores; the few rows
  // left over when length does not divide evenly go to the ranks holding least, so that shards of
  // a KV cache filled chunk by chunk stay within two rows of each other.
  SequenceSharding(std::int64_t length, int world_size, ShardLayout layout,
                   std::int64_t first_position = 0, std::span<const std::int64_t> held = {});

  std::int64_t length() const noexcept { return length_; }
  int world_size() const noexcept { return world_size_; }
  ShardLayout layout() const noexcept { return layout_; }
  std::int64_t rows(int rank) const;  // 0 is possible when length < 2P
  // The rank's rows as runs of ascending global positions.
  std::span<const PositionRun> runs(int rank) const;
  std::int64_t position(int rank, std::int64_t row) const;
  struct Location {
    int rank = 0;
    std::int64_t row = 0;
  };
  Location locate(std::int64_t position) const;

  // The rows of `rank` taken out of a full [length, width] array, and put back.
  template <class T>
  std::vector<T> take(const T* full, std::int64_t width, int rank) const {
    std::vector<T> local(static_cast<std::size_t>(rows(rank) * width));
    for_each_row(rank, [&](std::int64_t row, std::int64_t global) {
      std::copy(full + global * width, full + (global + 1) * width, local.data() + row * width);
    });
    return local;
  }
  template <class T>
  void put(const T* local, std::int64_t width, int rank, T* full) const {
    for_each_row(rank, [&](std::int64_t row, std::int64_t global) {
      std::copy(local + row * width, local + (row + 1) * width, full + global * width);
    });
  }

 private:
  template <class F>
  void for_each_row(int rank, F&& f) const {
    std::int64_t row = 0;
    for (const PositionRun& run : runs(rank)) {
      for (std::int64_t i = 0; i < run.count; ++i, ++row) {
        f(row, run.position + i * run.stride - first_position_);
      }
    }
  }

  std::int64_t length_;
  int world_size_;
  ShardLayout layout_;
  std::int64_t first_position_;
  std::vector<std::vector<PositionRun>> runs_;  // per rank
};

// One rank's rows: their global positions (runs in row order, covering every row) and, for packed
// sequences (RingAttentionOptions::segments), their segment ids (attention only within equal ids,
// §1.5). A rank with no rows may pass null segment ids.
struct ShardRows {
  std::span<const PositionRun> runs;
  const std::int32_t* segments = nullptr;  // [rows], or null without segments
  std::int64_t rows() const noexcept;
};

struct RingAttentionOptions {
  bool causal = true;
  bool segments = false;  // the rows carry segment ids (packed sequences); the same on all ranks
  std::int64_t query_chunk = 256;  // passed to blockwise_attention for each block pair
  std::int64_t key_chunk = 512;
  float scale = 0.0f;  // 0 → 1/sqrt(head_dim)
  // Names the operations on the communicator ("layer 3"), so errors say where they happened.
  std::string name = "attention";
};

struct RingStatistics {
  std::int64_t block_pairs_computed = 0;  // blockwise_attention calls
  std::int64_t block_pairs_skipped = 0;   // (query run, key run) pairs wholly in the causal future
  // Σ query rows × key rows over the calls: the work handed to the kernel (which itself skips
  // the wholly masked key chunks of a causal call). Zigzag makes it equal on every rank (§1.4).
  std::int64_t score_pairs = 0;
};

// Collective: every rank calls it with its own shard. q: [queries.rows(), heads, head_dim];
// k, v: [keys.rows(), kv_heads, head_dim]; out: [queries.rows(), heads, head_dim] and
// lse (optional): [heads, queries.rows()], natural log. A query row that sees no key gets out 0
// and lse −inf. All ranks must agree on the shape and the options; a disagreement throws
// Error(communication) on every rank. Each key position lives on one rank only: ranks that hold
// more key rows than there are positions (every rank given the whole sequence, §1.9 pitfall 6)
// get Error(invalid_argument) on every rank. The result does not depend on message timing.
RingStatistics ring_attention(Communicator& communicator, const float* q, const ShardRows& queries,
                              const float* k, const float* v, const ShardRows& keys,
                              const AttentionShape& shape, const RingAttentionOptions& options,
                              float* out, float* lse);

// Collective decode step: `q` and `queries` are the same on every rank (replicated), k/v/keys are
// this rank's stationary KV shard. Every rank gets the full result in out/lse, bit for bit the
// same; only the partial (out, lse) travel, whatever the size of the cache.
void sharded_decode_attention(Communicator& communicator, const float* q, const ShardRows& queries,
                              const float* k, const float* v, const ShardRows& keys,
                              const AttentionShape& shape, const RingAttentionOptions& options,
                              float* out, float* lse);

}  // namespace lwm
