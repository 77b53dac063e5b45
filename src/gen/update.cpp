#include "kr/gen/update.hpp"

#include <torch/torch.h>

#include <algorithm>

#include "kr/comm/data_parallel.hpp"
#include "kr/core/error.hpp"
#include "kr/core/keyed_rng.hpp"
#include "kr/gen/gan.hpp"
#include "kr/gen/sampler.hpp"
#include "kr/gen/unet.hpp"

namespace kr::gen {

namespace {

void ema_update(torch::nn::Module& ema, torch::nn::Module& model, double decay) {
  torch::NoGradGuard no_grad;
  auto target = ema.parameters();
  auto source = model.parameters();
  for (std::size_t i = 0; i < target.size(); ++i)
    target[i].mul_(decay).add_(source[i], 1.0 - decay);
  auto target_buffers = ema.buffers();
  auto source_buffers = model.buffers();
  for (std::size_t i = 0; i < target_buffers.size(); ++i)
    target_buffers[i].copy_(source_buffers[i]);
}

}  // namespace

GeneratorUpdate::GeneratorUpdate(comm::Communicator& comm, const GeneratorSpec& spec,
                                 const GeneratorHyper& hyper)
    : spec_(spec), hyper_(hyper) {
  if (spec.model == "gan" && hyper.d_steps < 1) throw UsageError("--d-steps must be at least 1");
  torch::manual_seed(hyper.seed);
  model_ = make_generator_model(spec);
  ema_ = make_generator_model(spec);
  for (auto& p : ema_->parameters()) p.set_requires_grad(false);
  const double beta1 = hyper.beta1 >= 0 ? hyper.beta1 : (spec.model == "gan" ? 0.5 : 0.9);
  const auto adam = torch::optim::AdamOptions(hyper.lr).betas({beta1, hyper.beta2});
  optimizer_ = std::make_unique<torch::optim::Adam>(model_->parameters(), adam);
  parallel_ = std::make_unique<comm::DataParallel>(comm, *model_, hyper.bucket_mb);
  if (spec.model == "gan") {
    discriminator_ = GanDiscriminator(spec).ptr();
    d_optimizer_ = std::make_unique<torch::optim::Adam>(discriminator_->parameters(), adam);
    d_parallel_ = std::make_unique<comm::DataParallel>(comm, *discriminator_, hyper.bucket_mb);
  } else {
    alphas_bar_ = alphas_cumprod(spec.schedule, spec.timesteps);
  }
  // The EMA starts from rank 0's broadcast weights.
  ema_update(*ema_, *model_, 0.0);
  sampler_ = make_sampler(spec, ema_);
}

GeneratorUpdate::~GeneratorUpdate() = default;

torch::nn::Module* GeneratorUpdate::discriminator() {
  return discriminator_.get();
}

GeneratorLosses GeneratorUpdate::step(const at::Tensor& real, const at::Tensor& labels,
                                      const std::vector<std::int64_t>& indices,
                                      std::uint64_t global_step) {
  model_->train();
  GeneratorLosses losses;
  if (spec_.model == "gan") {
    auto& generator = static_cast<GanGeneratorImpl&>(*model_);
    auto& discriminator = static_cast<GanDiscriminatorImpl&>(*discriminator_);
    const auto d_steps = static_cast<std::uint64_t>(hyper_.d_steps);
    // Latent draw k of step s is keyed by s * (d_steps + 1) + k: the last one feeds G.
    auto latents = [&](std::uint64_t k) {
      return keyed_normal(indices, spec_.latent, hyper_.seed, Purpose::gan_latent,
                          global_step * (d_steps + 1) + k);
    };
    discriminator.train();
    for (auto& p : discriminator.parameters()) p.set_requires_grad(true);
    for (std::uint64_t k = 0; k < d_steps; ++k) {
      at::Tensor fake;
      {
        torch::NoGradGuard no_grad;
        fake = generator.forward(latents(k), labels);
      }
      d_optimizer_->zero_grad();
      auto d_loss = torch::relu(1.0 - discriminator.forward(real, labels)).mean() +
                    torch::relu(1.0 + discriminator.forward(fake, labels)).mean();
      d_loss.backward();
      d_parallel_->synchronize_gradients();
      d_optimizer_->step();
      losses.loss += d_loss.item<double>() / static_cast<double>(d_steps);
    }
    for (auto& p : discriminator.parameters()) p.set_requires_grad(false);
    optimizer_->zero_grad();
    const auto z = latents(d_steps);
    const auto fake = generator.forward(z, labels);
    auto g_loss = -discriminator.forward(fake, labels).mean();
    if (hyper_.mode_seeking > 0) {
      // Note [Mode seeking]: MSGAN (Mao et al. 2019). A second latent per sample, for
      // the same label: the generator is penalised when two latents give images closer
      // than the latents are, the within-class collapse a conditional GAN falls into.
      // Per pair, 1 / (mean |x1 - x2| / mean |z1 - z2| + eps), averaged over the batch:
      // a mean of per-sample terms, so 2 ranks at half the batch still step as one rank
      // at the whole batch (MSGAN's own form divides batch means, which does not).
      const auto z_pair =
          keyed_normal(indices, spec_.latent, hyper_.seed, Purpose::gan_latent_pair, global_step);
      const auto pair = generator.forward(z_pair, labels);
      const auto ratio =
          (fake - pair).abs().mean({1, 2, 3}) / (z - z_pair).abs().mean(1).clamp_min(1e-8);
      const auto spread = (1.0 / (ratio + 1e-5)).mean();
      g_loss = g_loss + hyper_.mode_seeking * spread;
    }
    g_loss.backward();
    parallel_->synchronize_gradients();
    optimizer_->step();
    losses.g_loss = g_loss.item<double>();
  } else {
    optimizer_->zero_grad();
    auto loss = ddpm_loss(*model_, alphas_bar_, real, labels, indices, hyper_.seed, global_step,
                          hyper_.cfg_drop, spec_.classes);
    loss.backward();
    parallel_->synchronize_gradients();
    optimizer_->step();
    losses.loss = loss.item<double>();
  }
  const double s = static_cast<double>(global_step);
  ema_update(*ema_, *model_, std::min(hyper_.ema, (1.0 + s) / (10.0 + s)));
  return losses;
}

nn::CheckpointItems GeneratorUpdate::checkpoint_items() {
  nn::CheckpointItems items;
  items.modules = {{"model", model_.get()}, {"ema", ema_.get()}};
  items.optimizers = {{"optimizer", optimizer_.get()}};
  if (discriminator_) {
    items.modules.push_back({"discriminator", discriminator_.get()});
    items.optimizers.push_back({"d_optimizer", d_optimizer_.get()});
  }
  return items;
}

}  // namespace kr::gen
