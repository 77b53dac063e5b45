// Distillation is data-parallel like the teacher: 2 ranks x B/2 follow 1 rank x B.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "kr/comm/data_parallel.hpp"
#include "kr/comm/self_communicator.hpp"
#include "kr/data/image_set.hpp"
#include "kr/train/distillation.hpp"
#include "kr/train/sampler.hpp"
#include "world.hpp"

using kr::test::world;

namespace {

// No BatchNorm: ResNet20's BatchNorm normalises with each rank's local batch
// statistics (Note [BatchNorm under data parallelism]), so only models without it
// can match across rank counts exactly; for BatchNorm the DataParallel test
// checks what is guaranteed (every rank holds rank 0's buffers).
torch::nn::Sequential small_model(std::uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 4, 3).padding(1)),
                               torch::nn::ReLU(), torch::nn::Flatten(),
                               torch::nn::Linear(4 * 8 * 8, 3));
}

at::Tensor distill_parameters(kr::comm::Communicator& comm, kr::train::TargetKind kind,
                              double mixup) {
  torch::manual_seed(21);
  kr::data::ImageSet part;
  part.images = torch::randint(0, 256, {96, 1, 8, 8}, torch::kInt64).to(torch::kUInt8);
  part.labels = torch::arange(96, torch::kInt64).remainder(3);
  auto teacher = small_model(4);
  auto student = small_model(5);
  kr::comm::DataParallel parallel(comm, *student, 0.001, 0.001);
  torch::optim::SGD optimizer(student->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  kr::train::DistillSettings settings;
  settings.kind = kind;
  settings.temperature = 2.0;
  settings.smoothing = 0.1;
  settings.hard_weight = kind == kr::train::TargetKind::soft ? 0.25 : 0.0;
  settings.mixup = mixup;
  settings.augment = kr::data::Augment{2, true};
  settings.seed = 8;
  settings.classes = 3;
  auto teacher_fn = [&](const at::Tensor& images) { return teacher->forward(images); };
  const std::int64_t global_batch = 16;
  kr::train::DistributedSampler sampler(96, global_batch, comm.rank(), comm.size(), 3);
  for (std::int64_t epoch = 0; epoch < 2; ++epoch) {
    for (std::int64_t step = 0; step < 3; ++step) {
      // Part `epoch` of a pool: its first global index moves on each epoch.
      const auto batch = kr::train::make_distill_batch(
          settings, part, 1000 + 96 * epoch, sampler.local_indices(epoch, step),
          static_cast<std::uint64_t>(epoch), teacher_fn, {});
      optimizer.zero_grad();
      kr::train::distill_loss(settings, student->forward(batch.images), batch).backward();
      parallel.synchronize_gradients();
      optimizer.step();
    }
  }
  return torch::nn::utils::parameters_to_vector(student->parameters()).detach();
}

void expect_rank_count_independent(kr::train::TargetKind kind, double mixup) {
  auto& comm = world();
  auto distributed = distill_parameters(comm, kind, mixup);
  kr::comm::SelfCommunicator self;
  auto single = distill_parameters(self, kind, mixup);
  kr::test::expect_matches_single_rank(comm, distributed, single);
}

}  // namespace

TEST(Distill, SoftTargetsWithMixupTwoRanksMatchOneRank) {
  expect_rank_count_independent(kr::train::TargetKind::soft, 0.5);
}

TEST(Distill, HardTargetsTwoRanksMatchOneRank) {
  expect_rank_count_independent(kr::train::TargetKind::hard, 0.0);
}
