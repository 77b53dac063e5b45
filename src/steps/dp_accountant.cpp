// `kr dp-accountant`: the privacy spent by DP-SGD (Note [RDP accountant]), or the noise
// multiplier a target epsilon needs; prints one JSON object. The training steps use the
// same privacy::RdpAccountant.
#include <cmath>
#include <iostream>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/core/json.hpp"
#include "kr/privacy/accountant.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

struct AccountantOptions {
  double noise_multiplier = 0;
  double sample_rate = 0;
  std::int64_t steps = 0;
  double epochs = 0;
  double delta = 0;
  double target_epsilon = 0;
  double tolerance = 0.01;
};

void add_accountant_options(OptionTable& table, AccountantOptions& options) {
  // clang-format off
  table
      ("noise-multiplier", &options.noise_multiplier, 0.0, "sigma: the noise's standard deviation over the clip norm (or --target-epsilon)").at_least(0)
      ("sample-rate", &options.sample_rate, 0.0, "q: the Poisson sampling rate of a logical batch (expected batch / records)").range(0, 1)
      ("steps", &options.steps, 0, "steps of DP-SGD (or --epochs)").at_least(0)
      ("epochs", &options.epochs, 0.0, "epochs in place of --steps: steps = floor(epochs / q), as Opacus counts them").at_least(0)
      ("delta", &options.delta, 0.0, "delta of (epsilon, delta), in (0, 1)").range(0, 1)
      ("target-epsilon", &options.target_epsilon, 0.0, "print the noise multiplier whose epsilon does not exceed this one (Opacus' search) in place of an epsilon").at_least(0)
      ("epsilon-tolerance", &options.tolerance, 0.01, "--target-epsilon: how far under the target the search may stop").at_least(0);
  // clang-format on
}

int run_accountant(Context& context, const AccountantOptions& options) {
  if (!(options.delta > 0.0 && options.delta < 1.0))
    throw UsageError("--delta must be given, in (0, 1)");
  if (!(options.sample_rate > 0.0)) throw UsageError("--sample-rate must be given, in (0, 1]");
  if ((options.steps > 0) == (options.epochs > 0))
    throw UsageError("give one of --steps and --epochs");
  const std::int64_t steps =
      options.steps > 0
          ? options.steps
          : static_cast<std::int64_t>(std::floor(options.epochs / options.sample_rate));
  if ((options.noise_multiplier > 0.0) == (options.target_epsilon > 0.0))
    throw UsageError("give one of --noise-multiplier and --target-epsilon");
  double sigma = options.noise_multiplier;
  if (options.target_epsilon > 0.0)
    sigma = privacy::noise_multiplier_for(options.target_epsilon, options.sample_rate, steps,
                                          options.delta, options.tolerance);
  privacy::RdpAccountant accountant;
  accountant.add(sigma, options.sample_rate, steps);
  const auto spent = accountant.spent(options.delta);
  Json out{{"epsilon", spent.epsilon},
           {"delta", options.delta},
           {"noise_multiplier", sigma},
           {"sample_rate", options.sample_rate},
           {"steps", steps},
           {"order", spent.order},
           {"accountant",
            "rdp (Note [RDP accountant]: Mironov et al. 2019, Balle et al. 2020 "
            "conversion, Opacus' orders)"}};
  if (options.target_epsilon > 0.0) out["target_epsilon"] = options.target_epsilon;
  if (context.comm.rank() == 0) std::cout << out.dump() << "\n";
  return exit_code::ok;
}

}  // namespace

Step dp_accountant_step() {
  return typed_step<AccountantOptions>(
      "dp-accountant",
      "the (epsilon, delta) of DP-SGD's subsampled Gaussian mechanism (RDP accountant), or the "
      "noise multiplier for a target epsilon; prints JSON",
      add_accountant_options, run_accountant);
}

}  // namespace kr::steps
