// NCCL backend: CUDA tensors (raw device pointers on a cudart stream; no
// c10::cuda). The unique id travels over MPI, and the MPI communicator's
// heartbeat channel serves the shared watchdog (Note [Watchdog]).
// Built only when KR_HAS_NCCL.
#pragma once

#include <memory>

#include "kr/comm/communicator.hpp"
#include "kr/comm/mpi_communicator.hpp"

namespace kr::comm {

// Number of CUDA devices visible, 0 when there is no GPU or no driver.
int cuda_device_count();

class NcclCommunicator final : public Communicator {
 public:
  // Selects device local_rank % devices. Throws when no GPU is present.
  NcclCommunicator(std::unique_ptr<MpiCommunicator> mpi, int local_rank);
  ~NcclCommunicator() override;

  std::string backend() const override { return "nccl"; }
  [[noreturn]] void abort(int code, const std::string& why) override;
  int device() const { return device_; }

 protected:
  void check_tensor(const at::Tensor& tensor) const override;
  std::unique_ptr<PendingOp> start_allreduce(void* data, std::size_t count, DataType type,
                                             ReduceOp op) override;
  std::unique_ptr<PendingOp> start_broadcast(void* data, std::size_t bytes, int root) override;
  std::unique_ptr<PendingOp> start_allgather(const void* send, void* receive,
                                             std::size_t bytes_per_rank) override;
  std::unique_ptr<PendingOp> start_barrier() override;
  bool native_average() const override { return true; }
  void announce_arrival(std::uint64_t sequence) override { mpi_->announce(sequence); }
  bool tracks_arrivals() const override { return true; }
  std::vector<int> ranks_not_arrived(std::uint64_t sequence) override {
    return mpi_->not_arrived(sequence);
  }

 private:
  std::unique_ptr<PendingOp> after_enqueue(int nccl_status, const char* what);

  std::unique_ptr<MpiCommunicator> mpi_;
  int device_ = 0;
  void* comm_ = nullptr;     // ncclComm_t
  void* stream_ = nullptr;   // cudaStream_t
  void* scratch_ = nullptr;  // one device float for barriers
};

}  // namespace kr::comm
