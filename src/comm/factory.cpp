#include "kr/comm/factory.hpp"

#include "kr/comm/mpi_communicator.hpp"
#include "kr/comm/mpi_runtime.hpp"
#include "kr/comm/self_communicator.hpp"
#include "kr/config.hpp"
#include "kr/core/error.hpp"
#if KR_HAS_NCCL
#include "kr/comm/nccl_communicator.hpp"
#endif

namespace kr::comm {

std::unique_ptr<Communicator> make_communicator(const std::string& backend,
                                                const MpiRuntime& runtime) {
  if (backend == "self" || (backend == "auto" && runtime.world_size() == 1)) {
    if (runtime.world_size() != 1) {
      throw UsageError("--comm self needs one rank, the job has " +
                       std::to_string(runtime.world_size()));
    }
    return std::make_unique<SelfCommunicator>();
  }
  if (backend == "mpi" || backend == "auto") return std::make_unique<MpiCommunicator>();
  if (backend == "nccl") {
#if KR_HAS_NCCL
    return std::make_unique<NcclCommunicator>(std::make_unique<MpiCommunicator>(),
                                              runtime.local_rank());
#else
    throw UsageError(
        "--comm nccl: this kr was built without NCCL (configure with -DKR_WITH_NCCL=ON)");
#endif
  }
  throw UsageError("unknown --comm '" + backend + "' (expected auto, mpi, self, nccl)");
}

}  // namespace kr::comm
