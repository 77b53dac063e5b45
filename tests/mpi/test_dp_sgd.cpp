// DP-SGD over ranks: the same gradient at any rank count (Note [DP-SGD]).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "kr/comm/dp_sgd.hpp"
#include "kr/comm/self_communicator.hpp"
#include "kr/nn/grad_sample.hpp"
#include "world.hpp"

namespace {

namespace gs = kr::nn::grad_sample;

// The DP gradient of a linear model's summed loss over `rows` of x, in physical batches of 3.
at::Tensor dp_gradient(kr::comm::Communicator& comm, const std::vector<std::int64_t>& rows,
                       const at::Tensor& x, kr::comm::DpSettings settings) {
  torch::manual_seed(4);
  auto w = torch::randn({4, 6}).requires_grad_();
  kr::comm::DpGradient dp({w}, settings);
  for (std::size_t start = 0; start < rows.size(); start += 3) {
    const auto count = std::min<std::size_t>(3, rows.size() - start);
    std::vector<std::int64_t> part(rows.begin() + static_cast<std::ptrdiff_t>(start),
                                   rows.begin() + static_cast<std::ptrdiff_t>(start + count));
    gs::Recorder recorder;
    {
      gs::RecordScope scope(recorder);
      gs::linear(x.index_select(0, torch::tensor(part)), w, at::Tensor()).pow(2).sum().backward();
    }
    dp.accumulate({recorder.of(w)});
  }
  dp.finish(comm, 5);
  return w.grad().clone();
}

}  // namespace

TEST(DpSgd, ClippedNoisySumIsTheSameAtAnyRankCount) {
  auto& comm = kr::test::world();
  torch::manual_seed(2);
  const auto x = torch::randn({300, 6}) * 2.0;
  kr::comm::DpSettings settings;
  settings.clip = 1.0;
  settings.noise_multiplier = 0.8;
  settings.sample_rate = 0.1;
  settings.records = 300;
  settings.noise = kr::comm::NoiseSource::keyed;
  settings.seed = 11;
  const auto batch = kr::comm::poisson_batch(300, 0.1, 11, 5);
  const auto mine = kr::comm::rank_share(batch, comm.rank(), comm.size());
  const auto spread = dp_gradient(comm, mine, x, settings);
  kr::comm::SelfCommunicator self;
  const auto alone = dp_gradient(self, batch, x, settings);
  EXPECT_TRUE(torch::allclose(spread, alone, 1e-5, 1e-6)) << comm.size() << " ranks";
  // The noise went in once: without it the difference is exactly the noise over q N.
  settings.noise_multiplier = 0.0;
  const auto quiet = dp_gradient(self, batch, x, settings);
  const double noise_sd = (alone - quiet).std().item<double>();
  EXPECT_GT(noise_sd, 0.0);
  EXPECT_LT(noise_sd, 3 * 0.8 * 1.0 / 30.0);
}
