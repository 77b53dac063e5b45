// Membership runs dealt over ranks (Note [Membership runs]): at 2 and 3 ranks every
// run is trained once, by rank j % world, complete runs are skipped, and a preemption
// on any rank is seen by all.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <vector>

#include "kr/comm/deal.hpp"
#include "kr/privacy/membership.hpp"
#include "world.hpp"

using kr::test::world;

namespace {

// Every rank's trained runs, gathered: count[j] = how many ranks trained run j.
std::vector<std::int64_t> trained_counts(const std::vector<std::int64_t>& mine, std::int64_t runs) {
  auto counts = torch::zeros({runs}, torch::kInt64);
  for (auto j : mine) counts[j] += 1;
  world().allreduce(counts, kr::comm::ReduceOp::sum);
  return std::vector<std::int64_t>(counts.data_ptr<std::int64_t>(),
                                   counts.data_ptr<std::int64_t>() + runs);
}

}  // namespace

TEST(MembershipRuns, EachIncompleteRunIsTrainedOnceByItsRank) {
  auto& comm = world();
  const std::int64_t runs = 7;  // uneven over 2 and 3 ranks
  std::vector<std::int64_t> mine;
  const bool preempted = kr::comm::deal_jobs(
      comm, runs, [](std::int64_t j) { return j == 2 || j == 5; },  // complete already
      [&](std::int64_t j) {
        EXPECT_EQ(j % comm.size(), comm.rank());
        mine.push_back(j);
        return true;
      });
  EXPECT_FALSE(preempted);
  EXPECT_TRUE(std::is_sorted(mine.begin(), mine.end()));
  EXPECT_EQ(trained_counts(mine, runs), (std::vector<std::int64_t>{1, 1, 0, 1, 1, 0, 1}));
}

TEST(MembershipRuns, APreemptionOnOneRankStopsItsRunsAndReachesEveryRank) {
  auto& comm = world();
  const std::int64_t runs = 9;
  std::vector<std::int64_t> mine;
  const int last = comm.size() - 1;
  const bool preempted = kr::comm::deal_jobs(
      comm, runs, [](std::int64_t) { return false; },
      [&](std::int64_t j) {
        mine.push_back(j);
        return !(comm.rank() == last && j == last);  // the last rank's first run is preempted
      });
  EXPECT_TRUE(preempted);
  if (comm.rank() == last)
    EXPECT_EQ(mine, (std::vector<std::int64_t>{last}));
  else
    EXPECT_EQ(mine.size(),
              static_cast<std::size_t>((runs - comm.rank() + comm.size() - 1) / comm.size()));
}
