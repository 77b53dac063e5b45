#include "kr/cli/main.hpp"

#include <mpi.h>
#include <sys/stat.h>

#include <torch/torch.h>

#include <cstdlib>
#include <iostream>

#include "kr/cli/options.hpp"
#include "kr/comm/factory.hpp"
#include "kr/comm/mpi_runtime.hpp"
#include "kr/config.hpp"
#include "kr/core/error.hpp"
#include "kr/core/log.hpp"
#include "kr/io/h5.hpp"
#include "kr/steps/step.hpp"
#include "kr/train/signals.hpp"
#include "kr/train/threads.hpp"

namespace kr::cli {

namespace {

// The launcher's rank before MPI starts, so that only one process prints usage errors.
int launcher_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* value = std::getenv(name)) return std::atoi(value);
  }
  return 0;
}

void print_usage(std::ostream& out) {
  out << "kr " << KR_VERSION << " (" << KR_GIT_DESCRIBE << "): Knowledge Recycling on HPC\n\n"
      << "usage: kr <step> [options]          one process\n"
      << "       mpirun -n N kr <step> ...     or srun kr <step> ...: data-parallel over N "
         "ranks\n\n"
      << "steps:\n";
  for (const auto& step : steps::registry()) {
    out << "  " << step.name << std::string(step.name.size() < 16 ? 16 - step.name.size() : 1, ' ')
        << step.summary << "\n";
  }
  out << "\n`kr <step> --help` lists a step's options. Exit codes: 0 ok, 1 failure, 2 usage "
         "error,\n"
      << "75 stopped after a checkpoint (preempted or --stop-at-step): run the same command again "
         "to resume.\n";
}

mode_t parse_umask(const std::string& text) {
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 8);
  if (text.empty() || *end != '\0' || value < 0 || value > 0777) {
    throw UsageError("--umask must be an octal mask such as 077, got '" + text + "'");
  }
  return static_cast<mode_t>(value);
}

// Options for a step run inside another step (`kr mia` replays the pipeline).
steps::StepOptions parse_nested(const steps::Step& step, const std::vector<std::string>& args) {
  DeclaredOptions declared(step);
  steps::StepOptions parsed;
  try {
    po::store(po::command_line_parser(args).options(declared.all).run(), parsed.values);
    const auto config =
        parsed.values.count("config") ? parsed.values["config"].as<std::string>() : "";
    if (!config.empty()) store_config_file(config, step.name, declared.all, parsed.values);
    po::notify(parsed.values);
    declared.validate(parsed.values);
  } catch (const po::error& error) {
    throw UsageError("kr " + step.name + " (nested): " + error.what());
  }
  parsed.config = options_to_json(parsed.values);
  parsed.bound = declared.specific_table.storage();
  parsed.operational = declared.operational();
  return parsed;
}

int run_step(const steps::Step& step, const po::variables_map& values,
             const DeclaredOptions& declared, int* argc, char*** argv) {
  comm::MpiRuntime runtime(argc, argv);
  log::set_rank(runtime.world_rank(), runtime.world_size());
  io::h5::quiet_errors();
  train::install_stop_signal_handlers();
  const auto threads = train::configure_threads(values["threads"].as<int>(), runtime.local_size());
  int code = exit_code::ok;
  {
    auto communicator = comm::make_communicator(values["comm"].as<std::string>(), runtime);
    communicator->watchdog().timeout_seconds = values["comm-timeout"].as<double>();
    communicator->watchdog().warn_seconds = values["comm-warn"].as<double>();
    steps::Context context{*communicator,
                           runtime,
                           values,
                           options_to_json(values),
                           threads,
                           step.name,
                           parse_nested,
                           declared.specific_table.storage(),
                           declared.operational()};
    try {
      code = step.run(context);
    } catch (const UsageError& error) {
      log::error(error.what());
      code = exit_code::usage;
    } catch (const std::exception& error) {
      log::error(error.what());
      code = exit_code::failure;
    }
    if (code != exit_code::ok && code != exit_code::preempted && runtime.world_size() > 1) {
      // Another rank may be blocked in a collective: end the whole job now.
      MPI_Abort(MPI_COMM_WORLD, code);
    }
  }
  log::close_jsonl();
  runtime.finalize();
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  ::umask(077);
  const bool speaker = launcher_rank() == 0;
  if (argc < 2) {
    if (speaker) print_usage(std::cerr);
    return exit_code::usage;
  }
  const std::string first = argv[1];
  if (first == "-h" || first == "--help" || first == "help") {
    if (speaker) print_usage(std::cout);
    return exit_code::ok;
  }
  if (first == "--version") {
    if (speaker) std::cout << "kr " << KR_VERSION << " (" << KR_GIT_DESCRIBE << ")\n";
    return exit_code::ok;
  }
  const steps::Step* step = steps::find_step(first);
  if (!step) {
    if (speaker) std::cerr << "kr: unknown step '" << first << "'; `kr --help` lists the steps\n";
    return exit_code::usage;
  }

  DeclaredOptions declared(*step);
  const auto& all = declared.all;
  po::variables_map values;
  try {
    po::positional_options_description positional;
    if (!step->positional.empty()) positional.add(step->positional.c_str(), 1);
    po::store(po::command_line_parser(argc - 1, argv + 1).options(all).positional(positional).run(),
              values);
    if (values.count("help")) {
      if (speaker)
        std::cout << "usage: kr " << step->name << " [options]\n"
                  << step->summary << "\n\n"
                  << all << "\n";
      return exit_code::ok;
    }
    const auto config = values.count("config") ? values["config"].as<std::string>() : "";
    if (!config.empty()) store_config_file(config, step->name, all, values);
    po::notify(values);
    declared.validate(values);
    ::umask(parse_umask(values["umask"].as<std::string>()));
  } catch (const po::error& error) {
    if (speaker)
      std::cerr << "kr " << step->name << ": " << error.what() << " (see `kr " << step->name
                << " --help`)\n";
    return exit_code::usage;
  } catch (const UsageError& error) {
    if (speaker) std::cerr << "kr " << step->name << ": " << error.what() << "\n";
    return exit_code::usage;
  }
  try {
    return run_step(*step, values, declared, &argc, &argv);
  } catch (const std::exception& error) {
    std::cerr << "kr " << step->name << ": " << error.what() << "\n";
    return exit_code::failure;
  }
}

}  // namespace kr::cli
