// Sampling settings that `kr generate` and `kr sample` may change from the ones a
// generator was trained with: --steps and --guidance (DDPM), --z-scale (GAN).
#pragma once

#include "kr/gen/spec.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

void add_sampling_options(po::options_description& options);

// `trained` with the settings given on the command line applied.
gen::GeneratorSpec with_sampling_options(const Context& context, gen::GeneratorSpec trained);

}  // namespace kr::steps
