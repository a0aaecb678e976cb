// Ring prefill and sharded decode on top of blockwise_attention (ring_attention.h; spec
// ring-attention §1.1–§1.7).
#include "lwm/ring_attention.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "lwm/error.h"
#include "ring/configuration.h"

namespace lwm {
namespace {

constexpr double kMinusInfinity = -std::numeric_limits<double>::infinity();

std::int64_t floor_div(std::int64_t a, std::int64_t b) {  // b > 0
  const std::int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

std::int64_t last_position(const PositionRun& run) {
  return run.position + (run.count - 1) * run.stride;
}

void check_runs(const ShardRows& rows, const char* which) {
  for (const PositionRun& run : rows.runs) {
    if (run.count < 0 || run.stride < 1 || run.position < 0) {
      throw Error(ErrorKind::invalid_argument,
                  std::string("ring attention: ") + which + " run (position " +
                      std::to_string(run.position) + ", count " + std::to_string(run.count) +
                      ", stride " + std::to_string(run.stride) + ") is impossible");
    }
  }
}

// The float64 online-softmax state of §1.1 per (query row, head): running max m, sum l of
// e^{lse_i − m} and accumulator Σ e^{lse_i − m}·out_i. Partials arrive as normalised fp32 (out,
// lse) from blockwise_attention; keeping the sum in float64 and normalising once at the end means
// the ring adds one rounding in total, not one per hop (pitfall 2).
class RunningState {
 public:
  RunningState(std::int64_t rows, const AttentionShape& shape)
      : rows_(rows),
        heads_(shape.num_heads),
        dim_(shape.head_dim),
        max_(static_cast<std::size_t>(rows * heads_), kMinusInfinity),
        sum_(static_cast<std::size_t>(rows * heads_), 0.0),
        accumulator_(static_cast<std::size_t>(rows * heads_ * dim_), 0.0) {}

  // Folds the partial result for local rows [first_row, first_row + count): out [count, heads,
  // dim], lse [heads, count].
  void fold(std::int64_t first_row, std::int64_t count, const float* out, const float* lse) {
    for (std::int64_t i = 0; i < count; ++i) {
      for (std::int64_t h = 0; h < heads_; ++h) {
        const double partial_lse = lse[h * count + i];
        if (partial_lse == kMinusInfinity) continue;  // saw no key: adds nothing
        const auto at = static_cast<std::size_t>((first_row + i) * heads_ + h);
        double* acc = accumulator_.data() + at * static_cast<std::size_t>(dim_);
        const float* o = out + (i * heads_ + h) * dim_;
        const double old_max = max_[at];
        const double new_max = std::max(old_max, partial_lse);
        // exp(−inf) = 0 rescales an empty state to nothing; weights ≤ 1, so nothing overflows.
        const double keep = old_max == kMinusInfinity ? 0.0 : std::exp(old_max - new_max);
        const double add = std::exp(partial_lse - new_max);
        sum_[at] = sum_[at] * keep + add;
        for (std::int64_t c = 0; c < dim_; ++c) acc[c] = acc[c] * keep + add * double{o[c]};
        max_[at] = new_max;
      }
    }
  }

  // out [rows, heads, dim]; lse (optional) [heads, rows]. Rows that saw no key: out 0, lse −inf.
  void finish(float* out, float* lse) const {
    for (std::int64_t i = 0; i < rows_; ++i) {
      for (std::int64_t h = 0; h < heads_; ++h) {
        const auto at = static_cast<std::size_t>(i * heads_ + h);
        const double* acc = accumulator_.data() + at * static_cast<std::size_t>(dim_);
        float* o = out + (i * heads_ + h) * dim_;
        const double sum = sum_[at];
        for (std::int64_t c = 0; c < dim_; ++c) {
          o[c] = sum > 0.0 ? static_cast<float>(acc[c] / sum) : 0.0f;
        }
        if (lse != nullptr) {
          lse[h * rows_ + i] = sum > 0.0 ? static_cast<float>(max_[at] + std::log(sum))
                                         : -std::numeric_limits<float>::infinity();
        }
      }
    }
  }

 private:
  std::int64_t rows_, heads_, dim_;
  std::vector<double> max_, sum_, accumulator_;
};

// A key/value block as it travels the ring: one contiguous message (K and V packed together,
// as TransformerEngine does, §1.6) so that each hop is a single transfer.
//   int64 source rank, rows, run count | runs (position, count, stride) | K | V | segment ids
struct BlockLayout {
  std::int64_t rows = 0, runs = 0, row_width = 0;
  bool segments = false;
  std::size_t runs_offset() const { return 3 * sizeof(std::int64_t); }
  std::size_t keys_offset() const {
    return runs_offset() + static_cast<std::size_t>(runs) * 3 * sizeof(std::int64_t);
  }
  std::size_t values_offset() const {
    return keys_offset() + static_cast<std::size_t>(rows * row_width) * sizeof(float);
  }
  std::size_t segments_offset() const {
    return values_offset() + static_cast<std::size_t>(rows * row_width) * sizeof(float);
  }
  std::size_t bytes() const {
    return segments_offset() +
           (segments ? static_cast<std::size_t>(rows) * sizeof(std::int32_t) : 0);
  }
};

struct BlockView {
  int source = 0;
  std::vector<PositionRun> runs;
  const float* keys = nullptr;
  const float* values = nullptr;
  const std::int32_t* segments = nullptr;
};

std::vector<std::byte> pack_block(int source, const ShardRows& rows, const float* k, const float* v,
                                  std::int64_t row_width, bool segments) {
  const BlockLayout layout{rows.rows(), static_cast<std::int64_t>(rows.runs.size()), row_width,
                           segments};
  std::vector<std::byte> bytes(layout.bytes());
  const std::int64_t header[3] = {source, layout.rows, layout.runs};
  std::memcpy(bytes.data(), header, sizeof header);
  for (std::size_t i = 0; i < rows.runs.size(); ++i) {
    const std::int64_t run[3] = {rows.runs[i].position, rows.runs[i].count, rows.runs[i].stride};
    std::memcpy(bytes.data() + layout.runs_offset() + i * sizeof run, run, sizeof run);
  }
  const std::size_t kv_bytes = static_cast<std::size_t>(layout.rows * row_width) * sizeof(float);
  if (kv_bytes > 0) {
    std::memcpy(bytes.data() + layout.keys_offset(), k, kv_bytes);
    std::memcpy(bytes.data() + layout.values_offset(), v, kv_bytes);
  }
  if (layout.segments && layout.rows > 0) {
    std::memcpy(bytes.data() + layout.segments_offset(), rows.segments,
                static_cast<std::size_t>(layout.rows) * sizeof(std::int32_t));
  }
  return bytes;
}

BlockView view_block(const std::vector<std::byte>& bytes, std::int64_t row_width, bool segments) {
  std::int64_t header[3];
  std::memcpy(header, bytes.data(), sizeof header);
  const BlockLayout layout{header[1], header[2], row_width, segments};
  BlockView view;
  view.source = static_cast<int>(header[0]);
  view.runs.resize(static_cast<std::size_t>(layout.runs));
  for (std::size_t i = 0; i < view.runs.size(); ++i) {
    std::int64_t run[3];
    std::memcpy(run, bytes.data() + layout.runs_offset() + i * sizeof run, sizeof run);
    view.runs[i] = {run[0], run[1], run[2]};
  }
  // The bytes were written by memcpy, which creates the float and int32 objects read here.
  view.keys = reinterpret_cast<const float*>(bytes.data() + layout.keys_offset());
  view.values = reinterpret_cast<const float*>(bytes.data() + layout.values_offset());
  if (segments) {
    view.segments = reinterpret_cast<const std::int32_t*>(bytes.data() + layout.segments_offset());
  }
  return view;
}

// What every rank announces before a collective attention call: its configuration (which must
// match everywhere) and the size of its key block (which sizes the ring's receive buffers).
struct RankHeader {
  std::int64_t world_size, heads, kv_heads, head_dim, causal, segments, query_chunk, key_chunk;
  std::int64_t scale_bits, replicated_query_rows, replicated_first_position;
  std::int64_t key_rows, key_runs, key_end;  // key_end: one past the largest key position

  std::string configuration() const {
    std::string s =
        "world size " + std::to_string(world_size) + ", heads " + std::to_string(heads) + "/" +
        std::to_string(kv_heads) + ", head_dim " + std::to_string(head_dim) +
        (causal ? ", causal" : ", non-causal") + (segments ? ", segment ids" : ", no segment ids") +
        ", chunks " + std::to_string(query_chunk) + "x" + std::to_string(key_chunk) + ", scale " +
        std::to_string(std::bit_cast<float>(static_cast<std::uint32_t>(scale_bits))) + ", float32";
    if (replicated_query_rows >= 0) {
      s += ", " + std::to_string(replicated_query_rows) + " replicated queries from position " +
           std::to_string(replicated_first_position);
    }
    return s;
  }
};

std::vector<RankHeader> exchange_headers(Communicator& communicator, const ShardRows& queries,
                                         const ShardRows& keys, const AttentionShape& shape,
                                         const RingAttentionOptions& options, bool replicated) {
  RankHeader mine{};
  mine.world_size = communicator.world_size();
  mine.heads = shape.num_heads;
  mine.kv_heads = shape.num_kv_heads;
  mine.head_dim = shape.head_dim;
  mine.causal = options.causal ? 1 : 0;
  mine.segments = options.segments ? 1 : 0;
  mine.query_chunk = options.query_chunk;
  mine.key_chunk = options.key_chunk;
  mine.scale_bits = std::bit_cast<std::uint32_t>(options.scale);
  mine.replicated_query_rows = replicated ? queries.rows() : -1;
  mine.replicated_first_position =
      replicated && !queries.runs.empty() ? queries.runs.front().position : -1;
  mine.key_rows = keys.rows();
  mine.key_runs = static_cast<std::int64_t>(keys.runs.size());
  mine.key_end = 0;
  for (const PositionRun& run : keys.runs) {
    if (run.count > 0) mine.key_end = std::max(mine.key_end, last_position(run) + 1);
  }
  std::vector<RankHeader> all(static_cast<std::size_t>(communicator.world_size()));
  communicator.all_gather(std::as_bytes(std::span(&mine, 1)),
                          std::as_writable_bytes(std::span(all)), options.name + " configuration");
  std::vector<std::string> configurations;
  for (const RankHeader& header : all) configurations.push_back(header.configuration());
  const std::string disagreement = describe_disagreement(configurations);
  if (!disagreement.empty()) {
    throw Error(ErrorKind::communication,
                communicator.name() + ": " + options.name +
                    ": the ranks disagree on the configuration: " + disagreement);
  }
  // Pitfall 6 (§1.9): a caller that hands every rank the whole sequence instead of its shard
  // would count each key P times. Every position is held once, so the rows cannot outnumber the
  // positions; every rank sees the same headers and throws alike.
  std::int64_t total_rows = 0, end = 0;
  for (const RankHeader& header : all) {
    total_rows += header.key_rows;
    end = std::max(end, header.key_end);
  }
  if (total_rows > end) {
    throw Error(ErrorKind::invalid_argument,
                communicator.name() + ": " + options.name + ": the ranks hold " +
                    std::to_string(total_rows) + " key rows for positions below " +
                    std::to_string(end) +
                    ", so some positions are on several ranks; give each rank only its shard "
                    "(SequenceSharding)");
  }
  return all;
}

void check_local_arguments(const ShardRows& queries, const ShardRows& keys,
                           const AttentionShape& shape, const RingAttentionOptions& options) {
  check_runs(queries, "query");
  check_runs(keys, "key");
  for (const ShardRows* rows : {&queries, &keys}) {
    const char* which = rows == &queries ? "query" : "key";
    if (options.segments && rows->segments == nullptr && rows->rows() > 0) {
      throw Error(ErrorKind::invalid_argument, std::string("ring attention: ") + options.name +
                                                   " uses segment ids but the " + which +
                                                   " rows have none");
    }
    if (!options.segments && rows->segments != nullptr) {
      throw Error(ErrorKind::invalid_argument,
                  std::string("ring attention: ") + options.name + ": " + which +
                      " segment ids given but options.segments is off");
    }
  }
  if (shape.num_heads <= 0 || shape.num_kv_heads <= 0 || shape.head_dim <= 0 ||
      shape.num_heads % shape.num_kv_heads != 0 || options.query_chunk <= 0 ||
      options.key_chunk <= 0) {
    throw Error(ErrorKind::invalid_argument, "ring attention: impossible shape or chunks (heads " +
                                                 std::to_string(shape.num_heads) + "/" +
                                                 std::to_string(shape.num_kv_heads) +
                                                 ", head_dim " + std::to_string(shape.head_dim) +
                                                 ", chunks " + std::to_string(options.query_chunk) +
                                                 "x" + std::to_string(options.key_chunk) + ")");
  }
}

// Attends this rank's queries to one key block and folds the partials into `state`. Key runs
// that lie wholly before a query run are gathered into one unmasked call; runs wholly after it
// are skipped; the rest get a causal call whose offset comes from global positions (§1.4).
class BlockAttender {
 public:
  BlockAttender(const float* q, const ShardRows& queries, const AttentionShape& shape,
                const RingAttentionOptions& options, RunningState& state, RingStatistics& stats)
      : q_(q), queries_(queries), shape_(shape), options_(options), state_(state), stats_(stats) {}

  void attend(const BlockView& block) {
    std::int64_t query_row = 0;
    for (const PositionRun& query_run : queries_.runs) {
      if (query_run.count > 0) attend_run(query_row, query_run, block);
      query_row += query_run.count;
    }
  }

 private:
  void attend_run(std::int64_t query_row, const PositionRun& query_run, const BlockView& block) {
    const std::int64_t query_first = query_run.position;
    const std::int64_t query_last = last_position(query_run);
    std::int64_t group_row = 0, group_rows = 0;  // key rows wholly visible, gathered
    std::int64_t key_row = 0;
    for (const PositionRun& key_run : block.runs) {
      const std::int64_t row = key_row;
      key_row += key_run.count;
      if (key_run.count == 0) continue;
      if (!options_.causal || last_position(key_run) <= query_first) {
        if (group_rows > 0 && group_row + group_rows != row) {
          call(query_row, query_run.count, block, group_row, group_rows, false, 0);
          group_rows = 0;
        }
        if (group_rows == 0) group_row = row;
        group_rows += key_run.count;
        continue;
      }
      if (group_rows > 0) {
        call(query_row, query_run.count, block, group_row, group_rows, false, 0);
        group_rows = 0;
      }
      if (key_run.position > query_last) {
        ++stats_.block_pairs_skipped;
        continue;
      }
      // Query a (position qp + a·s) sees key b (kp + b·s) iff b ≤ a + floor((qp − kp)/s): the
      // offset form blockwise_attention takes. A single query or key can use the other's stride.
      if (query_run.count == 1 || key_run.count == 1 || query_run.stride == key_run.stride) {
        const std::int64_t stride = query_run.count == 1 ? key_run.stride : query_run.stride;
        call(query_row, query_run.count, block, row, key_run.count, true,
             floor_div(query_run.position - key_run.position, stride));
      } else {  // different strides: one query at a time
        for (std::int64_t a = 0; a < query_run.count; ++a) {
          call(query_row + a, 1, block, row, key_run.count, true,
               floor_div(query_run.position + a * query_run.stride - key_run.position,
                         key_run.stride));
        }
      }
    }
    if (group_rows > 0) call(query_row, query_run.count, block, group_row, group_rows, false, 0);
  }

  void call(std::int64_t query_row, std::int64_t query_rows, const BlockView& block,
            std::int64_t key_row, std::int64_t key_rows, bool causal, std::int64_t offset) {
    const std::int64_t q_width = shape_.num_heads * shape_.head_dim;
    const std::int64_t kv_width = shape_.num_kv_heads * shape_.head_dim;
    AttentionOptions attention;
    attention.query_chunk = options_.query_chunk;
    attention.key_chunk = options_.key_chunk;
    attention.scale = options_.scale;
    attention.causal = causal;
    attention.query_offset = offset;
    if (options_.segments) {
      attention.query_segments = queries_.segments + query_row;
      attention.key_segments = block.segments + key_row;
    }
    out_.resize(static_cast<std::size_t>(query_rows * q_width));
    lse_.resize(static_cast<std::size_t>(query_rows * shape_.num_heads));
    blockwise_attention(q_ + query_row * q_width, block.keys + key_row * kv_width,
                        block.values + key_row * kv_width, query_rows, key_rows, shape_, attention,
                        out_.data(), lse_.data());
    state_.fold(query_row, query_rows, out_.data(), lse_.data());
    ++stats_.block_pairs_computed;
    stats_.score_pairs += query_rows * key_rows;
  }

  const float* q_;
  const ShardRows& queries_;
  const AttentionShape& shape_;
  const RingAttentionOptions& options_;
  RunningState& state_;
  RingStatistics& stats_;
  std::vector<float> out_, lse_;
};

// Runs `body`; on failure tells the other ranks at once (no one waits for a timeout) and rethrows.
template <class F>
auto abort_on_failure(Communicator& communicator, F&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    communicator.abort(e.what());
    throw;
  }
}

}  // namespace

RingStatistics ring_attention(Communicator& communicator, const float* q, const ShardRows& queries,
                              const float* k, const float* v, const ShardRows& keys,
                              const AttentionShape& shape, const RingAttentionOptions& options,
                              float* out, float* lse) {
  return abort_on_failure(communicator, [&] {
    check_local_arguments(queries, keys, shape, options);
    const std::vector<RankHeader> headers =
        exchange_headers(communicator, queries, keys, shape, options, false);
    const int world = communicator.world_size();
    const int rank = communicator.rank();
    const std::int64_t kv_width = shape.num_kv_heads * shape.head_dim;
    const bool segments = options.segments;

    RingStatistics stats;
    RunningState state(queries.rows(), shape);
    BlockAttender attender(q, queries, shape, options, state, stats);
    // Double buffering (§1.6): hop t computes on buffers[t % 2] while the next block arrives in
    // the other; the send of the current block is posted before computing on it.
    std::vector<std::byte> buffers[2];
    buffers[0] = pack_block(rank, keys, k, v, kv_width, segments);
    for (int hop = 0; hop < world; ++hop) {
      std::vector<std::byte>& current = buffers[hop % 2];
      std::vector<std::byte>& next = buffers[(hop + 1) % 2];
      std::unique_ptr<PendingExchange> pending;
      if (hop + 1 < world) {  // the last hop sends nothing (§1.2's wasted transfer avoided)
        const RankHeader& from =
            headers[static_cast<std::size_t>((rank - hop - 1 + 2 * world) % world)];
        next.resize(BlockLayout{from.key_rows, from.key_runs, kv_width, segments}.bytes());
        pending = communicator.start_ring_exchange(
            current, next, options.name + " hop " + std::to_string(hop + 1));
      }
      const BlockView block = view_block(current, kv_width, segments);
      const int expected_source = (rank - hop + world) % world;
      if (block.source != expected_source) {
        throw Error(ErrorKind::communication,
                    communicator.name() + ": " + options.name + " hop " + std::to_string(hop) +
                        " holds the block of rank " + std::to_string(block.source) +
                        ", expected rank " + std::to_string(expected_source));
      }
      attender.attend(block);
      if (pending) pending->wait();
    }
    state.finish(out, lse);
    return stats;
  });
}

void sharded_decode_attention(Communicator& communicator, const float* q, const ShardRows& queries,
                              const float* k, const float* v, const ShardRows& keys,
                              const AttentionShape& shape, const RingAttentionOptions& options,
                              float* out, float* lse) {
  abort_on_failure(communicator, [&] {
    check_local_arguments(queries, keys, shape, options);
    exchange_headers(communicator, queries, keys, shape, options, true);
    const std::int64_t rows = queries.rows();
    const std::int64_t out_values = rows * shape.num_heads * shape.head_dim;
    const std::int64_t lse_values = rows * shape.num_heads;

    // This rank's partial over its own, stationary KV shard.
    RingStatistics stats;
    RunningState local(rows, shape);
    BlockAttender attender(q, queries, shape, options, local, stats);
    BlockView own;
    own.source = communicator.rank();
    own.runs.assign(keys.runs.begin(), keys.runs.end());
    own.keys = k;
    own.values = v;
    own.segments = keys.segments;
    attender.attend(own);
    std::vector<float> partial(static_cast<std::size_t>(out_values + lse_values));
    local.finish(partial.data(), partial.data() + out_values);

    // One small all-gather of (out, lse) instead of moving any KV (§1.7), merged in rank order
    // so that every rank computes the same bits.
    const auto world = static_cast<std::size_t>(communicator.world_size());
    std::vector<float> all(partial.size() * world);
    communicator.all_gather(std::as_bytes(std::span(partial)),
                            std::as_writable_bytes(std::span(all)), options.name + " decode merge");
    RunningState merged(rows, shape);
    for (std::size_t r = 0; r < world; ++r) {
      const float* part = all.data() + r * partial.size();
      merged.fold(0, rows, part, part + out_values);
    }
    merged.finish(out, lse);
  });
}

}  // namespace lwm
