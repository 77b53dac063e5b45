// Generators: architecture, DDPM loss, deterministic sampling, round trips, PNG, quality maths.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "fixtures.hpp"
#include "kr/core/error.hpp"
#include "kr/gen/filter.hpp"
#include "kr/gen/gan.hpp"
#include "kr/gen/quality.hpp"
#include "kr/gen/sampler.hpp"
#include "kr/gen/unet.hpp"
#include "kr/io/png.hpp"
#include "kr/nn/flops.hpp"
#include "kr/nn/grad_sample.hpp"
#include "kr/nn/resnet.hpp"
#include "kr/nn/serialize.hpp"
#include "kr/nn/upsample.hpp"

using kr::test::TempDir;
using kr::test::write_bytes;

namespace {

kr::gen::GeneratorSpec spec_for(const std::string& model, std::int64_t width = 8) {
  kr::gen::GeneratorSpec spec;
  spec.model = model;
  spec.unet_width = width;
  spec.g_width = width;
  spec.d_width = width;
  spec.latent = 16;
  spec.sample_steps = 3;
  return spec;
}

}  // namespace

TEST(UNet, ParameterCountsMatchArchitecturesDoc) {
  auto spec = spec_for("ddpm", 32);
  EXPECT_EQ(kr::nn::parameter_count(*kr::gen::UNet(spec)), 795105);
  spec.unet_width = 64;
  EXPECT_EQ(kr::nn::parameter_count(*kr::gen::UNet(spec)), 3167169);
}

TEST(UpsampleConv, EqualsNearestUpsamplingThenConvolutionForwardAndBackward) {
  namespace F = torch::nn::functional;
  torch::manual_seed(5);
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64).requires_grad(true);
  for (bool with_bias : {true, false}) {
    for (bool channels_last : {false, true}) {
      auto x = torch::randn({3, 6, 7, 5}, f64);
      auto weight = torch::randn({4, 6, 3, 3}, f64);
      auto bias = with_bias ? torch::randn({4}, f64) : at::Tensor();
      auto input = channels_last ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
      auto up = F::interpolate(input, F::InterpolateFuncOptions()
                                          .scale_factor(std::vector<double>{2.0, 2.0})
                                          .mode(torch::kNearest));
      auto direct = F::conv2d(up, weight, F::Conv2dFuncOptions().bias(bias).padding(1));
      auto folded = kr::nn::upsample2x_conv3x3(input, weight, bias);
      ASSERT_EQ(folded.sizes(), direct.sizes());
      EXPECT_LT((folded - direct).abs().max().item<double>(), 1e-10);
      auto seed = torch::randn_like(direct);
      std::vector<at::Tensor> wrt = {x, weight};
      if (with_bias) wrt.push_back(bias);
      auto expected = torch::autograd::grad({direct}, wrt, {seed});
      auto got = torch::autograd::grad({folded}, wrt, {seed});
      for (std::size_t i = 0; i < wrt.size(); ++i)
        EXPECT_LT((got[i] - expected[i]).abs().max().item<double>(), 1e-10) << "gradient " << i;
    }
  }
  EXPECT_THROW(
      kr::nn::upsample2x_conv3x3(torch::zeros({1, 2, 4, 4}), torch::zeros({3, 5, 3, 3}), {}),
      kr::Error);
}

TEST(UNet, ForwardKeepsTheImageShapeAt28And32Pixels) {
  for (std::int64_t size : {28, 32}) {
    auto spec = spec_for("ddpm");
    spec.channels = size == 32 ? 3 : 1;
    spec.height = spec.width = size;
    kr::gen::UNet unet(spec);
    auto x = torch::randn({2, spec.channels, size, size});
    auto out = unet->forward(x, torch::tensor({3, 900}), torch::tensor({1, 10}));
    EXPECT_EQ(out.sizes(), x.sizes());
  }
}

TEST(Ddpm, TrainingStepsReduceTheLossOnAFixedBatch) {
  torch::manual_seed(0);
  auto spec = spec_for("ddpm", 16);
  kr::gen::UNet unet(spec);
  auto alphas = kr::gen::alphas_cumprod("linear", 1000);
  auto x0 = torch::rand({8, 1, 28, 28}) * 2 - 1;
  auto labels = torch::arange(8, torch::kInt64) % 10;
  std::vector<std::int64_t> indices = {0, 1, 2, 3, 4, 5, 6, 7};
  torch::optim::Adam optimizer(unet->parameters(), torch::optim::AdamOptions(1e-3));
  auto loss_at = [&] {
    torch::NoGradGuard no_grad;
    return kr::gen::ddpm_loss(*unet, alphas, x0, labels, indices, 7, 0, 0.1, 10).item<double>();
  };
  const double before = loss_at();
  for (int step = 0; step < 15; ++step) {
    optimizer.zero_grad();
    kr::gen::ddpm_loss(*unet, alphas, x0, labels, indices, 7, 0, 0.1, 10).backward();
    optimizer.step();
  }
  EXPECT_LT(loss_at(), 0.8 * before);
}

