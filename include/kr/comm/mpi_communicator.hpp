// MPI backend: CPU tensors, non-blocking collectives polled under the watchdog.
#pragma once

#include <mpi.h>

#include <deque>
#include <memory>

#include "kr/comm/communicator.hpp"

namespace kr::comm {

class MpiCommunicator final : public Communicator {
 public:
  // Duplicates `parent` for collectives and again for the heartbeat channel.
  explicit MpiCommunicator(MPI_Comm parent = MPI_COMM_WORLD);
  ~MpiCommunicator() override;

  std::string backend() const override { return "mpi"; }
  [[noreturn]] void abort(int code, const std::string& why) override;
  MPI_Comm raw() const { return comm_; }

  // Used by the NCCL backend, which shares this heartbeat channel.
  void announce(std::uint64_t sequence) { announce_arrival(sequence); }
  std::vector<int> not_arrived(std::uint64_t sequence) { return ranks_not_arrived(sequence); }

 protected:
  void check_tensor(const at::Tensor& tensor) const override;
  std::unique_ptr<PendingOp> start_allreduce(void* data, std::size_t count, DataType type,
                                             ReduceOp op) override;
  std::unique_ptr<PendingOp> start_broadcast(void* data, std::size_t bytes, int root) override;
  std::unique_ptr<PendingOp> start_allgather(const void* send, void* receive,
                                             std::size_t bytes_per_rank) override;
  std::unique_ptr<PendingOp> start_barrier() override;
  void announce_arrival(std::uint64_t sequence) override;
  std::vector<int> ranks_not_arrived(std::uint64_t sequence) override;
  bool tracks_arrivals() const override { return true; }

 private:
  void drain_heartbeats(bool block_until, std::uint64_t sequence);
  void reap_sends(bool wait);
  void drain_root_arrivals(bool block_until, std::uint64_t sequence);

  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Comm heartbeat_ = MPI_COMM_NULL;
  std::vector<std::uint64_t> arrived_;  // rank 0: last sequence each rank announced
  struct Send {
    std::unique_ptr<std::uint64_t> value;
    MPI_Request request;
  };
  std::deque<Send> sends_;
  std::uint64_t last_announced_ = 0;
  std::uint64_t root_arrived_ = 0;  // other ranks: last sequence rank 0 announced
};

}  // namespace kr::comm
