#pragma once

#include <memory>
#include <string>

#include "kr/comm/communicator.hpp"

namespace kr::comm {

class MpiRuntime;

// backend: "auto" (mpi when more than one rank, else self), "mpi", "self" or "nccl".
std::unique_ptr<Communicator> make_communicator(const std::string& backend,
                                                const MpiRuntime& runtime);

}  // namespace kr::comm
