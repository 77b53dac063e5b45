#include "kr/steps/sampling_options.hpp"

namespace kr::steps {

void add_sampling_options(OptionTable& table, SamplingOptions& options) {
  // clang-format off
  table
      ("steps", &options.steps, 0, "ddpm: DDIM steps (0: as trained)").at_least(0)
      ("guidance", &options.guidance, -1.0, "ddpm: guidance scale (-1: as trained)").at_least(-1)
      ("z-scale", &options.z_scale, -1.0, "gan: latent scale (-1: as trained)").at_least(-1);
  // clang-format on
}

gen::GeneratorSpec with_sampling_options(const SamplingOptions& options,
                                         gen::GeneratorSpec trained) {
  if (options.steps > 0) trained.sample_steps = options.steps;
  if (options.guidance >= 0) trained.guidance = options.guidance;
  if (options.z_scale > 0) trained.z_scale = options.z_scale;
  return trained;
}

}  // namespace kr::steps
