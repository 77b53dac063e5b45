#include "kr/steps/sampling_options.hpp"

namespace kr::steps {

void add_sampling_options(po::options_description& options) {
  // clang-format off
  options.add_options()
      ("steps", po::value<std::int64_t>()->default_value(0), "ddpm: DDIM steps (0: as trained)")
      ("guidance", po::value<double>()->default_value(-1.0), "ddpm: guidance scale (-1: as trained)")
      ("z-scale", po::value<double>()->default_value(-1.0), "gan: latent scale (-1: as trained)");
  // clang-format on
}

gen::GeneratorSpec with_sampling_options(const Context& context, gen::GeneratorSpec trained) {
  if (context.get<std::int64_t>("steps") > 0)
    trained.sample_steps = context.get<std::int64_t>("steps");
  if (context.get<double>("guidance") >= 0) trained.guidance = context.get<double>("guidance");
  if (context.get<double>("z-scale") > 0) trained.z_scale = context.get<double>("z-scale");
  return trained;
}

}  // namespace kr::steps