TEST(Ddpm, SchedulesAreDecreasingAndDdimStepsSpanTheRange) {
  for (const std::string schedule : {"linear", "cosine"}) {
    auto bar = kr::gen::alphas_cumprod(schedule, 1000);
    EXPECT_EQ(bar.size(0), 1000);
    EXPECT_TRUE((bar.slice(0, 1) < bar.slice(0, 0, 999)).all().item<bool>()) << schedule;
    EXPECT_GT(bar[0].item<double>(), 0.99);
    EXPECT_LT(bar[999].item<double>(), 0.01);
  }
  auto steps = kr::gen::ddim_timesteps(1000, 20);
  ASSERT_EQ(steps.size(), 20u);
  EXPECT_EQ(steps.front(), 999);
  EXPECT_EQ(steps.back(), 0);
  EXPECT_THROW(kr::gen::alphas_cumprod("square", 10), kr::UsageError);
}

TEST(Sampling, DdimAndGanWithTheSameSeedsGiveIdenticalImages) {
  for (const std::string model : {"ddpm", "gan"}) {
    torch::manual_seed(3);
    auto spec = spec_for(model);
    auto network = kr::gen::make_generator_model(spec);
    auto sampler = kr::gen::make_sampler(spec, network);
    auto a = kr::gen::sample_range(*sampler, 0, 12, 42, 4);
    auto b = kr::gen::sample_range(*sampler, 0, 12, 42, 4);
    auto c = kr::gen::sample_range(*sampler, 0, 12, 43, 4);
    EXPECT_TRUE(torch::equal(a, b)) << model;
    EXPECT_FALSE(torch::equal(a, c)) << model;
    // A window that starts on a sample-batch boundary reproduces the same images.
    EXPECT_TRUE(torch::equal(kr::gen::sample_range(*sampler, 4, 8, 42, 4), a.narrow(0, 4, 8)))
        << model;
    EXPECT_THROW(kr::gen::sample_range(*sampler, 2, 4, 42, 4), kr::Error);
  }
}

TEST(Sampling, KeyedNoiseDependsOnTheIndexOnly) {
  auto a = kr::gen::keyed_normal({5, 9}, 16, 1, kr::Purpose::gan_latent, 0);
  auto b = kr::gen::keyed_normal({9}, 16, 1, kr::Purpose::gan_latent, 0);
  EXPECT_TRUE(torch::equal(a[1], b[0]));
  EXPECT_NEAR(kr::gen::keyed_normal({0}, 20000, 2, kr::Purpose::ddim_noise, 0).std().item<double>(),
              1.0, 0.03);
}

TEST(Gan, GeneratorIsBatchIndependentAndDiscriminatorScoresEachImage) {
  torch::manual_seed(0);
  auto spec = spec_for("gan");
  for (std::int64_t size : {28, 32}) {
    spec.channels = size == 32 ? 3 : 1;
    spec.classes = size == 32 ? 100 : 10;
    spec.height = spec.width = size;
    kr::gen::GanGenerator generator(spec);
    kr::gen::GanDiscriminator discriminator(spec);
    generator->eval();
    auto z = torch::randn({6, spec.latent});
    auto labels = torch::tensor({0, 1, 2, 3, 4, 5});
    auto images = generator->forward(z, labels);
    ASSERT_EQ(images.sizes(), (std::vector<std::int64_t>{6, spec.channels, size, size}));
    EXPECT_LE(images.abs().max().item<double>(), 1.0);
    auto alone = generator->forward(z.narrow(0, 2, 1), labels.narrow(0, 2, 1));
    EXPECT_TRUE(torch::allclose(alone[0], images[2], 1e-5, 1e-6));
    EXPECT_EQ(discriminator->forward(images, labels).sizes(), (std::vector<std::int64_t>{6}));
  }
}

TEST(Gan, SpectralNormalisationBoundsTheLargestSingularValue) {
  torch::manual_seed(0);
  kr::gen::SpectralConv layer(16, 8, 0, 1);
  layer->train();
  for (int i = 0; i < 30; ++i) layer->normalized_weight();
  auto sigma = std::get<1>(torch::linalg::svd(layer->normalized_weight().detach(), false, {}))[0];
  EXPECT_NEAR(sigma.item<double>(), 1.0, 0.02);
}

