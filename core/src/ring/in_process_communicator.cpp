// P ranks as threads of one process (communicator.h). Each ordered pair of ranks has a FIFO
// mailbox; a send copies the bytes into the receiver's mailbox at once, so a posted ring exchange
// never blocks the sender and its compute overlaps the transfer. A receive waits on the group's
// condition variable until the message arrives, the group is aborted, or the timeout passes.
// Every message carries the operation kind and name so that ranks that run different operation
// sequences (spec ring-attention §1.9 pitfall 8) fail with both names instead of hanging.
#include <omp.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "lwm/communicator.h"
#include "lwm/error.h"

namespace lwm {
namespace {

// Marks the errors of ranks that stopped because another rank failed (see run_ranks).
constexpr std::string_view kInterrupted = " interrupted because ";

enum class OperationKind { ring_exchange, all_gather, broadcast, barrier };

const char* to_string(OperationKind kind) {
  switch (kind) {
    case OperationKind::ring_exchange:
      return "ring exchange";
    case OperationKind::all_gather:
      return "all-gather";
    case OperationKind::broadcast:
      return "broadcast";
    case OperationKind::barrier:
      return "barrier";
  }
  return "operation";
}

struct Message {
  OperationKind kind;
  std::string what;
  std::vector<std::byte> bytes;
};

struct GroupState {
  int world_size = 0;
  std::chrono::milliseconds timeout{0};
  std::mutex mutex;
  std::condition_variable arrived;
  std::vector<std::deque<Message>> mailboxes;  // [receiver * world_size + sender]
  bool aborted = false;
  std::string abort_reason;

  std::deque<Message>& mailbox(int receiver, int sender) {
    return mailboxes[static_cast<std::size_t>(receiver * world_size + sender)];
  }
  void abort_locked(const std::string& reason) {
    if (aborted) return;
    aborted = true;
    abort_reason = reason;
    arrived.notify_all();
  }
};

std::string describe(OperationKind kind, std::string_view what) {
  return std::string(to_string(kind)) + " '" + std::string(what) + "'";
}

class InProcessCommunicator final : public Communicator {
 public:
  InProcessCommunicator(std::shared_ptr<GroupState> group, int rank)
      : group_(std::move(group)), rank_(rank) {}

  int rank() const noexcept override { return rank_; }
  int world_size() const noexcept override { return group_->world_size; }
  std::chrono::milliseconds timeout() const noexcept override { return group_->timeout; }
  std::string name() const override {
    return "in-process rank " + std::to_string(rank_) + " of " + std::to_string(group_->world_size);
  }

  std::unique_ptr<PendingExchange> start_ring_exchange(std::span<const std::byte> send,
                                                       std::span<std::byte> receive,
                                                       std::string_view what) override {
    const int next = (rank_ + 1) % world_size();
    const int previous = (rank_ + world_size() - 1) % world_size();
    post(next, OperationKind::ring_exchange, what, send);
    return std::make_unique<Pending>(*this, previous, receive, std::string(what));
  }

  void all_gather(std::span<const std::byte> send, std::span<std::byte> receive,
                  std::string_view what) override {
    const std::size_t part = send.size();
    if (receive.size() != part * static_cast<std::size_t>(world_size())) {
      fail(OperationKind::all_gather, what,
           "receive buffer holds " + std::to_string(receive.size()) + " bytes, expected " +
               std::to_string(world_size()) + " × " + std::to_string(part));
    }
    for (int peer = 0; peer < world_size(); ++peer) {
      if (peer != rank_) post(peer, OperationKind::all_gather, what, send);
    }
    if (part > 0)
      std::memcpy(receive.data() + part * static_cast<std::size_t>(rank_), send.data(), part);
    for (int peer = 0; peer < world_size(); ++peer) {
      if (peer != rank_) {
        take(peer, OperationKind::all_gather, what,
             receive.subspan(part * static_cast<std::size_t>(peer), part));
      }
    }
  }

  void broadcast(std::span<std::byte> data, int root, std::string_view what) override {
    if (root < 0 || root >= world_size()) {
      fail(OperationKind::broadcast, what, "root rank " + std::to_string(root) + " does not exist");
    }
    if (rank_ == root) {
      for (int peer = 0; peer < world_size(); ++peer) {
        if (peer != rank_) post(peer, OperationKind::broadcast, what, data);
      }
    } else {
      take(root, OperationKind::broadcast, what, data);
    }
  }

  void barrier(std::string_view what) override {
    for (int peer = 0; peer < world_size(); ++peer) {
      if (peer != rank_) post(peer, OperationKind::barrier, what, {});
    }
    for (int peer = 0; peer < world_size(); ++peer) {
      if (peer != rank_) take(peer, OperationKind::barrier, what, {});
    }
  }

  void abort(const std::string& reason) noexcept override {
    try {
      const std::lock_guard lock(group_->mutex);
      group_->abort_locked("rank " + std::to_string(rank_) + " failed: " + reason);
    } catch (...) {
      // Locking or formatting failed (out of memory): nothing more can be reported.
    }
  }

 private:
  class Pending final : public PendingExchange {
   public:
    Pending(InProcessCommunicator& owner, int source, std::span<std::byte> receive,
            std::string what)
        : owner_(owner), source_(source), receive_(receive), what_(std::move(what)) {}
    void wait() override {
      if (done_) return;
      done_ = true;
      owner_.take(source_, OperationKind::ring_exchange, what_, receive_);
    }

   private:
    InProcessCommunicator& owner_;
    int source_;
    std::span<std::byte> receive_;
    std::string what_;
    bool done_ = false;
  };

