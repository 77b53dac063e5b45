// Generator training under data parallelism: 2 ranks at half the batch follow
// 1 rank at the full batch (Note [Global batches]), for the GAN and the DDPM.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "kr/comm/self_communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/gen/filter.hpp"
#include "kr/gen/quality.hpp"
#include "kr/gen/regenerate.hpp"
#include "kr/gen/sampler.hpp"
#include "kr/gen/update.hpp"
#include "kr/train/sampler.hpp"
#include "world.hpp"

namespace {

kr::gen::GeneratorSpec small_spec(const std::string& model) {
  kr::gen::GeneratorSpec spec;
  spec.model = model;
  spec.channels = 1;
  spec.classes = 4;
  spec.height = 8;
  spec.width = 8;
  spec.latent = 8;
  // Width 16, not 8: with one channel per GroupNorm group a conv bias before the
  // norm has a gradient of exactly zero in theory, and Adam turns its rounding
  // noise into full-size steps of either sign.
  spec.g_width = 16;
  spec.d_width = 16;
  spec.unet_width = 16;
  return spec;
}

// Parameters of the model, the EMA and (GAN) the discriminator after 4 steps.
at::Tensor train(kr::comm::Communicator& communicator, const std::string& model, int rank, int size,
                 double mode_seeking = 0.0) {
  torch::manual_seed(5);
  auto images = torch::rand({64, 1, 8, 8}) * 2.0 - 1.0;
  auto labels = torch::randint(4, {64}, torch::kInt64);
  const auto spec = small_spec(model);
  kr::gen::GeneratorHyper hyper;
  hyper.lr = 1e-3;
  hyper.seed = 11;
  hyper.cfg_drop = 0.5;  // drops the label for some images on one rank and not the other
  hyper.bucket_mb = 0.001;
  hyper.mode_seeking = mode_seeking;
  kr::gen::GeneratorUpdate update(communicator, spec, hyper);
  kr::train::DistributedSampler sampler(64, 16, rank, size, 3);
  for (std::int64_t step = 0; step < 4; ++step) {
    const auto local = sampler.local_indices(0, step);
    auto index = torch::tensor(local, torch::kInt64);
    update.step(images.index_select(0, index), labels.index_select(0, index), local,
                static_cast<std::uint64_t>(step));
  }
  std::vector<at::Tensor> parts{torch::nn::utils::parameters_to_vector(update.model().parameters()),
                                torch::nn::utils::parameters_to_vector(update.ema().parameters())};
  if (update.discriminator())
    parts.push_back(torch::nn::utils::parameters_to_vector(update.discriminator()->parameters()));
  return torch::cat(parts);
}

void expect_two_ranks_follow_one(const std::string& model, double mode_seeking = 0.0) {
  auto& comm = kr::test::world();
  auto distributed = train(comm, model, comm.rank(), comm.size(), mode_seeking);
  kr::comm::SelfCommunicator self;
  auto single = train(self, model, 0, 1, mode_seeking);
  const double relative =
      (distributed - single).abs().max().item<double>() / single.abs().max().item<double>();
  EXPECT_LT(relative, 1e-4) << model;
  auto other = distributed.clone();
  comm.broadcast(other, 0);
  EXPECT_TRUE(other.equal(distributed)) << model << ": ranks hold different parameters";
  // The run moved the parameters: a no-op update would also "match".
  torch::manual_seed(11);
  auto fresh = kr::gen::make_generator_model(small_spec(model));
  auto start = torch::nn::utils::parameters_to_vector(fresh->parameters());
  EXPECT_GT((single.narrow(0, 0, start.numel()) - start).abs().max().item<double>(), 1e-4);
}

// Note [DP GAN]: 3 DP steps of the GAN (keyed noise) over 64 images at q = 1/4.
at::Tensor train_dp(kr::comm::Communicator& communicator, double noise_multiplier,
                    std::int64_t physical_batch) {
  torch::manual_seed(5);
  auto images = torch::rand({64, 1, 8, 8}) * 2.0 - 1.0;
  auto labels = torch::randint(4, {64}, torch::kInt64);
  kr::gen::GeneratorHyper hyper;
  hyper.lr = 1e-3;
  hyper.seed = 11;
  hyper.bucket_mb = 0.001;
  kr::comm::DpSettings dp;
  dp.clip = 0.5;
  dp.noise_multiplier = noise_multiplier;
  dp.sample_rate = 0.25;
  dp.records = 64;
  dp.noise = kr::comm::NoiseSource::keyed;
  dp.seed = 11;
  hyper.dp = dp;
  hyper.dp_fake_batch = 48;  // dealt evenly to 1, 2 or 3 ranks
  hyper.dp_physical_batch = physical_batch;
  kr::gen::GeneratorUpdate update(communicator, small_spec("gan"), hyper);
  const auto rows = [&](const std::vector<std::int64_t>& indices) {
    auto index = torch::tensor(indices, torch::kInt64);
    return std::make_pair(images.index_select(0, index), labels.index_select(0, index));
  };
  std::int64_t samples = 0;
  for (std::uint64_t step = 0; step < 3; ++step) {
    const auto losses = update.dp_step(rows, step);
    EXPECT_TRUE(std::isfinite(losses.loss) && std::isfinite(losses.g_loss));
    samples += update.dp_last_samples();
  }
  // 3 steps x 2 d-steps of Poisson batches at q N = 16: this rank's share of ~96.
  auto total = torch::tensor({static_cast<double>(samples)}, torch::kFloat64);
  communicator.allreduce(total, kr::comm::ReduceOp::sum);
  EXPECT_GT(total.item<double>(), 50.0);
  EXPECT_LT(total.item<double>(), 150.0);
  return torch::cat({torch::nn::utils::parameters_to_vector(update.model().parameters()),
                     torch::nn::utils::parameters_to_vector(update.discriminator()->parameters())});
}

}  // namespace

