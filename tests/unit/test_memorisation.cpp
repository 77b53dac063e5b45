// The memorisation audit's search and measures (Note [Memorisation audit]).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <set>

#include "kr/comm/self_communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/data/image_set.hpp"
#include "kr/privacy/memorisation.hpp"
#include "kr/steps/memorisation.hpp"

namespace {

using kr::privacy::Distance;

// Images quantised as uint8 pixels are, in [0, 1].
at::Tensor random_images(std::int64_t n, std::int64_t d) {
  return torch::randint(0, 256, {n, d}, torch::kFloat32) / 255.0;
}

kr::privacy::AuditReference reference_of(const at::Tensor& train, const at::Tensor& holdout,
                                         Distance distance) {
  kr::privacy::AuditReference reference;
  reference.train = kr::privacy::search_rows(train, distance);
  reference.subset_index =
      torch::randperm(train.size(0), torch::kInt64).narrow(0, 0, holdout.size(0));
  reference.subset = reference.train.index({reference.subset_index});
  reference.holdout = kr::privacy::search_rows(holdout, distance);
  return reference;
}

}  // namespace

TEST(NearestNeighbours, MatchBruteForceInBothSpacesAcrossBlockEdges) {
  torch::manual_seed(3);
  const auto queries = torch::randn({37, 12});
  const auto reference = torch::randn({101, 12});
  for (const auto distance : {Distance::l2, Distance::cosine}) {
    const auto q = kr::privacy::search_rows(queries, distance);
    const auto r = kr::privacy::search_rows(reference, distance);
    // Blocks that do not divide the sizes, and a screen merged over 8 reference blocks.
    const auto found = kr::privacy::nearest_neighbours(q, r, 5, distance, {7, 13});
    auto exact = torch::cdist(q.to(torch::kFloat64), r.to(torch::kFloat64));
    if (distance == Distance::cosine) exact = exact.pow(2) * 0.5;
    const auto [values, indices] = exact.sort(1);
    EXPECT_TRUE(torch::allclose(found.distance, values.narrow(1, 0, 5), 1e-9, 1e-9))
        << kr::privacy::distance_name(distance);
    EXPECT_TRUE(torch::equal(found.index, indices.narrow(1, 0, 5)))
        << kr::privacy::distance_name(distance);
  }
  // Cosine distance is 1 - cos.
  const auto a = kr::privacy::search_rows(torch::tensor({{1.0, 0.0}}), Distance::cosine);
  const auto b = kr::privacy::search_rows(torch::tensor({{2.0, 2.0}}), Distance::cosine);
  EXPECT_NEAR(kr::privacy::nearest_neighbours(a, b, 1, Distance::cosine).distance.item<double>(),
              1.0 - std::sqrt(0.5), 1e-7);
}

TEST(NearestNeighbours, SameClassSearchMatchesBruteForcePerClass) {
  // GAN-Leaks' distance (Note [Generator membership]): to the nearest sample of the
  // query's own class only, never a closer one of another class.
  torch::manual_seed(3);
  const auto queries = random_images(60, 20);
  const auto reference = random_images(90, 20);
  const auto q_labels = torch::randint(0, 3, {60}, torch::kInt64);
  const auto r_labels = torch::arange(90, torch::kInt64) % 3;
  const auto found = kr::privacy::nearest_same_class(queries, q_labels, reference, r_labels,
                                                     Distance::l2, {7, 11});
  ASSERT_EQ(found.sizes(), (std::vector<std::int64_t>{60}));
  const auto all = torch::cdist(queries.to(torch::kFloat64), reference.to(torch::kFloat64));
  for (std::int64_t i = 0; i < 60; ++i) {
    const auto same = r_labels.eq(q_labels[i]);
    const double expected = all[i].masked_select(same).min().item<double>();
    EXPECT_NEAR(found[i].item<double>(), expected, 1e-9) << i;
  }
  // A copy of a reference row of its class is at 0; a class without samples is refused.
  auto copies = reference.narrow(0, 0, 2).clone();
  const auto copy_found = kr::privacy::nearest_same_class(copies, r_labels.narrow(0, 0, 2),
                                                          reference, r_labels, Distance::l2);
  EXPECT_EQ(copy_found[0].item<double>(), 0.0);
  EXPECT_EQ(copy_found[1].item<double>(), 0.0);
  EXPECT_THROW(
      kr::privacy::nearest_same_class(queries, q_labels + 5, reference, r_labels, Distance::l2),
      kr::Error);
}

