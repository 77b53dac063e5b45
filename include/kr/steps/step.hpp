// A job step (`kr <step>`): its options and its body. The cli layer parses
// options and starts MPI; a step only reads its Context.
#pragma once

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/variables_map.hpp>

#include <functional>
#include <string>
#include <vector>

#include "kr/core/json.hpp"
#include "kr/train/threads.hpp"

namespace kr::comm {
class Communicator;
class MpiRuntime;
}  // namespace kr::comm

namespace kr::steps {

namespace po = boost::program_options;

struct Step;

// Options of a step parsed from command-line style arguments (and the INI file a
// `--config` among them names), as `kr <step> args...` would parse them.
struct StepOptions {
  po::variables_map values;
  Json config;
};
using OptionParser =
    std::function<StepOptions(const Step& step, const std::vector<std::string>& args)>;

struct Context {
  comm::Communicator& comm;
  const comm::MpiRuntime& runtime;
  const po::variables_map& options;
  Json config;  // every resolved option, for run.json and config hashes
  train::ThreadSettings threads;
  std::string step;
  OptionParser parse_options;  // set by the cli layer; used to run steps inside a step

  template <typename T>
  T get(const std::string& name) const {
    return options[name].as<T>();
  }
  bool has(const std::string& name) const {
    return options.count(name) && !options[name].defaulted();
  }
  std::string workdir() const { return get<std::string>("workdir"); }
  // `--<name>` when given, else <workdir>/<fallback>.
  std::string path_option(const std::string& name, const std::string& fallback) const;
};

struct Step {
  std::string name;
  std::string summary;
  std::function<void(po::options_description&)> add_options;
  std::function<int(Context&)> run;
  std::string positional = "";  // option that a bare first argument sets (`kr status DIR`)
};

const std::vector<Step>& registry();
// Runs `name` in this process on `comm` with options parsed from `args`; returns its exit code.
int run_nested_step(Context& parent, comm::Communicator& comm, const std::string& name,
                    const std::vector<std::string>& args);
const Step* find_step(const std::string& name);

// sha256 over the resolved options except the operational ones (paths, threads,
// resume and checkpoint cadence, fault injection): two runs with the same hash
// compute the same thing.
std::string config_hash(const Json& config, const std::vector<std::string>& extra_ignored = {});

}  // namespace kr::steps
