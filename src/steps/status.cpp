// `kr status DIR`: whether a step's run directory is complete, by the same rule
// `kr run` uses to skip it (its run.json says "complete"). For scripts around the
// binary (slurm/run-step), so they need not read run.json themselves.
#include <iostream>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/steps/pipeline.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

void add_status_options(po::options_description& options) {
  // clang-format off
  options.add_options()
      ("dir", po::value<std::string>()->required(), "a step's run directory (also the first argument)");
  // clang-format on
}

int run_status_step(Context& context) {
  const auto dir = context.get<std::string>("dir");
  const auto status = run_status(dir);
  if (context.comm.rank() == 0) std::cout << dir << ": " << status << "\n";
  return status == "complete" ? exit_code::ok : exit_code::failure;
}

}  // namespace

Step status_step() {
  return Step{"status",
              "is a run directory complete? prints complete, failed, running, missing or "
              "unreadable; exit 0 only when complete",
              add_status_options, run_status_step, "dir"};
}

}  // namespace kr::steps