// The DP step is data-parallel as every other: each rank clips its share of the
// rank-invariant Poisson batch, the sums are all-reduced and the noise added once, so
// 2 or 3 ranks (and any physical batch) give 1 rank's parameters.
TEST(GeneratorUpdate, DpGanStepAtAnyRankCountMatchesOneRank) {
  auto& comm = kr::test::world();
  const auto distributed = train_dp(comm, 0.8, 3);
  kr::comm::SelfCommunicator self;
  const auto single = train_dp(self, 0.8, 64);
  const double relative =
      (distributed - single).abs().max().item<double>() / single.abs().max().item<double>();
  EXPECT_LT(relative, 1e-4);
  // The noise is part of the step: without it the parameters differ.
  EXPECT_GT((train_dp(self, 0.0, 64) - single).abs().max().item<double>(), 1e-4);
}

TEST(GeneratorUpdate, DpGanRefusesTheDdpmAndAnUnevenFakeBatch) {
  auto& comm = kr::test::world();
  kr::gen::GeneratorHyper hyper;
  hyper.dp = kr::comm::DpSettings{1.0, 1.0, 0.1, 100, kr::comm::NoiseSource::keyed, 0};
  hyper.dp_fake_batch = 16;
  EXPECT_THROW(kr::gen::GeneratorUpdate(comm, small_spec("ddpm"), hyper), kr::UsageError);
  hyper.dp_fake_batch = comm.size() + 1;
  if (comm.size() > 1) {
    EXPECT_THROW(kr::gen::GeneratorUpdate(comm, small_spec("gan"), hyper), kr::UsageError);
  }
}

TEST(GeneratorUpdate, GanTwoRanksAtHalfBatchMatchOneRankAtFullBatch) {
  expect_two_ranks_follow_one("gan");
}

// Note [Mode seeking]: the term is a mean of per-sample terms, so data parallelism holds.
TEST(GeneratorUpdate, GanWithModeSeekingTwoRanksAtHalfBatchMatchOneRankAtFullBatch) {
  expect_two_ranks_follow_one("gan", 1.0);
  kr::comm::SelfCommunicator self;
  EXPECT_FALSE(train(self, "gan", 0, 1, 1.0).equal(train(self, "gan", 0, 1, 0.0)))
      << "the mode-seeking term changed nothing";
}

TEST(GeneratorUpdate, DdpmTwoRanksAtHalfBatchMatchOneRankAtFullBatch) {
  expect_two_ranks_follow_one("ddpm");
}

