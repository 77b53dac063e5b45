// One data-parallel optimisation step of a generator, shared by
// `kr train-generator` and `kr bench`: the GAN's discriminator and generator
// updates (hinge loss) or the DDPM's noise-prediction update, then the EMA of
// the sampling weights.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

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
};

}  // namespace kr::gen
