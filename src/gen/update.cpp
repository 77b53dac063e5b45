#include "kr/gen/update.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kr/comm/data_parallel.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/keyed_rng.hpp"
#include "kr/gen/gan.hpp"
#include "kr/gen/sampler.hpp"
#include "kr/gen/unet.hpp"
#include "kr/nn/grad_sample.hpp"
#include "kr/nn/serialize.hpp"

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
    : spec_(spec), hyper_(hyper), comm_(&comm) {
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
  if (hyper.dp) {
    if (spec.model != "gan")
      throw UsageError(
          "DP-SGD is implemented for the GAN's discriminator only: --dp-epsilon needs --model gan");
    if (hyper.dp_fake_batch < comm.size() || hyper.dp_fake_batch % comm.size() != 0)
      throw UsageError("DP GAN: the fake batch (" + std::to_string(hyper.dp_fake_batch) +
                       ") must be a positive multiple of the " + std::to_string(comm.size()) +
                       " ranks");
    if (hyper.dp_physical_batch < 1) throw UsageError("--dp-physical-batch must be at least 1");
    dp_ = std::make_unique<comm::DpGradient>(discriminator_->parameters(), *hyper.dp);
  }
  // The EMA starts from rank 0's broadcast weights.
  ema_update(*ema_, *model_, 0.0);
  sampler_ = make_sampler(spec, ema_);
}

GeneratorUpdate::~GeneratorUpdate() = default;

void GeneratorUpdate::initialise_from(const std::string& ema_path,
                                      const std::string& discriminator_path) {
  nn::load_module(*model_, ema_path);
  ema_update(*ema_, *model_, 0.0);
  if (discriminator_) {
    if (!path_exists(discriminator_path))
      throw Error(discriminator_path + ": missing (a GAN run of this kr saves it beside ema.pt)");
    nn::load_module(*discriminator_, discriminator_path);
  }
}

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
    losses.g_loss = generator_step(labels, indices, global_step);
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

double GeneratorUpdate::generator_step(const at::Tensor& labels,
                                       const std::vector<std::int64_t>& indices,
                                       std::uint64_t global_step) {
  auto& generator = static_cast<GanGeneratorImpl&>(*model_);
  auto& discriminator = static_cast<GanDiscriminatorImpl&>(*discriminator_);
  const auto d_steps = static_cast<std::uint64_t>(hyper_.d_steps);
  optimizer_->zero_grad();
  const auto z = keyed_normal(indices, spec_.latent, hyper_.seed, Purpose::gan_latent,
                              global_step * (d_steps + 1) + d_steps);
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
  return g_loss.item<double>();
}

GeneratorLosses GeneratorUpdate::dp_step(const RealRows& rows, std::uint64_t global_step) {
  if (!dp_) throw std::logic_error("GeneratorUpdate::dp_step without DP settings");
  model_->train();
  auto& generator = static_cast<GanGeneratorImpl&>(*model_);
  auto& discriminator = static_cast<GanDiscriminatorImpl&>(*discriminator_);
  const auto& settings = dp_->settings();
  const auto d_steps = static_cast<std::uint64_t>(hyper_.d_steps);
  // The public fakes: positions of a batch of dp_fake_batch dealt to ranks, class p mod K.
  std::vector<std::int64_t> positions(static_cast<std::size_t>(hyper_.dp_fake_batch));
  for (std::size_t p = 0; p < positions.size(); ++p) positions[p] = static_cast<std::int64_t>(p);
  const auto fake_indices = comm::rank_share(positions, comm_->rank(), comm_->size());
  auto fake_labels = torch::tensor(fake_indices, torch::kInt64).remainder(spec_.classes);
  GeneratorLosses losses;
  discriminator.train();
  for (auto& p : discriminator.parameters()) p.set_requires_grad(true);
  dp_samples_ = dp_clipped_ = 0;
  for (std::uint64_t k = 0; k < d_steps; ++k) {
    const std::uint64_t dp_step = global_step * d_steps + k;
    const auto share = comm::rank_share(
        comm::poisson_batch(settings.records, settings.sample_rate, settings.seed, dp_step),
        comm_->rank(), comm_->size());
    double real_sum = 0.0;
    for (std::size_t begin = 0; begin < share.size();
         begin += static_cast<std::size_t>(hyper_.dp_physical_batch)) {
      const auto end =
          std::min(share.size(), begin + static_cast<std::size_t>(hyper_.dp_physical_batch));
      const std::vector<std::int64_t> part(share.begin() + static_cast<std::ptrdiff_t>(begin),
                                           share.begin() + static_cast<std::ptrdiff_t>(end));
      const auto [images, labels] = rows(part);
      nn::grad_sample::Recorder recorder;
      // In eval mode the power iteration is not stored: u moves once per d-step (in the
      // fake term's forward), not once per physical batch, whose count depends on the
      // private batch's size.
      discriminator.eval();
      {
        nn::grad_sample::RecordScope scope(recorder);
        auto real_loss = torch::relu(1.0 - discriminator.forward(images, labels)).sum();
        real_loss.backward();
        real_sum += real_loss.item<double>();
      }
      dp_->accumulate(discriminator.per_sample(recorder));
    }
    dp_samples_ += dp_->samples();
    dp_clipped_ += dp_->clipped();
    discriminator.train();
    d_optimizer_->zero_grad();
    at::Tensor fake;
    {
      torch::NoGradGuard no_grad;
      fake = generator.forward(keyed_normal(fake_indices, spec_.latent, hyper_.seed,
                                            Purpose::gan_latent, global_step * (d_steps + 1) + k),
                               fake_labels);
    }
    auto fake_loss = torch::relu(1.0 + discriminator.forward(fake, fake_labels)).mean();
    fake_loss.backward();
    d_parallel_->synchronize_gradients();  // the fake term's mean over ranks
    dp_->finish(*comm_, dp_step, /*add=*/true);
    d_optimizer_->step();
    // The loss as the non-private step reports it: the real term over the expected batch.
    auto terms = torch::tensor({real_sum, fake_loss.item<double>()}, torch::kFloat64);
    comm_->allreduce(terms, comm::ReduceOp::sum);
    const double expected = settings.sample_rate * static_cast<double>(settings.records);
    losses.loss += (terms[0].item<double>() / expected + terms[1].item<double>() / comm_->size()) /
                   static_cast<double>(d_steps);
  }
  for (auto& p : discriminator.parameters()) p.set_requires_grad(false);
  losses.g_loss = generator_step(fake_labels, fake_indices, global_step);
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
