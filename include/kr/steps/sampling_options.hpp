// Sampling settings that `kr generate` and `kr sample` may change from the ones a
// generator was trained with: --steps and --guidance (DDPM), --z-scale (GAN).
#pragma once

#include "kr/gen/spec.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

struct SamplingOptions {
  std::int64_t steps = 0;
  double guidance = -1.0;
  double z_scale = -1.0;
};

void add_sampling_options(OptionTable& table, SamplingOptions& options);

// `trained` with the settings given on the command line applied.
gen::GeneratorSpec with_sampling_options(const SamplingOptions& options,
                                         gen::GeneratorSpec trained);

}  // namespace kr::steps