TEST(ClassGrid, RanksShareTheWorkAndEveryRankGetsTheSameGridAsOneRank) {
  auto& comm = kr::test::world();
  torch::manual_seed(3);
  auto spec = small_spec("gan");
  spec.classes = 3;
  auto model = kr::gen::make_generator_model(spec);
  auto sampler = kr::gen::make_sampler(spec, model);
  // 3 classes x 5 columns: 15 images, dealt to ranks in chunks of 8 and 7.
  auto shared = kr::gen::class_grid(comm, *sampler, 5, 9);
  kr::comm::SelfCommunicator self;
  auto alone = kr::gen::class_grid(self, *sampler, 5, 9);
  ASSERT_EQ(shared.sizes(), alone.sizes());
  EXPECT_LE((shared.to(torch::kInt32) - alone.to(torch::kInt32)).abs().max().item<int>(), 1);
  // Not blank: the generator's output fills the grid.
  EXPECT_GT(alone.to(torch::kFloat32).std().item<double>(), 1.0);
}

// Quality measures over ranks equal one rank's: the real reference and the samples'
// features are gathered in index order, so precision and recall do not depend on
// the rank count.
TEST(Quality, RanksMeasureWhatOneRankMeasures) {
  auto& comm = kr::test::world();
  torch::manual_seed(6);
  auto spec = small_spec("gan");
  auto model = kr::gen::make_generator_model(spec);
  auto sampler = kr::gen::make_sampler(spec, model);
  // A fixed random projection as the "teacher": features 8x8 -> 6, head 6 -> 4.
  const auto project = torch::randn({64, 6});
  const auto head = torch::randn({6, spec.classes});
  const kr::gen::ClassifierView view{
      [project](const at::Tensor& images) { return images.flatten(1).mm(project); },
      [head](const at::Tensor& features) { return features.mm(head); }};
  kr::data::ImageSet val;
  val.images = torch::randint(0, 256, {83, 1, 8, 8}, torch::kInt64).to(torch::kUInt8);
  val.labels = torch::arange(83, torch::kInt64).remainder(spec.classes);
  const auto shared_real = kr::gen::real_reference(comm, view, val, 10);
  const auto shared = kr::gen::measure_quality(comm, *sampler, 5, 120, 16, view, shared_real);
  kr::comm::SelfCommunicator self;
  const auto alone_real = kr::gen::real_reference(self, view, val, 10);
  const auto alone = kr::gen::measure_quality(self, *sampler, 5, 120, 16, view, alone_real);
  EXPECT_TRUE(shared_real.features.allclose(alone_real.features));
  EXPECT_EQ(shared.samples, 128);  // whole sample batches
  ASSERT_EQ(shared.class_recall.size(), 4u);
  EXPECT_EQ(shared.class_compared, alone.class_compared);
  EXPECT_EQ(shared.class_compared[3], 20);  // val has 20 of class 3; the samples 32
  EXPECT_EQ(shared.class_precision, alone.class_precision);
  EXPECT_EQ(shared.class_recall, alone.class_recall);
  EXPECT_EQ(shared.predicted_counts, alone.predicted_counts);
  EXPECT_NEAR(shared.frechet, alone.frechet, 1e-6 * (1 + alone.frechet));
  EXPECT_GE(alone.precision, 0.0);
  EXPECT_LE(alone.recall, 1.0);
}

// Note [Confidence filter]: which candidates fill the pool does not depend on the
// rank count, and they are the first `quota` accepted of each class in candidate order.
namespace {

constexpr std::int64_t kClasses = 5;

bool accepted_candidate(std::int64_t i) {
  const auto c = i % kClasses;
  return static_cast<std::int64_t>((static_cast<std::uint64_t>(i) * 2654435761u) % 100) <
         15 + 10 * c;
}

// Candidate block b of 40: the accepted rows, a pure function of b (as a file would be).
kr::io::Shard fake_block(std::int64_t b) {
  std::vector<std::int64_t> kept;
  for (std::int64_t i = b * 40; i < b * 40 + 40; ++i)
    if (accepted_candidate(i)) kept.push_back(i);
  kr::io::Shard rows;
  auto index = torch::tensor(kept, torch::kInt64);
  rows.source_index = index;
  rows.labels = index.remainder(kClasses);
  rows.images =
      index.remainder(251).to(torch::kUInt8).view({-1, 1, 1, 1}).expand({-1, 1, 2, 2}).contiguous();
  rows.teacher_logits = torch::nn::functional::one_hot(rows.labels, kClasses).to(torch::kFloat32);
  return rows;
}

}  // namespace

