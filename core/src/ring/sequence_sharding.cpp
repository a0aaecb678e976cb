// Placement of a sequence's positions on the ranks of a ring (spec ring-attention §1.4).
#include <algorithm>
#include <string>

#include "lwm/error.h"
#include "lwm/ring_attention.h"

namespace lwm {

const char* to_string(ShardLayout layout) noexcept {
  switch (layout) {
    case ShardLayout::contiguous:
      return "contiguous";
    case ShardLayout::zigzag:
      return "zigzag";
    case ShardLayout::striped:
      return "striped";
  }
  return "unknown";
}

namespace {

// Splits `length` into `pieces` consecutive chunk sizes that differ by at most one. `owner[i]`
// is the rank holding chunk i; the leftover rows go one at a time to the rank holding least so
// far (counting `held`), lowest rank first on ties, never twice to the same chunk.
std::vector<std::int64_t> balanced_chunk_sizes(std::int64_t length, const std::vector<int>& owner,
                                               std::vector<std::int64_t> load) {
  const auto pieces = static_cast<std::int64_t>(owner.size());
  const std::int64_t base = length / pieces;
  std::vector<std::int64_t> sizes(owner.size(), base);
  for (std::size_t i = 0; i < owner.size(); ++i) load[static_cast<std::size_t>(owner[i])] += base;
  for (std::int64_t extra = length % pieces; extra > 0; --extra) {
    std::size_t best = owner.size();
    for (std::size_t i = 0; i < owner.size(); ++i) {
      if (sizes[i] != base) continue;  // this chunk already took a leftover row
      const auto rank = static_cast<std::size_t>(owner[i]);
      if (best == owner.size() || load[rank] < load[static_cast<std::size_t>(owner[best])] ||
          (load[rank] == load[static_cast<std::size_t>(owner[best])] && owner[i] < owner[best])) {
        best = i;
      }
    }
    ++sizes[best];
    ++load[static_cast<std::size_t>(owner[best])];
  }
  return sizes;
}

}  // namespace

SequenceSharding::SequenceSharding(std::int64_t length, int world_size, ShardLayout layout,
                                   std::int64_t first_position, std::span<const std::int64_t> held)
    : length_(length), world_size_(world_size), layout_(layout), first_position_(first_position) {
  if (world_size <= 0 || length < 0 || first_position < 0) {
    throw Error(ErrorKind::invalid_argument, "sequence sharding: impossible request (length " +
                                                 std::to_string(length) + ", world size " +
                                                 std::to_string(world_size) + ", first position " +
                                                 std::to_string(first_position) + ")");
  }
  const auto ranks = static_cast<std::size_t>(world_size);
  if (!held.empty() && held.size() != ranks) {
    throw Error(ErrorKind::invalid_argument, "sequence sharding: " + std::to_string(held.size()) +
                                                 " held-row counts for " +
                                                 std::to_string(world_size) + " ranks");
  }
  std::vector<std::int64_t> load(ranks, 0);
  if (!held.empty()) load.assign(held.begin(), held.end());
  runs_.resize(ranks);

  if (layout == ShardLayout::striped) {
    // Offset j of every stripe of P positions goes to the j-th least-loaded rank (by `held`, then
    // rank), so the leftover positions of a length not divisible by P land where there is room.
    std::vector<int> order(ranks);
    for (int r = 0; r < world_size; ++r) order[static_cast<std::size_t>(r)] = r;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return load[static_cast<std::size_t>(a)] < load[static_cast<std::size_t>(b)];
    });
    for (int j = 0; j < world_size; ++j) {
      const std::int64_t count = length > j ? (length - j + world_size - 1) / world_size : 0;
      if (count > 0) {
        runs_[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])].push_back(
            {first_position + j, count, count == 1 ? 1 : world_size});
      }
    }
    return;
  }
  // Chunks in sequence order and their owners: contiguous has P chunks, zigzag 2P with rank r
  // holding chunks r and 2P−1−r (§1.4).
  std::vector<int> owner;
  if (layout == ShardLayout::contiguous) {
    for (int r = 0; r < world_size; ++r) owner.push_back(r);
  } else {
    for (int r = 0; r < world_size; ++r) owner.push_back(r);
    for (int r = world_size - 1; r >= 0; --r) owner.push_back(r);
  }
  const std::vector<std::int64_t> sizes = balanced_chunk_sizes(length, owner, load);
  std::int64_t position = first_position;
  for (std::size_t i = 0; i < owner.size(); ++i) {
    if (sizes[i] > 0) runs_[static_cast<std::size_t>(owner[i])].push_back({position, sizes[i], 1});
    position += sizes[i];
  }
}

std::int64_t SequenceSharding::rows(int rank) const {
  std::int64_t total = 0;
  for (const PositionRun& run : runs(rank)) total += run.count;
  return total;
}

std::span<const PositionRun> SequenceSharding::runs(int rank) const {
  if (rank < 0 || rank >= world_size_) {
    throw Error(ErrorKind::invalid_argument, "sequence sharding: rank " + std::to_string(rank) +
                                                 " is outside a world of " +
                                                 std::to_string(world_size_));
  }
  return runs_[static_cast<std::size_t>(rank)];
}

std::int64_t SequenceSharding::position(int rank, std::int64_t row) const {
  std::int64_t first_row = 0;
  for (const PositionRun& run : runs(rank)) {
    if (row >= first_row && row < first_row + run.count) {
      return run.position + (row - first_row) * run.stride;
    }
    first_row += run.count;
  }
  throw Error(ErrorKind::invalid_argument, "sequence sharding: rank " + std::to_string(rank) +
                                               " has no row " + std::to_string(row) +
                                               " (it holds " + std::to_string(first_row) + ")");
}

SequenceSharding::Location SequenceSharding::locate(std::int64_t position) const {
  for (int rank = 0; rank < world_size_; ++rank) {
    std::int64_t first_row = 0;
    for (const PositionRun& run : runs_[static_cast<std::size_t>(rank)]) {
      const std::int64_t offset = position - run.position;
      if (offset >= 0 && offset % run.stride == 0 && offset / run.stride < run.count) {
        return {rank, first_row + offset / run.stride};
      }
      first_row += run.count;
    }
  }
  throw Error(ErrorKind::invalid_argument, "sequence sharding: position " +
                                               std::to_string(position) + " is outside " +
                                               std::to_string(first_position_) + " … " +
                                               std::to_string(first_position_ + length_ - 1));
}

std::int64_t ShardRows::rows() const noexcept {
  std::int64_t total = 0;
  for (const PositionRun& run : runs) total += run.count;
  return total;
}

}  // namespace lwm
