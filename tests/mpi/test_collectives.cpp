#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/torch.h>

#include "kr/comm/data_parallel.hpp"
#include "kr/comm/mpi_communicator.hpp"
#include "kr/comm/self_communicator.hpp"
#include "kr/config.hpp"
#include "kr/core/error.hpp"
#include "kr/data/image_set.hpp"
#include "kr/nn/resnet.hpp"
#include "kr/steps/root_only.hpp"
#include "kr/train/evaluate.hpp"
#include "kr/train/sampler.hpp"
#include "world.hpp"
#if KR_HAS_NCCL
#include "kr/comm/nccl_communicator.hpp"
#endif

using kr::test::world;

TEST(Communicator, RunsOnTwoRanks) {
  ASSERT_EQ(world().size(), 2) << "run under mpiexec -n 2";
}

// Strings of different lengths (one empty) come back whole, in rank order, on every rank.
TEST(Communicator, AllgatherStringsOfAnyLength) {
  auto& comm = world();
  auto text = [](int rank) {
    return rank == 1 ? std::string() : std::string(3 + 5 * rank, 'a' + rank);
  };
  const auto all = comm.allgather_strings(text(comm.rank()));
  ASSERT_EQ(static_cast<int>(all.size()), comm.size());
  for (int r = 0; r < comm.size(); ++r) EXPECT_EQ(all[r], text(r)) << "rank " << r << "'s string";
}

TEST(Communicator, AllreduceSumAverageMax) {
  auto& comm = world();
  auto values = torch::full({3}, static_cast<float>(comm.rank() + 1));
  comm.allreduce(values, kr::comm::ReduceOp::sum);
  EXPECT_TRUE(values.equal(torch::full({3}, 3.0f)));
  auto average = torch::full({2}, static_cast<double>(comm.rank() * 4));
  comm.allreduce(average, kr::comm::ReduceOp::avg);
  EXPECT_TRUE(average.equal(torch::full({2}, 2.0, torch::kFloat64)));
  auto maximum = torch::tensor(
      {static_cast<std::int64_t>(comm.rank()), static_cast<std::int64_t>(-comm.rank())});
  comm.allreduce(maximum, kr::comm::ReduceOp::max);
  EXPECT_EQ(maximum[0].item<std::int64_t>(), 1);
  EXPECT_EQ(maximum[1].item<std::int64_t>(), 0);
  EXPECT_THROW(comm.allreduce(maximum, kr::comm::ReduceOp::avg), kr::Error);
}

TEST(Communicator, BroadcastAllgatherBarrierAndSequence) {
  auto& comm = world();
  const auto before = comm.sequence();
  auto payload =
      comm.rank() == 0 ? torch::arange(5, torch::kInt64) : torch::zeros({5}, torch::kInt64);
  comm.broadcast(payload, 0);
  EXPECT_TRUE(payload.equal(torch::arange(5, torch::kInt64)));
  auto gathered = comm.allgather(torch::full({2, 2}, static_cast<float>(comm.rank())));
  ASSERT_EQ(gathered.sizes(), (std::vector<std::int64_t>{4, 2}));
  EXPECT_EQ(gathered[0][0].item<float>(), 0.0f);
  EXPECT_EQ(gathered[3][1].item<float>(), 1.0f);
  comm.barrier();
  EXPECT_EQ(comm.sequence(), before + 3);
}

TEST(Communicator, RootFailureReachesEveryRank) {
  auto& comm = world();
  try {
    kr::steps::run_on_root(comm, [] { throw kr::Error("disk full on rank 0"); });
    FAIL() << "no exception";
  } catch (const kr::Error& error) {
    EXPECT_STREQ(error.what(), "disk full on rank 0");
  }
  EXPECT_NO_THROW(kr::steps::run_on_root(comm, [] {}));
}

namespace {
torch::nn::Sequential no_batchnorm_model() {
  torch::manual_seed(17);
  return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).padding(1)),
                               torch::nn::ReLU(), torch::nn::Flatten(),
                               torch::nn::Linear(4 * 8 * 8, 10));
}
}  // namespace