TEST(NearestNeighbours, RefusesBadShapesAndTooLargeK) {
  const auto r = torch::zeros({4, 3});
  EXPECT_THROW(kr::privacy::nearest_neighbours(torch::zeros({2, 5}), r, 1, Distance::l2),
               kr::Error);
  EXPECT_THROW(kr::privacy::nearest_neighbours(torch::zeros({2, 3}), r, 5, Distance::l2),
               kr::Error);
  // No queries: an empty answer, not an error (a rank with no samples).
  const auto none = kr::privacy::nearest_neighbours(torch::zeros({0, 3}), r, 2, Distance::l2);
  EXPECT_EQ(none.distance.sizes(), (std::vector<std::int64_t>{0, 2}));
}

// The planted-duplicate test: a pool of fresh samples with k training images copied in
// is flagged with exactly those k, at distance 0, in both spaces.
TEST(MemorisationAudit, PlantedTrainingImagesAreFlaggedExactlyAtDistanceZero) {
  torch::manual_seed(11);
  const std::int64_t d = 784;
  const auto train = random_images(600, d);
  const auto holdout = random_images(150, d);
  auto pool = random_images(400, d);
  const std::vector<std::int64_t> planted_rows{3, 50, 51, 199, 250, 301, 399};
  const std::vector<std::int64_t> from_train{0, 7, 599, 123, 321, 42, 8};
  for (std::size_t i = 0; i < planted_rows.size(); ++i)
    pool[planted_rows[i]].copy_(train[from_train[i]]);
  const auto labels = torch::arange(400, torch::kInt64) % 10;
  kr::privacy::AuditSettings settings;
  settings.blocks = {64, 100};
  for (const auto distance : {Distance::l2, Distance::cosine}) {
    const auto reference = reference_of(train, holdout, distance);
    const auto audit = kr::privacy::audit_space(kr::privacy::search_rows(pool, distance), reference,
                                                distance, settings);
    const auto at_zero = audit.train_distance.eq(0).nonzero().flatten();
    EXPECT_EQ(std::vector<std::int64_t>(at_zero.data_ptr<std::int64_t>(),
                                        at_zero.data_ptr<std::int64_t>() + at_zero.numel()),
              planted_rows)
        << kr::privacy::distance_name(distance);
    for (std::size_t i = 0; i < planted_rows.size(); ++i)
      EXPECT_EQ(audit.train_index[planted_rows[i]].item<std::int64_t>(), from_train[i]);
    const auto flagged = audit.normalised.lt(settings.threshold).nonzero().flatten();
    EXPECT_TRUE(torch::equal(flagged, at_zero)) << kr::privacy::distance_name(distance);
    const auto closest = kr::privacy::closest_samples(audit, 7);
    EXPECT_EQ(std::set<std::int64_t>(closest.begin(), closest.end()),
              std::set<std::int64_t>(planted_rows.begin(), planted_rows.end()));
    const auto summary = kr::privacy::summarize_space(audit, labels, 10, settings);
    EXPECT_EQ(summary["exact_copies"].get<std::int64_t>(), 7);
    EXPECT_EQ(summary["normalised_under_threshold"].get<std::int64_t>(), 7);
    std::int64_t per_class = 0;
    for (const auto& row : summary["per_class"])
      per_class += row["exact_copies"].get<std::int64_t>();
    EXPECT_EQ(per_class, 7);
  }
}

// Samples drawn like the holdout (neither train nor holdout) are as close to the train
// reference as to the holdout: the DCR share is about one half; a pool of train images is
// closer to train.
TEST(MemorisationAudit, FreshSamplesGiveAboutHalfAndTrainImagesMore) {
  torch::manual_seed(5);
  const std::int64_t d = 8;  // low dimension: nearest distances vary, few ties
  const auto train = torch::randn({3000, d});
  const auto holdout = torch::randn({1000, d});
  const auto fresh = torch::randn({4000, d});
  const auto labels = torch::zeros({4000}, torch::kInt64);
  const kr::privacy::AuditSettings settings;
  for (const auto distance : {Distance::l2, Distance::cosine}) {
    const auto reference = reference_of(train, holdout, distance);
    const auto audit = kr::privacy::audit_space(kr::privacy::search_rows(fresh, distance),
                                                reference, distance, settings);
    const auto summary = kr::privacy::summarize_space(audit, labels, 1, settings);
    // Standard error sqrt(0.25 / 4000) = 0.008.
    EXPECT_NEAR(summary["closer_to_train_share"].get<double>(), 0.5, 0.035)
        << kr::privacy::distance_name(distance);
    EXPECT_EQ(summary["exact_copies"].get<std::int64_t>(), 0);
    const auto members = kr::privacy::audit_space(reference.subset, reference, distance,
                                                  settings);  // the train reference itself
    const auto member_summary =
        kr::privacy::summarize_space(members, torch::zeros({1000}, torch::kInt64), 1, settings);
    EXPECT_EQ(member_summary["closer_to_train_share"].get<double>(), 1.0);
  }
}