// Note [Spectral per-sample gradients]: the discriminator's per-sample gradients of its
// stored weights (through W / sigma) equal micro-batches of one, in float64.
TEST(Gan, DiscriminatorPerSampleGradientsEqualMicroBatchesOfOne) {
  torch::manual_seed(2);
  auto spec = spec_for("gan");
  spec.channels = 1;
  spec.classes = 5;
  spec.height = spec.width = 8;
  kr::gen::GanDiscriminator discriminator(spec);
  discriminator->to(torch::kFloat64);
  discriminator->train();
  for (int i = 0; i < 3; ++i)  // u away from its random start: sigma's gradient matters
    discriminator->forward(torch::randn({2, 1, 8, 8}, torch::kFloat64), torch::tensor({0, 1}));
  discriminator->eval();  // u fixed, as in a DP step's real term
  const auto x = torch::randn({5, 1, 8, 8}, torch::kFloat64);
  const auto labels = torch::tensor({0, 4, 2, 2, 1}, torch::kInt64);
  const auto loss = [&](const at::Tensor& images, const at::Tensor& y) {
    return torch::relu(1.0 - discriminator->forward(images, y)).sum() +
           discriminator->forward(images, y).pow(2).sum();
  };
  kr::nn::grad_sample::Recorder recorder;
  {
    kr::nn::grad_sample::RecordScope scope(recorder);
    loss(x, labels).backward();
  }
  const auto per_sample = discriminator->per_sample(recorder);
  const auto parameters = discriminator->parameters();
  ASSERT_EQ(per_sample.size(), parameters.size());
  for (std::size_t k = 0; k < parameters.size(); ++k) {
    ASSERT_TRUE(per_sample[k].defined()) << k;
    // The summed per-sample gradients are the batch's own gradient.
    EXPECT_TRUE(torch::allclose(per_sample[k].sum(0), parameters[k].grad(), 1e-9, 1e-11)) << k;
  }
  for (std::int64_t b = 0; b < 5; ++b) {
    for (auto& p : parameters) p.mutable_grad().zero_();
    loss(x.narrow(0, b, 1), labels.narrow(0, b, 1)).backward();
    for (std::size_t k = 0; k < parameters.size(); ++k)
      EXPECT_TRUE(torch::allclose(per_sample[k][b], parameters[k].grad(), 1e-9, 1e-11))
          << "sample " << b << ", parameter " << k << " of shape " << parameters[k].sizes();
  }
  // A recorder that does not hold the last recorded forward is refused.
  kr::nn::grad_sample::Recorder again;
  {
    kr::nn::grad_sample::RecordScope scope(again);
    loss(x, labels).backward();
  }
  EXPECT_THROW(discriminator->per_sample(recorder), std::logic_error);
}

TEST(GeneratorFiles, GanAndDdpmRoundTripThroughTheirFiles) {
  TempDir dir;
  for (const std::string model : {"gan", "ddpm"}) {
    torch::manual_seed(11);
    auto spec = spec_for(model);
    auto network = kr::gen::make_generator_model(spec);
    kr::nn::save_module(*network, dir / "ema.pt");
    std::ofstream(dir / "model.json") << spec.to_json().dump();
    auto loaded = kr::gen::load_generator(dir.path());
    EXPECT_EQ(kr::nn::state_sha256(*network), kr::nn::state_sha256(*loaded.model)) << model;
    auto original = kr::gen::make_sampler(spec, network);
    EXPECT_TRUE(torch::equal(kr::gen::sample_range(*original, 0, 4, 5, 4),
                             kr::gen::sample_range(*loaded.sampler, 0, 4, 5, 4)))
        << model;
  }
  std::ofstream(dir / "ema.pt") << "not a model";
  EXPECT_THROW(kr::gen::load_generator(dir.path()), kr::Error);
}

TEST(Png, GridWritesAFileThatDecodesToTheSamePixels) {
  TempDir dir;
  for (std::int64_t channels : {1, 3}) {
    auto images = torch::randint(0, 256, {6, channels, 5, 7}, torch::kUInt8);
    auto grid = kr::io::make_grid(images, 3, 2);
    EXPECT_EQ(grid.sizes(), (std::vector<std::int64_t>{channels, 2 * 7 + 2, 3 * 9 + 2}));
    kr::io::write_png(dir / "grid.png", grid);
    EXPECT_TRUE(torch::equal(kr::io::read_png(dir / "grid.png"), grid));
    EXPECT_TRUE(torch::equal(grid.narrow(1, 2, 5).narrow(2, 2 + 9, 7), images[1]));
  }
  write_bytes(dir / "bad.png", "\x89PNG\r\n\x1a\nnot really");
  EXPECT_THROW(kr::io::read_png(dir / "bad.png"), kr::Error);
}

