// The RDP accountant against published values (Note [RDP accountant]).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>

#include "kr/core/error.hpp"
#include "kr/privacy/accountant.hpp"
#include "kr/privacy/semantic.hpp"

namespace {

double epsilon(double sigma, double q, std::int64_t steps, double delta) {
  kr::privacy::RdpAccountant accountant;
  accountant.add(sigma, q, steps);
  return accountant.spent(delta).epsilon;
}

// TF Privacy's compute_dp_sgd_privacy counts steps as ceil(epochs * N / batch).
std::int64_t tf_steps(double n, double batch, double epochs) {
  return static_cast<std::int64_t>(std::ceil(epochs * n / batch));
}

}  // namespace

TEST(RdpAccountant, MatchesOpacusAndTfPrivacy) {
  // Opacus' RDP accountant test: sigma 1.5, q 0.04, 2250 steps, delta 1e-5.
  EXPECT_NEAR(epsilon(1.5, 0.04, 2250, 1e-5), 7.32911117143, 1e-9);
  // TF Privacy's compute_dp_sgd_privacy tests.
  EXPECT_NEAR(epsilon(1.3, 150.0 / 60000, tf_steps(60000, 150, 15), 1e-5), 0.7242234026109595,
              1e-9);
  EXPECT_NEAR(epsilon(1.0, 100.0 / 100000, tf_steps(100000, 100, 30), 1e-7), 1.4154988495444842,
              1e-9);
}

TEST(RdpAccountant, NoiseSearchMatchesOpacus) {
  // Opacus' get_noise_multiplier: target 8, q 0.04, 90 epochs (steps = int(90 / 0.04)).
  const double sigma = kr::privacy::noise_multiplier_for(8.0, 0.04, 2250, 1e-5);
  EXPECT_DOUBLE_EQ(sigma, 1.416015625);
  EXPECT_LE(epsilon(sigma, 0.04, 2250, 1e-5), 8.0);
  EXPECT_GT(epsilon(sigma, 0.04, 2250, 1e-5), 8.0 - 0.01);
}

TEST(RdpAccountant, EdgeCasesAndComposition) {
  // q = 1: the Gaussian mechanism, alpha / (2 sigma^2); q = 0: nothing spent.
  EXPECT_DOUBLE_EQ(kr::privacy::sampled_gaussian_rdp(1.0, 2.0, 3.0), 3.0 / 8.0);
  EXPECT_EQ(kr::privacy::sampled_gaussian_rdp(0.0, 1.0, 3.0), 0.0);
  EXPECT_TRUE(std::isinf(kr::privacy::sampled_gaussian_rdp(0.1, 0.0, 3.0)));
  // Integer and fractional orders agree where they meet (the two series of Mironov et al.).
  const double below = kr::privacy::sampled_gaussian_rdp(0.01, 1.1, 4.0 - 1e-9);
  EXPECT_NEAR(below, kr::privacy::sampled_gaussian_rdp(0.01, 1.1, 4.0), 1e-6);
  // Composition adds: two halves spend what the whole does.
  kr::privacy::RdpAccountant halves;
  halves.add(1.5, 0.04, 1125);
  halves.add(1.5, 0.04, 1125);
  EXPECT_NEAR(halves.spent(1e-5).epsilon, epsilon(1.5, 0.04, 2250, 1e-5), 1e-9);
  EXPECT_EQ(halves.history().size(), 2u);
  // More noise spends less; more steps spend more.
  EXPECT_LT(epsilon(2.0, 0.04, 2250, 1e-5), epsilon(1.5, 0.04, 2250, 1e-5));
  EXPECT_GT(epsilon(1.5, 0.04, 4500, 1e-5), epsilon(1.5, 0.04, 2250, 1e-5));
  EXPECT_THROW(epsilon(1.5, 1.5, 10, 1e-5), kr::UsageError);
  EXPECT_THROW(epsilon(1.5, 0.04, 10, 0.0), kr::UsageError);
  EXPECT_THROW(kr::privacy::noise_multiplier_for(1e-9, 1.0, 1000000, 1e-12), kr::UsageError);
}

