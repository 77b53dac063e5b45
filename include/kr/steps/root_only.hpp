#pragma once

#include <functional>

#include "kr/comm/communicator.hpp"

namespace kr::steps {

// Runs `work` on rank 0 only; collective. A failure on rank 0 is rethrown on every
// rank with rank 0's message, so all ranks exit alike instead of waiting.
void run_on_root(comm::Communicator& comm, const std::function<void()>& work);

}  // namespace kr::steps
