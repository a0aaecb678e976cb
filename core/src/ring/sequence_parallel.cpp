// Model forward with the sequence sharded over ranks (sequence_parallel.h).
#include "lwm/sequence_parallel.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "lwm/error.h"

namespace lwm {
namespace {

AttentionShape attention_shape(const ModelConfig& config) {
  return {config.num_heads, config.num_kv_heads, config.head_dim()};
}

RingAttentionOptions ring_options(const Model& model) {
  RingAttentionOptions options;
  options.causal = true;
  options.query_chunk = model.runtime_options().attention_query_chunk;
  options.key_chunk = model.runtime_options().attention_key_chunk;
  return options;
}

// Prefill: this rank's rows of the call attend, around the ring, to every rank's cache shard
// (which already holds the call's own keys and values).
class RingStep final : public AttentionStep {
 public:
  RingStep(Communicator& communicator, const Model& model, std::span<const PositionRun> query_runs,
           std::vector<PositionRun> key_runs)
      : communicator_(communicator),
        shape_(attention_shape(model.config())),
        options_(ring_options(model)),
        query_runs_(query_runs),
        key_runs_(std::move(key_runs)) {}

  void attend(std::int64_t layer, const float* q, std::int64_t, const KVCache& cache,
              float* out) override {
    options_.name = "layer " + std::to_string(layer);
    ring_attention(communicator_, q, ShardRows{query_runs_}, cache.keys(layer), cache.values(layer),
                   ShardRows{key_runs_}, shape_, options_, out, nullptr);
  }

 private:
  Communicator& communicator_;
  AttentionShape shape_;
  RingAttentionOptions options_;
  std::span<const PositionRun> query_runs_;
  std::vector<PositionRun> key_runs_;
};

// Decode: the replicated query attends to this rank's stationary shard; partials are merged.
class DecodeStep final : public AttentionStep {
 public:
  DecodeStep(Communicator& communicator, const Model& model, PositionRun query,
             std::span<const PositionRun> key_runs)
      : communicator_(communicator),
        shape_(attention_shape(model.config())),
        options_(ring_options(model)),
        query_{query},
        key_runs_(key_runs) {}

  void attend(std::int64_t layer, const float* q, std::int64_t, const KVCache& cache,
              float* out) override {
    options_.name = "layer " + std::to_string(layer) + " decode";
    sharded_decode_attention(communicator_, q, ShardRows{std::span(&query_, 1)}, cache.keys(layer),
                             cache.values(layer), ShardRows{key_runs_}, shape_, options_, out,
                             nullptr);
  }

