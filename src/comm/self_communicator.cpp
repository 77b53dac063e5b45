#include "kr/comm/self_communicator.hpp"

#include <cstdlib>
#include <cstring>

#include "kr/core/error.hpp"
#include "kr/core/log.hpp"

namespace kr::comm {

namespace {
class Done final : public PendingOp {
 public:
  bool test() override { return true; }
};
}  // namespace

void SelfCommunicator::abort(int code, const std::string& why) {
  log::error(why);
  std::_Exit(code);
}

void SelfCommunicator::check_tensor(const at::Tensor& tensor) const {
  if (!tensor.is_contiguous()) throw Error("self communicator: tensors must be contiguous");
}

std::unique_ptr<PendingOp> SelfCommunicator::start_allreduce(void*, std::size_t, DataType,
                                                             ReduceOp) {
  return std::make_unique<Done>();
}

std::unique_ptr<PendingOp> SelfCommunicator::start_broadcast(void*, std::size_t, int root) {
  if (root != 0)
    throw Error("self communicator: broadcast root " + std::to_string(root) + " does not exist");
  return std::make_unique<Done>();
}

std::unique_ptr<PendingOp> SelfCommunicator::start_allgather(const void* send, void* receive,
                                                             std::size_t bytes_per_rank) {
  std::memcpy(receive, send, bytes_per_rank);
  return std::make_unique<Done>();
}

std::unique_ptr<PendingOp> SelfCommunicator::start_barrier() {
  return std::make_unique<Done>();
}

}  // namespace kr::comm