TEST(Quality, FrechetDistanceOfKnownGaussians) {
  auto eye = torch::eye(3, torch::kFloat64);
  auto zero = torch::zeros({3}, torch::kFloat64);
  EXPECT_NEAR(kr::gen::frechet_distance(zero, eye, zero, eye), 0.0, 1e-9);
  auto shifted = torch::tensor({1.0, 2.0, 2.0}, torch::kFloat64);
  EXPECT_NEAR(kr::gen::frechet_distance(zero, eye, shifted, eye), 9.0, 1e-9);
  // Scaled covariance: tr(I + 4I - 2 * 2I) = 3.
  EXPECT_NEAR(kr::gen::frechet_distance(zero, eye, zero, 4 * eye), 3.0, 1e-9);
}

TEST(Quality, MomentsFromBatchesEqualTheWholeSet) {
  torch::manual_seed(0);
  auto features = torch::randn({100, 4}, torch::kFloat64);
  kr::gen::FeatureMoments moments;
  moments.add(features.narrow(0, 0, 30));
  moments.add(features.narrow(0, 30, 70));
  EXPECT_TRUE(torch::allclose(moments.mean(), features.mean(0)));
  EXPECT_TRUE(torch::allclose(moments.covariance(), torch::cov(features.t())));
}

// Kynkaanniemi et al. 2019: the same set covers itself; a collapsed generator keeps
// its precision and loses its recall; samples off the real manifold have neither.
TEST(Quality, PrecisionAndRecallOfKnownSets) {
  torch::manual_seed(4);
  const auto real = torch::randn({200, 5}, torch::kFloat64);
  auto same = kr::gen::manifold_precision_recall(real, real.clone());
  EXPECT_DOUBLE_EQ(same.precision, 1.0);
  EXPECT_DOUBLE_EQ(same.recall, 1.0);
  // Every sample is real point 7: inside the real manifold, but the fake manifold has
  // radius 0, so it covers real point 7 alone.
  const auto collapsed = real.narrow(0, 7, 1).expand({200, 5}).contiguous();
  auto mode = kr::gen::manifold_precision_recall(real, collapsed);
  EXPECT_DOUBLE_EQ(mode.precision, 1.0);
  EXPECT_DOUBLE_EQ(mode.recall, 1.0 / 200);
  auto far = kr::gen::manifold_precision_recall(real, torch::randn({200, 5}, torch::kFloat64) + 50);
  EXPECT_DOUBLE_EQ(far.precision, 0.0);
  EXPECT_DOUBLE_EQ(far.recall, 0.0);
  // Half the samples real-like, half far: precision about a half, recall high.
  auto mixed = kr::gen::manifold_precision_recall(
      real, torch::cat({torch::randn({100, 5}, torch::kFloat64),
                        torch::randn({100, 5}, torch::kFloat64) + 50}));
  EXPECT_NEAR(mixed.precision, 0.5, 0.08);
  EXPECT_GT(mixed.recall, 0.6);
  EXPECT_THROW(kr::gen::manifold_precision_recall(real, real.narrow(0, 0, 3)), kr::Error);
  EXPECT_THROW(kr::gen::manifold_precision_recall(real, torch::zeros({10, 4}, torch::kFloat64)),
               kr::Error);
}

TEST(ConfidenceFilter, AcceptsTheTeachersConfidentAgreementsOnly) {
  kr::io::Shard candidates;
  candidates.images = torch::arange(4, torch::kUInt8).view({4, 1, 1, 1});
  candidates.labels = torch::tensor({0, 1, 2, 1}, torch::kInt64);
  // Row 0: argmax 0 with p ~ 0.84 (kept); row 1: argmax 0 != 1 (dropped);
  // row 2: argmax 2 with p = 1/3 (dropped at tau 0.5); row 3: argmax 1, p ~ 0.84 (kept).
  candidates.teacher_logits = torch::tensor(
      {{2.0f, 0.0f, 0.0f}, {2.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f}, {0.0f, 2.0f, 0.0f}});
  auto kept = kr::gen::accept_confident(candidates, 100, 0.5);
  EXPECT_TRUE(kept.source_index.equal(torch::tensor({100, 103}, torch::kInt64)));
  EXPECT_TRUE(kept.labels.equal(torch::tensor({0, 1}, torch::kInt64)));
  EXPECT_TRUE(kept.images.view(-1).equal(torch::tensor({0, 3}, torch::kUInt8)));
  EXPECT_EQ(kr::gen::accept_confident(candidates, 0, 0.9).labels.size(0), 0);
  EXPECT_EQ(kr::gen::candidates_of_class(0, 10, 3, 10), 1);
  EXPECT_EQ(kr::gen::candidates_of_class(5, 20, 3, 10), 2);  // 13, 23
  EXPECT_EQ(kr::gen::candidates_of_class(4, 2, 3, 10), 0);
}