// Note [What DP covers]: the student gets the generator's epsilon only on hard targets,
// an unfiltered pool and no selection on val; otherwise each reason is named.
TEST(StudentCoverage, OnlyAStudentOfTheDpGeneratorAloneIsCovered) {
  kr::privacy::StudentCoverage student;
  student.targets = "hard";
  student.selects_on_val = false;
  EXPECT_TRUE(kr::privacy::student_dp(student).is_null());  // a non-private generator
  student.generator_dp = kr::Json{{"epsilon", 9.98}, {"delta", 1e-5}, {"formal_guarantee", true}};
  const auto covered = kr::privacy::student_dp(student);
  EXPECT_TRUE(covered.at("covered").get<bool>());
  EXPECT_DOUBLE_EQ(covered.at("epsilon").get<double>(), 9.98);
  EXPECT_TRUE(covered.at("reasons").empty());
  auto reasons = [&](kr::privacy::StudentCoverage changed) {
    const auto out = kr::privacy::student_dp(changed);
    EXPECT_FALSE(out.at("covered").get<bool>());
    EXPECT_FALSE(out.contains("epsilon"));
    return out.at("reasons").size();
  };
  auto soft = student;
  soft.targets = "soft";
  EXPECT_EQ(reasons(soft), 1u);
  auto stored = student;
  stored.targets = "stored";
  stored.hard_weight = 0.5;
  EXPECT_EQ(reasons(stored), 2u);
  auto filtered = student;
  filtered.filtered_pool = true;
  EXPECT_EQ(reasons(filtered), 1u);
  auto selected = student;
  selected.selects_on_val = true;
  EXPECT_EQ(reasons(selected), 1u);
  auto mixed = student;
  mixed.mixup = 1.0;
  EXPECT_EQ(reasons(mixed), 1u);
}

// Note [Semantic query]: each private image votes for its k top public classes; each
// private class takes its largest counts; the pre-training rows follow the choice.
TEST(SemanticQuery, CountsChoiceAndPretrainingRows) {
  // 4 images, 3 public classes, 2 private classes.
  const auto logits =
      torch::tensor({{3.0, 2.0, 1.0}, {3.0, 1.0, 2.0}, {0.0, 1.0, 2.0}, {0.0, 2.0, 1.0}});
  const auto labels = torch::tensor({0, 0, 1, 1}, torch::kInt64);
  const auto top1 = kr::privacy::topk_counts(logits, labels, 1, 2);
  EXPECT_TRUE(
      torch::equal(top1, torch::tensor({{2.0, 0.0, 0.0}, {0.0, 1.0, 1.0}}, torch::kFloat64)));
  const auto top2 = kr::privacy::topk_counts(logits, labels, 2, 2);
  EXPECT_DOUBLE_EQ(top2.sum().item<double>(), 8.0);  // k votes per image
  EXPECT_TRUE(
      torch::equal(top2, torch::tensor({{2.0, 1.0, 1.0}, {0.0, 2.0, 2.0}}, torch::kFloat64)));
  // Ties go to the lower index; the order is by count.
  const auto chosen = kr::privacy::chosen_classes(top2, 2);
  EXPECT_EQ(chosen, (std::vector<std::vector<std::int64_t>>{{0, 1}, {1, 2}}));
  // Public class 1, chosen by both private classes, serves both.
  const auto public_labels = torch::tensor({0, 1, 2, 1, 0}, torch::kInt64);
  const auto [rows, private_labels] = kr::privacy::pretraining_rows(public_labels, chosen);
  EXPECT_EQ(rows, (std::vector<std::int64_t>{0, 1, 3, 4, 1, 2, 3}));
  EXPECT_EQ(private_labels, (std::vector<std::int64_t>{0, 0, 0, 0, 1, 1, 1}));
  EXPECT_THROW(kr::privacy::topk_counts(logits, labels, 4, 2), kr::UsageError);
  EXPECT_THROW(kr::privacy::chosen_classes(top2, 0), kr::UsageError);
  EXPECT_THROW(kr::privacy::topk_counts(logits, torch::tensor({0, 0, 2, 1}), 1, 2), kr::Error);
}

// The query's Gaussian mechanism composes with DP-SGD: a prior spent leaves less room,
// so the DP-SGD steps need more noise for the same total.
TEST(RdpAccountant, NoiseSearchComposesWithWhatWasSpent) {
  kr::privacy::RdpAccountant query;
  query.add(5.0, 1.0, 1);
  const double alone = kr::privacy::noise_multiplier_for(10.0, 0.01, 1000, 1e-5);
  const double composed = kr::privacy::noise_multiplier_for(10.0, 0.01, 1000, 1e-5, 0.01, query);
  EXPECT_GT(composed, alone);
  auto total = query;
  total.add(composed, 0.01, 1000);
  EXPECT_LE(total.spent(1e-5).epsilon, 10.0);
  EXPECT_GT(total.spent(1e-5).epsilon, 9.99);
  const auto copy = kr::privacy::RdpAccountant::from_history(total.history(), "test");
  EXPECT_DOUBLE_EQ(copy.spent(1e-5).epsilon, total.spent(1e-5).epsilon);
  EXPECT_THROW(kr::privacy::RdpAccountant::from_history(kr::Json{{"x", 1}}, "test"), kr::Error);
}
