// One data-parallel optimisation step of a generator, shared by
// `kr train-generator` and `kr bench`: the GAN's discriminator and generator
// updates (hinge loss) or the DDPM's noise-prediction update, then the EMA of
// the sampling weights.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kr/comm/dp_sgd.hpp"
#include "kr/gen/spec.hpp"
#include "kr/nn/serialize.hpp"

namespace torch::nn {
class Module;
}
namespace torch::optim {
class Adam;
}
namespace kr::comm {
class Communicator;
class DataParallel;
}  // namespace kr::comm

namespace kr::gen {

class Sampler;
class GanDiscriminatorImpl;

struct GeneratorHyper {
  double lr = 2e-4;
  double beta1 = -1.0;  // < 0: 0.5 for the GAN, 0.9 for the DDPM
  double beta2 = 0.999;
  double ema = 0.999;  // decay min(ema, (1+s)/(10+s)) at step s
  double cfg_drop = 0.1;
  std::int64_t d_steps = 2;
  double mode_seeking = 0.0;  // GAN: weight of the mode-seeking term (Note [Mode seeking])
  double bucket_mb = 25.0;
  std::uint64_t seed = 0;
  // DP-SGD on the discriminator's real-data term (Note [DP GAN]); unset: not private.
  std::optional<comm::DpSettings> dp;
  std::int64_t dp_fake_batch = 0;       // fakes per step over every rank (the expected batch)
  std::int64_t dp_physical_batch = 64;  // per-sample gradients held at once, per rank
};

struct GeneratorLosses {
  double loss = 0.0;    // GAN: discriminator hinge loss (mean over d-steps); DDPM: noise MSE
  double g_loss = 0.0;  // GAN: generator loss; DDPM: 0
};

class GeneratorUpdate {
 public:
  // Seeds torch with hyper.seed, builds the model, its EMA copy, the optimisers
  // and (GAN) the discriminator; parameters are broadcast from rank 0.
  GeneratorUpdate(comm::Communicator& comm, const GeneratorSpec& spec, const GeneratorHyper& hyper);
  ~GeneratorUpdate();

  // real: float images in [-1, 1] of this rank's part of the global batch;
  // indices: their global sample indices (they key the latents, timesteps and
  // noise, so the result does not depend on how the batch is split over ranks).
  GeneratorLosses step(const at::Tensor& real, const at::Tensor& labels,
                       const std::vector<std::int64_t>& indices, std::uint64_t global_step);

  // Note [DP GAN]
  // With hyper.dp set, a GAN step is DP-SGD on the discriminator (Xie et al. 2018's
  // DP-GAN; as GS-WGAN, only what reads private data is privatised). Each of the d-steps
  // is one step of the accountant: a fresh Poisson batch of the real set at rate q
  // (comm::poisson_batch keyed by seed and DP step global_step * d_steps + k), the hinge
  // term sum_b relu(1 - D(x_b, y_b)) recorded per sample in physical batches, each
  // sample's gradient clipped to C, summed over ranks with the noise added once, over
  // q N. The fake term, mean relu(1 + D(G(z), y)), reads no private record: its ordinary
  // gradient (averaged over ranks) is added. The fakes, and the generator's own step, use
  // hyper.dp_fake_batch public labels (position p of the batch has class p mod K) and
  // keyed latents: the labels of the private records never reach the generator, whose
  // update is post-processing of the private discriminator. Spectral normalisation's
  // power iteration reads only W (Note [Spectral per-sample gradients]).
  // `rows` gives the images in [-1, 1] and labels of global train indices.
  using RealRows =
      std::function<std::pair<at::Tensor, at::Tensor>(const std::vector<std::int64_t>&)>;
  GeneratorLosses dp_step(const RealRows& rows, std::uint64_t global_step);
  // The DP-SGD state (null when not private): counts of the last step's samples.
  const comm::DpGradient* dp() const { return dp_.get(); }
  std::int64_t dp_last_samples() const { return dp_samples_; }
  std::int64_t dp_last_clipped() const { return dp_clipped_; }

  // Starts from a finished run's weights: its EMA generator as both the trained and the
  // EMA generator, and (GAN) its discriminator; optimisers start afresh. Errors name the
  // file.
  void initialise_from(const std::string& ema_path, const std::string& discriminator_path);

  torch::nn::Module& model() { return *model_; }
  torch::nn::Module& ema() { return *ema_; }
  torch::nn::Module* discriminator();       // null for the DDPM
  Sampler& sampler() { return *sampler_; }  // over the EMA weights
  nn::CheckpointItems checkpoint_items();

 private:
  GeneratorSpec spec_;
  GeneratorHyper hyper_;
  std::shared_ptr<torch::nn::Module> model_, ema_, discriminator_;
  std::unique_ptr<torch::optim::Adam> optimizer_, d_optimizer_;
  std::unique_ptr<comm::DataParallel> parallel_, d_parallel_;
  at::Tensor alphas_bar_;
  std::unique_ptr<Sampler> sampler_;
  comm::Communicator* comm_;
  std::unique_ptr<comm::DpGradient> dp_;
  std::int64_t dp_samples_ = 0, dp_clipped_ = 0;

  double generator_step(const at::Tensor& labels, const std::vector<std::int64_t>& indices,
                        std::uint64_t global_step);
};

}  // namespace kr::gen
