// DP-SGD's sampling, clipping and noise (Note [DP-SGD]).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <cmath>

#include "kr/comm/dp_sgd.hpp"
#include "kr/comm/self_communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/nn/grad_sample.hpp"

namespace {

namespace gs = kr::nn::grad_sample;

// A linear model's recorded per-sample gradients of a summed loss on rows `rows`.
void record_batch(gs::Recorder& recorder, const at::Tensor& w, const at::Tensor& b,
                  const at::Tensor& x) {
  gs::RecordScope scope(recorder);
  gs::linear(x, w, b).pow(2).sum().backward();
}

}  // namespace

TEST(DpSgd, PoissonBatchesAreKeyedAndOfTheExpectedSize) {
  const auto a = kr::comm::poisson_batch(20000, 0.05, 3, 7);
  EXPECT_EQ(a, kr::comm::poisson_batch(20000, 0.05, 3, 7));
  EXPECT_NE(a, kr::comm::poisson_batch(20000, 0.05, 3, 8));
  EXPECT_NEAR(static_cast<double>(a.size()), 1000.0, 4 * std::sqrt(1000.0 * 0.95));
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  // Shares tile the batch for any rank count.
  for (int size : {1, 2, 3}) {
    std::vector<std::int64_t> joined;
    for (int r = 0; r < size; ++r)
      for (auto i : kr::comm::rank_share(a, r, size)) joined.push_back(i);
    std::sort(joined.begin(), joined.end());
    EXPECT_EQ(joined, a) << size;
  }
  EXPECT_THROW(kr::comm::poisson_batch(10, 0.0, 0, 0), kr::UsageError);
}

TEST(DpSgd, EachSampleIsClippedToCAndTheSumScaledByTheExpectedBatch) {
  torch::manual_seed(1);
  auto w = torch::randn({3, 5}).requires_grad_();
  auto b = torch::randn({3}).requires_grad_();
  const auto x = torch::randn({8, 5}) * 3.0;
  kr::comm::DpSettings settings;
  settings.clip = 0.5;
  settings.noise_multiplier = 0.0;
  settings.sample_rate = 0.1;
  settings.records = 40;  // expected batch 4
  kr::comm::DpGradient dp({w, b}, settings);
  gs::Recorder recorder;
  record_batch(recorder, w, b, x);
  const auto norms = dp.accumulate({recorder.of(w), recorder.of(b)});
  ASSERT_EQ(norms.size(0), 8);
  EXPECT_EQ(dp.samples(), 8);
  EXPECT_EQ(dp.clipped(), norms.gt(0.5).sum().item<std::int64_t>());
  // By hand: each sample's (w, b) gradient times min(1, C / norm), summed, over q N.
  auto expected_w = torch::zeros({3, 5});
  auto expected_b = torch::zeros({3});
  for (std::int64_t i = 0; i < 8; ++i) {
    const double f = std::min(1.0, 0.5 / norms[i].item<double>());
    expected_w += recorder.of(w)[i] * f;
    expected_b += recorder.of(b)[i] * f;
  }
  kr::comm::SelfCommunicator self;
  dp.finish(self, 0);
  EXPECT_TRUE(torch::allclose(w.grad(), expected_w / 4.0, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(b.grad(), expected_b / 4.0, 1e-5, 1e-6));
  EXPECT_EQ(dp.samples(), 0);
}

// A step with a term that reads no private record (a GAN's fakes) adds the DP sum to the
// gradient already there; without `add` it replaces it.
TEST(DpSgd, FinishAddsToAnExistingGradientOnlyWhenAsked) {
  auto w = torch::zeros({2, 3}).requires_grad_();
  kr::comm::DpSettings settings;
  settings.noise_multiplier = 0.0;
  settings.sample_rate = 0.5;
  settings.records = 4;  // expected batch 2
  kr::comm::DpGradient dp({w}, settings);
  const auto per_sample = torch::full({2, 2, 3}, 0.1);  // norms 0.245: not clipped
  kr::comm::SelfCommunicator self;
  w.mutable_grad() = torch::ones({2, 3});
  dp.accumulate({per_sample});
  dp.finish(self, 0, /*add=*/true);
  EXPECT_TRUE(torch::allclose(w.grad(), torch::full({2, 3}, 1.1)));
  w.mutable_grad() = torch::ones({2, 3});
  dp.accumulate({per_sample});
  dp.finish(self, 1);
  EXPECT_TRUE(torch::allclose(w.grad(), torch::full({2, 3}, 0.1)));
  // A per-sample gradient of another shape is refused.
  EXPECT_THROW(dp.accumulate({torch::zeros({2, 3, 2})}), std::logic_error);
}

TEST(DpSgd, NoiseHasStandardDeviationSigmaCOverTheExpectedBatch) {
  auto w = torch::zeros({200, 100}).requires_grad_();
  kr::comm::DpSettings settings;
  settings.clip = 2.0;
  settings.noise_multiplier = 1.5;
  settings.sample_rate = 0.5;
  settings.records = 10;  // expected batch 5: sd 1.5 * 2 / 5 = 0.6
  settings.noise = kr::comm::NoiseSource::keyed;
  settings.seed = 9;
  kr::comm::SelfCommunicator self;
  kr::comm::DpGradient keyed({w}, settings);
  keyed.finish(self, 3);  // no samples: the gradient is the noise alone
  const auto first = w.grad().clone();
  EXPECT_NEAR(first.std().item<double>(), 0.6, 0.6 * 0.03);
  EXPECT_NEAR(first.mean().item<double>(), 0.0, 0.01);
  keyed.finish(self, 3);
  EXPECT_TRUE(torch::equal(w.grad(), first));  // keyed: reproducible
  keyed.finish(self, 4);
  EXPECT_FALSE(torch::equal(w.grad(), first));
  settings.noise = kr::comm::NoiseSource::secure;
  kr::comm::DpGradient secure({w}, settings);
  secure.finish(self, 3);
  EXPECT_FALSE(torch::equal(w.grad(), first));
  EXPECT_NEAR(w.grad().std().item<double>(), 0.6, 0.6 * 0.03);
  EXPECT_TRUE(secure.describe().at("formal_guarantee").get<bool>());
  EXPECT_FALSE(keyed.describe().at("formal_guarantee").get<bool>());
  EXPECT_THROW(kr::comm::noise_source("urandom"), kr::UsageError);
}
