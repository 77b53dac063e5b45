// The MPI world communicator every MPI test shares (MPI is started in main.cpp).
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "kr/comm/mpi_communicator.hpp"

namespace kr::test {

inline comm::MpiCommunicator& world() {
  static comm::MpiCommunicator comm;
  return comm;
}

// Note [Global batches]: parameters trained at 2 ranks x B/2 follow 1 rank x B to
// float tolerance, and every rank holds the same ones.
inline void expect_matches_single_rank(comm::Communicator& comm, const at::Tensor& distributed,
                                       const at::Tensor& single) {
  const double relative =
      (distributed - single).abs().max().item<double>() / single.abs().max().item<double>();
  EXPECT_LT(relative, 1e-5);
  auto other = distributed.clone();
  comm.broadcast(other, 0);
  EXPECT_TRUE(other.equal(distributed)) << "ranks hold different parameters";
}

}  // namespace kr::test