  [[noreturn]] void fail(OperationKind kind, std::string_view what, const std::string& problem) {
    const std::string message = name() + ": " + describe(kind, what) + ": " + problem;
    abort(message);
    throw Error(ErrorKind::communication, message);
  }

  [[noreturn]] void throw_aborted_locked(OperationKind kind, std::string_view what) {
    throw Error(ErrorKind::communication, name() + ": " + describe(kind, what) +
                                              std::string(kInterrupted) + group_->abort_reason);
  }

  void post(int receiver, OperationKind kind, std::string_view what,
            std::span<const std::byte> bytes) {
    Message message{kind, std::string(what), std::vector<std::byte>(bytes.begin(), bytes.end())};
    const std::lock_guard lock(group_->mutex);
    if (group_->aborted) throw_aborted_locked(kind, what);
    group_->mailbox(receiver, rank_).push_back(std::move(message));
    group_->arrived.notify_all();
  }

  void take(int sender, OperationKind kind, std::string_view what, std::span<std::byte> receive) {
    std::unique_lock lock(group_->mutex);
    std::deque<Message>& box = group_->mailbox(rank_, sender);
    const auto deadline = std::chrono::steady_clock::now() + group_->timeout;
    while (!group_->aborted && box.empty()) {
      if (group_->arrived.wait_until(lock, deadline) == std::cv_status::timeout && box.empty() &&
          !group_->aborted) {
        const std::string message =
            name() + ": timed out after " + std::to_string(group_->timeout.count()) +
            " ms waiting for rank " + std::to_string(sender) + " in " + describe(kind, what);
        group_->abort_locked("rank " + std::to_string(rank_) + " failed: " + message);
        throw Error(ErrorKind::communication, message);
      }
    }
    if (group_->aborted) throw_aborted_locked(kind, what);
    Message message = std::move(box.front());
    box.pop_front();
    std::string problem;
    if (message.kind != kind || message.what != what) {
      problem = "rank " + std::to_string(sender) + " sent " + describe(message.kind, message.what) +
                " instead: the ranks ran different sequences of operations";
    } else if (message.bytes.size() != receive.size()) {
      problem = "rank " + std::to_string(sender) + " sent " + std::to_string(message.bytes.size()) +
                " bytes, expected " + std::to_string(receive.size());
    }
    if (!problem.empty()) {
      const std::string text = name() + ": " + describe(kind, what) + ": " + problem;
      group_->abort_locked("rank " + std::to_string(rank_) + " failed: " + text);
      throw Error(ErrorKind::communication, text);
    }
    lock.unlock();
    if (!receive.empty()) std::memcpy(receive.data(), message.bytes.data(), receive.size());
  }

  std::shared_ptr<GroupState> group_;
  int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> make_in_process_group(
    int world_size, std::chrono::milliseconds timeout) {
  if (world_size <= 0) {
    throw Error(ErrorKind::invalid_argument,
                "an in-process group needs at least one rank, got " + std::to_string(world_size));
  }
  if (timeout.count() <= 0) {
    throw Error(ErrorKind::invalid_argument, "communicator timeout must be positive, got " +
                                                 std::to_string(timeout.count()) + " ms");
  }
  auto group = std::make_shared<GroupState>();
  group->world_size = world_size;
  group->timeout = timeout;
  group->mailboxes.resize(static_cast<std::size_t>(world_size) *
                          static_cast<std::size_t>(world_size));
  std::vector<std::unique_ptr<Communicator>> ranks;
  for (int rank = 0; rank < world_size; ++rank) {
    ranks.push_back(std::make_unique<InProcessCommunicator>(group, rank));
  }
  return ranks;
}

RankOutcomes run_ranks(std::vector<std::unique_ptr<Communicator>>& group,
                       const std::function<void(Communicator&)>& body) {
  RankOutcomes outcomes;
  outcomes.errors.resize(group.size());
  std::vector<char> interrupted(group.size(), 0);  // not vector<bool>: threads write it
  // The ranks share this machine's cores: each gets its part of the OpenMP threads the caller
  // has, instead of every rank starting a full team (P× oversubscription).
  const int threads_per_rank =
      std::max(1, omp_get_max_threads() / std::max(1, static_cast<int>(group.size())));
  std::vector<std::thread> threads;
  threads.reserve(group.size());
  for (std::size_t rank = 0; rank < group.size(); ++rank) {
    threads.emplace_back([&, rank] {
      omp_set_num_threads(threads_per_rank);
      Communicator& communicator = *group[rank];
      try {
        body(communicator);
      } catch (const std::exception& e) {
        interrupted[rank] = std::string_view(e.what()).find(kInterrupted) != std::string_view::npos;
        communicator.abort(e.what());
        outcomes.errors[rank] = std::current_exception();
      } catch (...) {
        communicator.abort("unknown exception");
        outcomes.errors[rank] = std::current_exception();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  // The cause is the lowest rank whose failure is not a report of another rank's abort (threads
  // wake in any order, so the order of failures says nothing).
  for (std::size_t rank = 0; rank < group.size(); ++rank) {
    if (outcomes.errors[rank] && !interrupted[rank]) {
      outcomes.first_failed_rank = static_cast<int>(rank);
      break;
    }
  }
  for (std::size_t rank = 0; rank < group.size() && outcomes.first_failed_rank < 0; ++rank) {
    if (outcomes.errors[rank]) outcomes.first_failed_rank = static_cast<int>(rank);
  }
  return outcomes;
}

void RankOutcomes::rethrow_first_error() const {
  if (first_failed_rank >= 0)
    std::rethrow_exception(errors[static_cast<std::size_t>(first_failed_rank)]);
}

}  // namespace lwm
