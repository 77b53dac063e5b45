// A job step (`kr <step>`): its options and its body. The cli layer parses
// options and starts MPI; a step only reads its Context.
#pragma once

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/variables_map.hpp>

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "kr/core/json.hpp"
#include "kr/steps/options.hpp"
#include "kr/train/threads.hpp"

namespace kr::comm {
class Communicator;
class MpiRuntime;
}  // namespace kr::comm

namespace kr::steps {

namespace po = boost::program_options;

struct Step;
class RunRecord;

// Options of a step parsed from command-line style arguments (and the INI file a
// `--config` among them names), as `kr <step> args...` would parse them.
struct StepOptions {
  po::variables_map values;
  Json config;
  std::shared_ptr<void> bound;        // the step's options struct (Note [Typed options])
  std::set<std::string> operational;  // names config_hash leaves out
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
  OptionParser parse_options;         // set by the cli layer; used to run steps inside a step
  std::shared_ptr<void> bound;        // the step's options struct (Note [Typed options])
  std::set<std::string> operational;  // options declared operational (config_hash)
  std::shared_ptr<RunRecord> record = nullptr;  // the step's run.json (Note [Run records])

  template <typename T>
  T get(const std::string& name) const {
    return options[name].as<T>();
  }
  bool has(const std::string& name) const {
    return options.count(name) && !options[name].defaulted();
  }
  std::string workdir() const { return get<std::string>("workdir"); }
  // `given` when not empty, else <workdir>/<fallback> (path options default to "").
  std::string under_workdir(const std::string& given, const std::string& fallback) const;
};

struct Step {
  std::string name;
  std::string summary;
  std::function<void(OptionTable&)> add_options;
  std::function<int(Context&)> run;
  std::string positional = "";  // option that a bare first argument sets (`kr status DIR`)
};

// A step whose options are the fields of `Options` (Note [Typed options]): `declare`
// binds them, `run` reads them.
template <typename Options>
Step typed_step(std::string name, std::string summary, void (*declare)(OptionTable&, Options&),
                int (*run)(Context&, const Options&), std::string positional = "") {
  return Step{std::move(name), std::move(summary),
              [declare](OptionTable& table) { declare(table, table.bind<Options>()); },
              [run](Context& context) {
                if (!context.bound) throw std::logic_error("step run without its parsed options");
                return run_settling_record(context, [&] {
                  return run(context, *static_cast<const Options*>(context.bound.get()));
                });
              },
              std::move(positional)};
}

// Runs a step's body and settles the record it opened (Note [Run records]): restored
// when the step is refused, "failed" on any other exception, rethrown either way.
int run_settling_record(Context& context, const std::function<int()>& body);

const std::vector<Step>& registry();
// Runs `name` in this process on `comm` with options parsed from `args`; returns its exit code.
int run_nested_step(Context& parent, comm::Communicator& comm, const std::string& name,
                    const std::vector<std::string>& args);
const Step* find_step(const std::string& name);

// sha256 over the step's resolved options except the operational ones (Note [Typed
// options]) and `extra_ignored`: two runs with the same hash compute the same thing.
std::string config_hash(const Context& context, const std::vector<std::string>& extra_ignored = {});
std::string config_hash(const Json& config, const std::set<std::string>& operational,
                        const std::vector<std::string>& extra_ignored = {});

}  // namespace kr::steps
