// `kr status DIR`: whether a step's run directory is complete, by the same rule
// `kr run` uses to skip it (its run.json says "complete"). For scripts around the
// binary (slurm/run-step), so they need not read run.json themselves.
#include <iostream>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/steps/run_record.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

struct StatusOptions {
  std::string dir;
};

void add_status_options(OptionTable& table, StatusOptions& options) {
  table.description().add_options()("dir", po::value<std::string>(&options.dir)->required(),
                                    "a step's run directory (also the first argument)");
}

int run_status_step(Context& context, const StatusOptions& options) {
  const auto& dir = options.dir;
  const auto status = run_status(dir);
  if (context.comm.rank() == 0) std::cout << dir << ": " << status << "\n";
  return status == "complete" ? exit_code::ok : exit_code::failure;
}

}  // namespace

Step status_step() {
  return typed_step<StatusOptions>(
      "status",
      "is a run directory complete? prints complete, failed, running, missing or "
      "unreadable; exit 0 only when complete",
      add_status_options, run_status_step, "dir");
}

}  // namespace kr::steps
