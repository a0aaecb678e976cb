// Communicators: how the ranks of one sequence-parallel job (spec ring-attention §1.2, §1.6, §1.7)
// move bytes between each other. One interface, several transports: threads in one process
// (in_process_communicator.cpp: P CPU devices, or P virtual shards on one device); NCCL within a
// machine and across machines later behind the same calls.
//
// Every operation is collective or paired: all ranks must issue the same operations in the same
// order (spec §1.9 pitfall 8). Each call names itself (`what`, e.g. "layer 3 hop 2"); a rank that
// receives a different operation than it expects, waits longer than the timeout, or learns that
// another rank failed throws Error(ErrorKind::communication) naming the peer and the operation.
// Nothing hangs: a failing rank calls abort(), and every other rank's pending and later
// operations throw at once instead of waiting for the timeout.
#pragma once

#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace lwm {

// A ring step in flight: the send has been posted and the receive will land in the buffer given
// to start_ring_exchange. Wait before reading the receive buffer or reusing the send buffer.
class PendingExchange {
 public:
  virtual ~PendingExchange() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const noexcept = 0;
  virtual int world_size() const noexcept = 0;
  // How long one operation may wait for a peer before it throws.
  virtual std::chrono::milliseconds timeout() const noexcept = 0;
  // "in-process rank 2 of 4", for messages.
  virtual std::string name() const = 0;

  // Sends `send` to rank+1 and receives exactly receive.size() bytes from rank−1 (mod world
  // size), returning at once so that compute overlaps the transfer (double buffering, §1.6).
  // The sizes of a pair must agree: a mismatch throws on both sides.
  virtual std::unique_ptr<PendingExchange> start_ring_exchange(std::span<const std::byte> send,
                                                               std::span<std::byte> receive,
                                                               std::string_view what) = 0;
  // receive = the send buffers of ranks 0…P−1 concatenated; every rank sends the same size.
  virtual void all_gather(std::span<const std::byte> send, std::span<std::byte> receive,
                          std::string_view what) = 0;
  // Copies `data` of rank `root` into `data` of every other rank.
  virtual void broadcast(std::span<std::byte> data, int root, std::string_view what) = 0;
  virtual void barrier(std::string_view what) = 0;
  // Marks the whole group failed with `reason`: every rank's pending and later operations throw
  // Error(communication) that names this rank and the reason. The group cannot be used again.
  virtual void abort(const std::string& reason) noexcept = 0;
};

// Configuration handshake: every rank passes a description of what it is about to run (world size,
// shapes, dtype, options). When the descriptions differ, every rank throws
// Error(ErrorKind::communication) listing which ranks hold which description.
void check_same_configuration(Communicator& communicator, const std::string& description);

// P communicators joined in one process (one per thread). Operations copy through shared
// mailboxes, so each rank's buffers may live anywhere in the process.
std::vector<std::unique_ptr<Communicator>> make_in_process_group(
    int world_size, std::chrono::milliseconds timeout = std::chrono::seconds(120));

// What each rank of run_ranks ended with.
struct RankOutcomes {
  std::vector<std::exception_ptr> errors;  // per rank; null where the rank finished
  int first_failed_rank = -1;              // the rank whose error came first (the cause), or −1
  bool all_succeeded() const noexcept { return first_failed_rank < 0; }
  // Rethrows the first failure (the cause; the others report the abort it triggered).
  void rethrow_first_error() const;
};

// Runs body(communicator) for every rank of `group` on its own thread and joins them all. A rank
// that throws aborts the group with its message, so no other rank waits on it.
RankOutcomes run_ranks(std::vector<std::unique_ptr<Communicator>>& group,
                       const std::function<void(Communicator&)>& body);

}  // namespace lwm
