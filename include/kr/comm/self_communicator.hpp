// One-rank backend: every collective is the identity. Makes unit tests cheap.
#pragma once

#include "kr/comm/communicator.hpp"

namespace kr::comm {

class SelfCommunicator final : public Communicator {
 public:
  SelfCommunicator() : Communicator(0, 1) {}
  std::string backend() const override { return "self"; }
  [[noreturn]] void abort(int code, const std::string& why) override;

 protected:
  void check_tensor(const at::Tensor& tensor) const override;
  std::unique_ptr<PendingOp> start_allreduce(void* data, std::size_t count, DataType type,
                                             ReduceOp op) override;
  std::unique_ptr<PendingOp> start_broadcast(void* data, std::size_t bytes, int root) override;
  std::unique_ptr<PendingOp> start_allgather(const void* send, void* receive,
                                             std::size_t bytes_per_rank) override;
  std::unique_ptr<PendingOp> start_barrier() override;
  bool native_average() const override { return true; }
};

}  // namespace kr::comm