TEST(ConfidenceFilter, PoolIsTheSameForAnyRankCountAndTakesCandidatesInOrder) {
  const std::int64_t quota = 60;
  kr::gen::CandidateSet distributed(40, kClasses, fake_block);
  distributed.fill(kr::test::world(), quota, 3, fake_block);
  kr::comm::SelfCommunicator self;
  kr::gen::CandidateSet single(40, kClasses, fake_block);
  single.fill(self, quota, 3, fake_block);
  auto a = distributed.gather(0, quota * kClasses);
  auto b = single.gather(0, quota * kClasses);
  EXPECT_TRUE(a.images.equal(b.images));
  EXPECT_TRUE(a.source_index.equal(b.source_index));
  EXPECT_TRUE(a.labels.equal(torch::arange(quota * kClasses).remainder(kClasses)));
  // The expected pool, by scanning candidates in order.
  std::vector<std::vector<std::int64_t>> first(kClasses);
  for (std::int64_t i = 0;
       std::any_of(first.begin(), first.end(),
                   [&](auto& v) { return static_cast<std::int64_t>(v.size()) < quota; });
       ++i) {
    auto& list = first[static_cast<std::size_t>(i % kClasses)];
    if (accepted_candidate(i) && static_cast<std::int64_t>(list.size()) < quota) list.push_back(i);
  }
  for (std::int64_t j = 0; j < quota * kClasses; ++j)
    ASSERT_EQ(a.source_index[j].item<std::int64_t>(),
              first[static_cast<std::size_t>(j % kClasses)][static_cast<std::size_t>(j / kClasses)])
        << "row " << j;
  // Class 0 accepts ~15 %, so more blocks than the first round were needed.
  EXPECT_GT(distributed.blocks(), 3);
  EXPECT_GE(distributed.accepted(0), quota);
  // Pieces gathered separately equal the whole (pool shards are gathered block by block).
  EXPECT_TRUE(distributed.gather(70, 50).source_index.equal(a.source_index.narrow(0, 70, 50)));
}

TEST(ConfidenceFilter, AClassThatAcceptsNothingIsAnError) {
  auto none_of_class_2 = [](std::int64_t b) {
    auto rows = fake_block(b);
    auto keep = rows.labels.ne(2).nonzero().view(-1);
    rows.images = rows.images.index_select(0, keep);
    rows.labels = rows.labels.index_select(0, keep);
    rows.teacher_logits = rows.teacher_logits.index_select(0, keep);
    rows.source_index = rows.source_index.index_select(0, keep);
    return rows;
  };
  kr::gen::CandidateSet set(40, kClasses, none_of_class_2);
  try {
    set.fill(kr::test::world(), 10, 2, none_of_class_2);
    FAIL() << "no error";
  } catch (const kr::Error& error) {
    EXPECT_NE(std::string(error.what()).find("class 2: none of"), std::string::npos)
        << error.what();
  }
}

// kr distill --generate-online: the sample batches covering a range, dealt to ranks and
// gathered, give every rank the images one rank samples (same threads per rank).
TEST(DealtSampling, EveryRankGetsTheRangeOneRankSamples) {
  auto& comm = kr::test::world();
  torch::manual_seed(4);
  const auto spec = small_spec("gan");
  auto model = kr::gen::make_generator_model(spec);
  auto sampler = kr::gen::make_sampler(spec, model);
  // [10, 33) in batches of 4: batches 2..8 (7 batches, uneven over 2 and 3 ranks), the
  // first and last only partly used.
  const auto dealt = kr::gen::sample_range_dealt(comm, *sampler, 10, 23, 11, 4);
  const auto alone = kr::gen::sample_range(*sampler, 8, 28, 11, 4).narrow(0, 2, 23);
  ASSERT_EQ(dealt.sizes(), alone.sizes());
  EXPECT_TRUE(torch::equal(dealt, alone));
  auto other = dealt.clone();
  comm.broadcast(other, 0);
  EXPECT_TRUE(torch::equal(other, dealt)) << "ranks hold different images";
}
