// Per-sample gradients (Note [Per-sample gradients]) against micro-batches of one.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <vector>

#include "kr/nn/grad_sample.hpp"

namespace {

namespace gs = kr::nn::grad_sample;

struct Net {
  at::Tensor conv_w, conv_b, norm_w, norm_b, linear_w, linear_b, embed;
  std::vector<at::Tensor> all() const {
    return {conv_w, conv_b, norm_w, norm_b, linear_w, linear_b, embed};
  }
};

Net make_net() {
  torch::manual_seed(7);
  const auto p = [](std::vector<std::int64_t> shape) {
    return (torch::randn(shape, torch::kFloat64) * 0.3).requires_grad_();
  };
  return Net{p({4, 3, 3, 3}), p({4}), p({4}), p({4}), p({2, 4}), p({2}), p({5, 4})};
}

// A discriminator-shaped network: a strided convolution, GroupNorm with affine, a
// nonlinearity, a pooled linear head used twice and a class projection; the loss a sum
// over samples.
at::Tensor loss_of(const Net& net, const at::Tensor& x, const at::Tensor& labels) {
  auto h = gs::conv2d(x, net.conv_w, net.conv_b, 2, 1);
  h = torch::leaky_relu(gs::group_norm(h, 2, net.norm_w, net.norm_b), 0.2);
  const auto pooled = h.sum({2, 3});
  const auto head = gs::linear(pooled, net.linear_w, net.linear_b);
  const auto again = gs::linear(torch::tanh(pooled), net.linear_w, at::Tensor());
  const auto score =
      head.sum(1) + again.pow(2).sum(1) + (gs::embedding(labels, net.embed) * pooled).sum(1);
  return (score.pow(2) + score).sum();
}

}  // namespace

TEST(GradSample, PerSampleGradientsEqualMicroBatchesOfOne) {
  const auto net = make_net();
  const auto x = torch::randn({6, 3, 8, 8}, torch::kFloat64);
  const auto labels = torch::tensor({0, 4, 2, 2, 1, 3}, torch::kInt64);
  // The batch, recorded.
  gs::Recorder recorder;
  {
    gs::RecordScope scope(recorder);
    loss_of(net, x, labels).backward();
  }
  std::vector<at::Tensor> summed;
  for (const auto& p : net.all()) {
    summed.push_back(p.grad().clone());
    p.mutable_grad().zero_();
  }
  EXPECT_EQ(recorder.parameters(), net.all().size());
  EXPECT_EQ(recorder.batch(), 6);
  // The batch, unrecorded: the same summed gradients.
  loss_of(net, x, labels).backward();
  for (std::size_t k = 0; k < summed.size(); ++k) {
    EXPECT_TRUE(torch::allclose(summed[k], net.all()[k].grad(), 1e-10, 1e-12)) << k;
    net.all()[k].mutable_grad().zero_();
  }
  // Each sample alone.
  auto squares = torch::zeros({6}, torch::kFloat64);
  for (std::int64_t b = 0; b < 6; ++b) {
    loss_of(net, x.narrow(0, b, 1), labels.narrow(0, b, 1)).backward();
    for (const auto& p : net.all()) {
      const auto mine = recorder.of(p);
      ASSERT_TRUE(mine.defined());
      EXPECT_TRUE(torch::allclose(mine[b], p.grad(), 1e-10, 1e-12))
          << "sample " << b << ", parameter of shape " << p.sizes();
      squares[b] += p.grad().pow(2).sum();
      p.mutable_grad().zero_();
    }
  }
  EXPECT_TRUE(torch::allclose(recorder.norms(), squares.sqrt(), 1e-10, 1e-12));
}

TEST(GradSample, NothingIsRecordedOutsideAScopeAndScopesNest) {
  const auto net = make_net();
  const auto x = torch::randn({3, 3, 8, 8}, torch::kFloat64);
  const auto labels = torch::tensor({0, 1, 2}, torch::kInt64);
  EXPECT_EQ(gs::active(), nullptr);
  gs::Recorder outer, inner;
  {
    gs::RecordScope a(outer);
    {
      gs::RecordScope b(inner);
      EXPECT_EQ(gs::active(), &inner);
    }
    EXPECT_EQ(gs::active(), &outer);
  }
  EXPECT_EQ(gs::active(), nullptr);
  loss_of(net, x, labels).backward();
  EXPECT_EQ(outer.parameters(), 0u);
  // A second batch size in one recording is refused.
  gs::Recorder recorder;
  {
    gs::RecordScope scope(recorder);
    loss_of(net, x, labels).backward();
    EXPECT_THROW(loss_of(net, x.narrow(0, 0, 2), labels.narrow(0, 0, 2)).backward(),
                 std::exception);
  }
}
