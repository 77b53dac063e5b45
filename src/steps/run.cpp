// `kr run`: a whole pipeline (jobs/<name>.pipeline) in one launch, step after step on
// the same ranks, skipping steps whose run directory is complete (resume after a
// failure or a preemption by running the same command again).
#include <iostream>

#include "kr/comm/communicator.hpp"
#include "kr/core/clock.hpp"
#include "kr/core/error.hpp"
#include "kr/core/json.hpp"
#include "kr/core/log.hpp"
#include "kr/steps/pipeline.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

struct RunOptions {
  std::string pipeline;
  bool list = false;
};

void add_run_options(OptionTable& table, RunOptions& options) {
  // clang-format off
  table
      ("pipeline", &options.pipeline, "kr", "pipeline name (jobs/<name>.pipeline) or file")
      ("list", &options.list, "print the pipeline's steps as JSON ([{step, directory, options}], file checked) and run nothing").operational();
  // clang-format on
}

int run_run(Context& context, const RunOptions& options) {
  const auto start = Clock::now();
  const std::string path = pipeline_path(options.pipeline);
  const auto steps = read_pipeline(path);
  if (options.list) {
    Json listing = Json::array();
    for (const auto& step : steps)
      listing.push_back(
          Json{{"step", step.step}, {"directory", step.directory}, {"options", step.options}});
    if (context.comm.rank() == 0) std::cout << listing.dump() << "\n";
    return exit_code::ok;
  }
  std::vector<std::string> common = {"--workdir", context.workdir(), "--seed",
                                     std::to_string(context.get<std::uint64_t>("seed"))};
  const auto config = context.get<std::string>("config");
  if (!config.empty()) common.insert(common.begin(), {"--config", config});
  const int code = run_pipeline(context, context.comm, steps, context.workdir(), common);
  if (code == exit_code::ok)
    log::info("run: " + path + " complete in " +
              std::to_string(static_cast<long long>(seconds_since(start))) + " s");
  return code;
}

}  // namespace

Step run_step() {
  return typed_step<RunOptions>(
      "run", "a whole pipeline (jobs/*.pipeline) step after step, skipping complete steps",
      add_run_options, run_run);
}

}  // namespace kr::steps