// Note [Global batches]: 2 ranks x B/2 must follow 1 rank x B.
TEST(DataParallel, TwoRanksAtHalfBatchMatchOneRankAtFullBatch) {
  auto& comm = world();
  torch::manual_seed(99);
  auto images = torch::randn({256, 1, 8, 8});
  auto labels = torch::randint(10, {256}, torch::kInt64);
  const std::int64_t global_batch = 32;

  auto train = [&](kr::comm::Communicator& communicator, int rank, int size) {
    auto model = no_batchnorm_model();
    if (communicator.rank() == 0) {
      // Make rank 1's initial weights differ: the start-up broadcast must fix them.
    } else {
      torch::NoGradGuard guard;
      for (auto& p : model->parameters()) p.add_(1.0);
    }
    kr::comm::DataParallel parallel(communicator, *model, 0.001, 0.001);  // many buckets
    torch::optim::SGD optimizer(model->parameters(),
                                torch::optim::SGDOptions(0.1).momentum(0.9).nesterov(true));
    kr::train::DistributedSampler sampler(256, global_batch, rank, size, 3);
    for (std::int64_t step = 0; step < 5; ++step) {
      auto index = torch::tensor(sampler.local_indices(0, step), torch::kInt64);
      optimizer.zero_grad();
      auto loss = torch::nn::functional::cross_entropy(
          model->forward(images.index_select(0, index)), labels.index_select(0, index));
      loss.backward();
      parallel.synchronize_gradients();
      optimizer.step();
    }
    return torch::cat({torch::nn::utils::parameters_to_vector(model->parameters())});
  };

  auto distributed = train(comm, comm.rank(), comm.size());
  kr::comm::SelfCommunicator self;
  auto single = train(self, 0, 1);
  kr::test::expect_matches_single_rank(comm, distributed, single);
}

TEST(DataParallel, BatchNormBuffersFollowRankZero) {
  auto& comm = world();
  torch::manual_seed(5);
  kr::nn::ResNet20 model(kr::nn::ResNetShape{1, 10, 4});
  kr::comm::DataParallel parallel(comm, *model);
  model->train();
  model->forward(torch::randn({4, 1, 8, 8}) * (comm.rank() + 1));  // different local statistics
  parallel.broadcast_buffers();
  for (auto& buffer : model->buffers()) {
    auto reference = buffer.clone();
    comm.broadcast(reference, 0);
    EXPECT_TRUE(reference.equal(buffer));
  }
}

TEST(Evaluate, DistributedAccuracyEqualsOneRankExactly) {
  auto& comm = world();
  torch::manual_seed(8);
  kr::data::ImageSet set{torch::randint(0, 256, {101, 1, 8, 8}, torch::kInt64).to(torch::kUInt8),
                         torch::randint(3, {101}, torch::kInt64)};
  torch::nn::Linear head(64, 3);
  auto logits = [&](const at::Tensor& images) { return head->forward(images.flatten(1)); };
  const auto distributed = kr::train::evaluate_classifier(comm, logits, set, 16);
  kr::comm::SelfCommunicator self;
  const auto single = kr::train::evaluate_classifier(self, logits, set, 7);
  EXPECT_EQ(distributed.count, 101);
  EXPECT_EQ(distributed.correct, single.correct);
}

TEST(Nccl, CommunicatorOnGpus) {
#if KR_HAS_NCCL
  if (kr::comm::cuda_device_count() == 0)
    GTEST_SKIP() << "built with NCCL, but this machine has no GPU";
  kr::comm::NcclCommunicator nccl(std::make_unique<kr::comm::MpiCommunicator>(), world().rank());
  EXPECT_EQ(nccl.size(), 2);
  EXPECT_THROW(nccl.allreduce(torch::ones({2}), kr::comm::ReduceOp::sum),
               kr::Error);  // CPU tensor refused
#else
  GTEST_SKIP() << "built without NCCL (KR_HAS_NCCL=0)";
#endif
}
