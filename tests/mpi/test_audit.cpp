// The memorisation audit over ranks (Note [Memorisation audit]): a planted pool read
// back through the pool reader, its samples split over the ranks.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>

#include "kr/comm/self_communicator.hpp"
#include "kr/comm/shard_range.hpp"
#include "kr/io/shard.hpp"
#include "kr/privacy/memorisation.hpp"
#include "world.hpp"

namespace {

using kr::privacy::Distance;

// Rank 0 writes a pool of `rows` (uint8 images) in shards of `block`; every rank gets
// its directory.
std::string write_pool(const at::Tensor& rows, std::int64_t block, std::int64_t classes) {
  auto& comm = kr::test::world();
  auto pid = torch::tensor({static_cast<std::int64_t>(::getpid())}, torch::kInt64);
  comm.broadcast(pid, 0);
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("kr_mpi_audit_" + std::to_string(pid.item<std::int64_t>())))
                              .string();
  const auto total = rows.size(0);
  if (comm.rank() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    std::vector<std::string> made;
    for (std::int64_t first = 0; first < total; first += block) {
      const auto n = std::min(block, total - first);
      kr::io::Shard shard{rows.narrow(0, first, n).contiguous(),
                          torch::arange(first, first + n, torch::kInt64) % classes,
                          {},
                          {}};
      const auto name = kr::io::shard_file_name(first, n);
      kr::io::write_shard(dir + "/" + name, shard, {first, n, "planted", "none", 0},
                          kr::Json::object());
      made.push_back(name);
    }
    kr::io::commit_pool(dir, kr::io::PoolDescription{total,
                                                     block,
                                                     classes,
                                                     {rows.size(1), rows.size(2), rows.size(3)},
                                                     false,
                                                     false,
                                                     "planted",
                                                     kr::Json::object(),
                                                     kr::Json::object(),
                                                     made});
  }
  comm.barrier();
  return dir;
}

at::Tensor pixels(const at::Tensor& images) {
  return kr::privacy::search_rows(images.to(torch::kFloat32) / 255.0, Distance::l2);
}

}  // namespace

// The planted-duplicate test through the pool reader: k training images copied into a
// pool of fresh images are exactly the samples at distance 0, found by whichever rank
// holds them; every rank gets what one rank computes.
TEST(MemorisationAudit, PlantedPoolSplitOverRanksFlagsExactlyTheCopies) {
  auto& comm = kr::test::world();
  torch::manual_seed(17);  // the same data on every rank
  const auto train = torch::randint(0, 256, {500, 1, 8, 8}, torch::kUInt8);
  const auto holdout = torch::randint(0, 256, {120, 1, 8, 8}, torch::kUInt8);
  auto rows = torch::randint(0, 256, {333, 1, 8, 8}, torch::kUInt8);
  const std::vector<std::int64_t> planted{0, 99, 100, 101, 250, 332};
  for (std::size_t i = 0; i < planted.size(); ++i) rows[planted[i]].copy_(train[40 * i + 1]);
  const auto dir = write_pool(rows, 100, 10);
  const auto pool = kr::io::SyntheticPool::open(dir);

  kr::privacy::AuditReference reference;
  reference.train = pixels(train);
  reference.subset_index = torch::arange(0, 500, 4, torch::kInt64).narrow(0, 0, 120);
  reference.subset = reference.train.index({reference.subset_index});
  reference.holdout = pixels(holdout);
  kr::privacy::AuditSettings settings;
  settings.blocks = {16, 64};
  const auto range = kr::comm::shard_range(pool.size(), comm.rank(), comm.size());
  const auto mine = pool.read(range.begin, range.end - range.begin);
  double seconds = -1;
  const auto audit =
      kr::privacy::audit_space_gathered(comm, pixels(mine.images), range.begin, pool.size(),
                                        reference, Distance::l2, settings, &seconds);
  EXPECT_GE(seconds, 0.0);
  kr::comm::SelfCommunicator self;
  const auto alone = kr::privacy::audit_space_gathered(self, pixels(rows), 0, rows.size(0),
                                                       reference, Distance::l2, settings);
  EXPECT_TRUE(torch::equal(audit.table(), alone.table()));
  const auto at_zero = audit.train_distance.eq(0).nonzero().flatten();
  EXPECT_TRUE(torch::equal(at_zero, torch::tensor(planted, torch::kInt64)));
  for (std::size_t i = 0; i < planted.size(); ++i)
    EXPECT_EQ(audit.train_index[planted[i]].item<std::int64_t>(),
              static_cast<std::int64_t>(40 * i + 1));
  EXPECT_TRUE(torch::equal(audit.normalised.lt(settings.threshold).nonzero().flatten(), at_zero));
  const auto summary = kr::privacy::summarize_space(audit, torch::arange(333) % 10, 10, settings);
  if (comm.rank() == 0)
    std::printf(
        "planted pool, %d rank(s): %lld samples, %lld exact copies, %lld under the "
        "normalised threshold, closer to train %.3f\n",
        comm.size(), static_cast<long long>(pool.size()),
        static_cast<long long>(summary["exact_copies"].get<std::int64_t>()),
        static_cast<long long>(summary["normalised_under_threshold"].get<std::int64_t>()),
        summary["closer_to_train_share"].get<double>());
  comm.barrier();
  if (comm.rank() == 0) std::filesystem::remove_all(dir);
}