 private:
  Communicator& communicator_;
  AttentionShape shape_;
  RingAttentionOptions options_;
  PositionRun query_;
  std::span<const PositionRun> key_runs_;
};

std::uint64_t fingerprint(std::span<const std::int32_t> tokens) {
  std::uint64_t hash = 1469598103934665603ull;  // FNV-1a
  for (const std::int32_t token : tokens) {
    hash = (hash ^ static_cast<std::uint32_t>(token)) * 1099511628211ull;
  }
  return hash;
}

}  // namespace

std::int64_t SequenceParallelRank::local_capacity(std::int64_t capacity, int world_size) {
  // SequenceSharding keeps the shards within two rows of each other; one more row is where a
  // decode step computes the keys and values of a token kept by another rank.
  return (capacity + world_size - 1) / world_size + 3;
}

std::int64_t SequenceParallelRank::kv_bytes_per_rank(const ModelConfig& config,
                                                     std::int64_t capacity, int world_size) {
  return local_capacity(capacity, world_size) * config.kv_bytes_per_token(DType::f32);
}

SequenceParallelRank::SequenceParallelRank(const Model& model, Communicator& communicator,
                                           std::int64_t capacity, ShardLayout layout)
    : model_(model),
      communicator_(communicator),
      layout_(layout),
      capacity_(capacity),
      cache_(model.config(),
             local_capacity(std::max<std::int64_t>(capacity, 1), communicator.world_size())),
      held_(static_cast<std::size_t>(communicator.world_size()), 0) {
  if (capacity <= 0) {
    throw Error(
        ErrorKind::invalid_argument,
        "sequence-parallel context capacity must be positive, got " + std::to_string(capacity));
  }
}

void SequenceParallelRank::forward(std::span<const std::int32_t> tokens, LogitsFor which,
                                   std::vector<float>* logits) {
  const auto n = static_cast<std::int64_t>(tokens.size());
  const ModelConfig& c = model_.config();
  // Every rank must run the same tokens against the same model and context (§1.9 pitfall 8).
  // Once that holds, the checks below come out alike on every rank, so a refused call (a prompt
  // too long, say) leaves the group usable.
  check_same_configuration(
      communicator_, "sequence-parallel forward: model layers " + std::to_string(c.num_layers) +
                         ", hidden " + std::to_string(c.hidden_size) + ", vocab " +
                         std::to_string(c.vocab_size) + ", layout " + to_string(layout_) +
                         ", context " + std::to_string(size_) + " of " + std::to_string(capacity_) +
                         ", " + std::to_string(n) + " tokens (fingerprint " +
                         std::to_string(fingerprint(tokens)) + "), logits " +
                         std::to_string(static_cast<int>(which)));
  if (n == 0) throw Error(ErrorKind::invalid_argument, "sequence-parallel forward: no tokens");
  if (size_ + n > capacity_) {
    throw Error(ErrorKind::invalid_argument,
                "sequence-parallel forward: " + std::to_string(n) +
                    " tokens do not fit in the context (" + std::to_string(size_) + " of " +
                    std::to_string(capacity_) + " used over " +
                    std::to_string(communicator_.world_size()) + " ranks)");
  }
  if (which != LogitsFor::none && logits == nullptr) {
    throw Error(ErrorKind::invalid_argument, "forward: logits requested without an output");
  }
  try {
    if (n == 1) {
      decode_step(tokens[0], which, logits);
    } else {
      prefill_step(tokens, which, logits);
    }
  } catch (const std::exception& e) {
    communicator_.abort(e.what());  // the others may be waiting on this rank mid-layer
    throw;
  }
}

void SequenceParallelRank::prefill_step(std::span<const std::int32_t> tokens, LogitsFor which,
                                        std::vector<float>* logits) {
  const auto n = static_cast<std::int64_t>(tokens.size());
  const int rank = communicator_.rank();
  const int world = communicator_.world_size();
  const SequenceSharding sharding(n, world, layout_, size_, held_);
  const std::span<const PositionRun> new_runs = sharding.runs(rank);

  std::vector<std::int32_t> local_tokens;
  std::vector<std::int64_t> positions;
  for (const PositionRun& run : new_runs) {
    for (std::int64_t i = 0; i < run.count; ++i) {
      const std::int64_t position = run.position + i * run.stride;
      positions.push_back(position);
      local_tokens.push_back(tokens[static_cast<std::size_t>(position - size_)]);
    }
  }
  std::vector<PositionRun> key_runs = runs_;
  key_runs.insert(key_runs.end(), new_runs.begin(), new_runs.end());
  RingStep step(communicator_, model_, new_runs, std::move(key_runs));

  // The last position is the last local row of its rank (rows ascend), so only that rank asks
  // for the last token's logits.
  const int last_owner = sharding.locate(size_ + n - 1).rank;
  LogitsFor local_which = which;
  if (which == LogitsFor::last && rank != last_owner) local_which = LogitsFor::none;
  std::vector<float> local_logits;
  model_.forward(local_tokens, positions, cache_, step, ForwardOptions{.logits_for = local_which},
                 &local_logits);
  append_runs(new_runs);
  for (int r = 0; r < world; ++r) held_[static_cast<std::size_t>(r)] += sharding.rows(r);
  size_ += n;

  const std::int64_t vocab = model_.config().vocab_size;
  if (which == LogitsFor::last) {
    logits->resize(static_cast<std::size_t>(vocab));
    if (rank == last_owner) std::copy(local_logits.begin(), local_logits.end(), logits->begin());
    communicator_.broadcast(std::as_writable_bytes(std::span(*logits)), last_owner,
                            "last-token logits");
  } else if (which == LogitsFor::all) {
    std::int64_t most = 0;
    for (int r = 0; r < world; ++r) most = std::max(most, sharding.rows(r));
    local_logits.resize(static_cast<std::size_t>(most * vocab), 0.0f);
    std::vector<float> gathered(local_logits.size() * static_cast<std::size_t>(world));
    communicator_.all_gather(std::as_bytes(std::span(local_logits)),
                             std::as_writable_bytes(std::span(gathered)), "logits");
    logits->resize(static_cast<std::size_t>(n * vocab));
    for (int r = 0; r < world; ++r) {
      sharding.put(gathered.data() + static_cast<std::size_t>(r) * local_logits.size(), vocab, r,
                   logits->data());
    }
  }
}

void SequenceParallelRank::decode_step(std::int32_t token, LogitsFor which,
                                       std::vector<float>* logits) {
  // The token's keys and values stay on the rank holding least (lowest rank on ties), which every
  // rank computes alike from the same bookkeeping; the others compute them in a scratch row and
  // drop them.
  const auto keeper =
      static_cast<int>(std::min_element(held_.begin(), held_.end()) - held_.begin());
  const bool keep = communicator_.rank() == keeper;
  const PositionRun query{size_, 1, 1};
  std::vector<PositionRun> key_runs = runs_;
  if (keep) key_runs.push_back(query);
  DecodeStep step(communicator_, model_, query, key_runs);
  const std::int32_t tokens[1] = {token};
  const std::int64_t positions[1] = {size_};
  model_.forward(tokens, positions, cache_, step, ForwardOptions{.logits_for = which}, logits);
  if (keep) {
    append_runs(std::span(&query, 1));
  } else {
    cache_.truncate(cache_.size() - 1);
  }
  ++held_[static_cast<std::size_t>(keeper)];
  ++size_;
}

std::vector<float> SequenceParallelRank::prefill(std::span<const std::int32_t> tokens,
                                                 std::int64_t chunk,
                                                 const ProgressCallback& progress) {
  if (tokens.empty() || chunk <= 0) {
    const std::string message = "sequence-parallel prefill needs tokens and a positive chunk (" +
                                std::to_string(tokens.size()) + " tokens, chunk " +
                                std::to_string(chunk) + ")";
    communicator_.abort(message);
    throw Error(ErrorKind::invalid_argument, message);
  }
  const auto total = static_cast<std::int64_t>(tokens.size());
  const std::int64_t start_size = size_;
  const auto start = std::chrono::steady_clock::now();
  std::vector<float> logits;
  for (std::int64_t done = 0; done < total;) {
    const std::int64_t n = std::min(chunk, total - done);
    const bool last = done + n == total;
    forward(tokens.subspan(static_cast<std::size_t>(done), static_cast<std::size_t>(n)),
            last ? LogitsFor::last : LogitsFor::none, &logits);
    done += n;
    // Rank 0 decides for everyone, so that all ranks stop after the same chunk.
    std::uint8_t go_on = 1;
    if (communicator_.rank() == 0 && progress) {
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      go_on = progress(Progress{done, total, elapsed}) ? 1 : 0;
    }
    communicator_.broadcast(std::as_writable_bytes(std::span(&go_on, 1)), 0, "prefill progress");
    if (go_on == 0) {
      truncate(start_size);
      throw Error(ErrorKind::cancelled, "prefill cancelled after " + std::to_string(done) + " of " +
                                            std::to_string(total) + " tokens");
    }
  }
  return logits;
}

void SequenceParallelRank::truncate(std::int64_t size) {
  try {
    if (size < 0 || size > size_) {
      throw Error(ErrorKind::invalid_argument, "cannot truncate a sequence-parallel context of " +
                                                   std::to_string(size_) + " tokens to " +
                                                   std::to_string(size));
    }
    check_same_configuration(
        communicator_, "truncate from " + std::to_string(size_) + " to " + std::to_string(size));
    // Local rows ascend in position (each call's positions follow the earlier ones), so the
    // positions to forget are a suffix of the local cache.
    std::vector<PositionRun> kept;
    std::int64_t rows = 0;
    for (const PositionRun& run : runs_) {
      if (run.position >= size) break;
      const std::int64_t count = std::min(run.count, (size - 1 - run.position) / run.stride + 1);
      kept.push_back({run.position, count, run.stride});
      rows += count;
      if (count < run.count) break;
    }
    cache_.truncate(rows);
    runs_ = std::move(kept);
    communicator_.all_gather(std::as_bytes(std::span(&rows, 1)),
                             std::as_writable_bytes(std::span(held_)), "truncate");
    size_ = size;
  } catch (const std::exception& e) {
    communicator_.abort(e.what());
    throw;
  }
}

void SequenceParallelRank::append_runs(std::span<const PositionRun> runs) {
  for (const PositionRun& run : runs) {
    if (run.count == 0) continue;
    if (!runs_.empty()) {
      PositionRun& last = runs_.back();
      const bool unit_strides =
          (last.stride == 1 || last.count == 1) && (run.stride == 1 || run.count == 1);
      if (unit_strides && last.position + last.count == run.position) {
        last.count += run.count;
        last.stride = 1;
        continue;
      }
    }
    runs_.push_back(run);
  }
}

}  // namespace lwm