TEST(MemorisationAudit, TableRoundTripsAndSummaryQuantilesAreOrdered) {
  torch::manual_seed(2);
  const auto reference = reference_of(torch::randn({200, 6}), torch::randn({50, 6}), Distance::l2);
  const kr::privacy::AuditSettings settings;
  const auto audit =
      kr::privacy::audit_space(kr::privacy::search_rows(torch::randn({30, 6}), Distance::l2),
                               reference, Distance::l2, settings);
  const auto back = kr::privacy::SpaceAudit::from_table(audit.table());
  EXPECT_TRUE(torch::equal(back.train_index, audit.train_index));
  EXPECT_TRUE(torch::equal(back.holdout_distance, audit.holdout_distance));
  const auto summary =
      kr::privacy::summarize_space(audit, torch::zeros({30}, torch::kInt64), 1, settings);
  const auto q = summary["train_distance_quantiles"].get<std::vector<double>>();
  for (std::size_t i = 1; i < q.size(); ++i) EXPECT_LE(q[i - 1], q[i]);
  // The nearest of the whole train set is never farther than the nearest of a subset.
  EXPECT_TRUE(audit.train_distance.le(audit.subset_distance).all().item<bool>());
  EXPECT_THROW(kr::privacy::SpaceAudit::from_table(torch::zeros({3, 5})), kr::Error);
}

// Note [Re-identification filter]: copies of train images (and images nearer train than
// val's threshold) are dropped, images far from train kept; the threshold is val's.
TEST(ReidFilter, DropsCopiesOfTrainImagesAndKeepsFarOnes) {
  torch::manual_seed(4);
  kr::data::Dataset dataset;
  dataset.train = {torch::randint(0, 256, {300, 1, 6, 6}, torch::kUInt8),
                   torch::arange(300, torch::kInt64) % 3};
  dataset.val = {torch::randint(0, 256, {100, 1, 6, 6}, torch::kUInt8),
                 torch::arange(100, torch::kInt64) % 3};
  kr::comm::SelfCommunicator self;
  const kr::steps::ReidFilter filter(self, dataset, nullptr, Distance::l2, 20.0);
  const auto val_nearest =
      kr::privacy::nearest_neighbours(kr::steps::pixel_rows(dataset.val.images),
                                      kr::steps::pixel_rows(dataset.train.images), 1, Distance::l2)
          .distance.flatten();
  const double below = val_nearest.lt(filter.threshold()).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(below, 0.2, 0.02);  // the 20th percentile of val's distances
  auto candidates = torch::randint(0, 256, {40, 1, 6, 6}, torch::kUInt8);
  candidates.narrow(0, 0, 10).copy_(dataset.train.images.narrow(0, 5, 10));  // copies
  // One grey level off (no wrap at 255): nearer than any val image.
  candidates.narrow(0, 10, 10).copy_(
      (dataset.train.images.narrow(0, 100, 10).to(torch::kInt32) + 1).clamp_max(255));
  const auto kept = filter.keep(candidates);
  const auto nearest =
      kr::privacy::nearest_neighbours(kr::steps::pixel_rows(candidates),
                                      kr::steps::pixel_rows(dataset.train.images), 1, Distance::l2)
          .distance.flatten();
  EXPECT_TRUE(torch::equal(kept, nearest.ge(filter.threshold()).nonzero().flatten()));
  EXPECT_GE(kept.numel(), 1);
  EXPECT_TRUE(kept.ge(20).all().item<bool>()) << "a copy or a near-copy was kept";
  EXPECT_EQ(filter.settings()["space"], "pixels_l2");
  EXPECT_THROW(kr::steps::ReidFilter(self, dataset, nullptr, Distance::cosine, 20.0),
               kr::UsageError);
  EXPECT_THROW(kr::steps::ReidFilter(self, dataset, nullptr, Distance::l2, 100.0), kr::UsageError);
}
