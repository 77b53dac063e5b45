#include "kr/comm/deal.hpp"

#include <torch/torch.h>

#include "kr/comm/communicator.hpp"

namespace kr::comm {

bool deal_jobs(Communicator& comm, std::int64_t jobs,
               const std::function<bool(std::int64_t)>& complete,
               const std::function<bool(std::int64_t)>& run) {
  bool preempted = false;
  for (std::int64_t j = comm.rank(); j < jobs && !preempted; j += comm.size())
    if (!complete(j)) preempted = !run(j);
  auto flag = torch::tensor({preempted ? 1 : 0}, torch::kInt64);
  comm.allreduce(flag, ReduceOp::max);
  return flag.item<std::int64_t>() != 0;
}

}  // namespace kr::comm
