// The MPI world communicator every MPI test shares (MPI is started in main.cpp).
#pragma once

#include "kr/comm/mpi_communicator.hpp"

namespace kr::test {

inline comm::MpiCommunicator& world() {
  static comm::MpiCommunicator comm;
  return comm;
}

}  // namespace kr::test
