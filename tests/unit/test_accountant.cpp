// The RDP accountant against published values (Note [RDP accountant]).
#include <gtest/gtest.h>

#include <cmath>

#include "kr/core/error.hpp"
#include "kr/privacy/accountant.hpp"

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
