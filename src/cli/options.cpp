#include "kr/cli/options.hpp"

#include <fstream>

#include "kr/core/error.hpp"
#include "kr/steps/step.hpp"

namespace kr::cli {

void add_common_options(steps::OptionTable& options) {
  // clang-format off
  options
      .plain("help,h", "show this step's options").operational()
      .unbound<std::string>("config", "", "INI file of options (command line wins)").operational()
      .unbound<std::string>("workdir", "runs/default",
       "pipeline directory: every step reads and writes below it").operational()
      .unbound<std::uint64_t>("seed", 0, "run seed for every random stream").range(0, 9223372036854775807.0)
      .unbound<int>("threads", 0,
       "intra-op threads per rank (0: SLURM_CPUS_PER_TASK, else this process's CPUs / local ranks)").range(0, 1024).operational()
      .unbound<std::string>("comm", "auto", "communicator: auto, mpi, self, nccl").operational()
      .unbound<double>("comm-timeout", 600.0,
       "abort the job when a collective waits longer than this (seconds)").at_least(0.1).operational()
      .unbound<double>("comm-warn", 60.0, "warn when a collective waits this long (seconds)").at_least(0.1).operational()
      .unbound<std::string>("umask", "077",
       "file creation mask, octal (077: outputs private to you; 027 to share with your group)").operational();
  // clang-format on
}

DeclaredOptions::DeclaredOptions(const steps::Step& step) : specific(step.name + " options") {
  add_common_options(common_table);
  step.add_options(specific_table);
  all.add(common).add(specific);
}

void DeclaredOptions::validate(const po::variables_map& values) const {
  common_table.validate(values);
  specific_table.validate(values);
}

std::set<std::string> DeclaredOptions::operational() const {
  auto names = common_table.operational_names();
  names.insert(specific_table.operational_names().begin(),
               specific_table.operational_names().end());
  return names;
}

namespace {

bool any_step_has(const std::string& name) {
  for (const auto& step : steps::registry()) {
    const DeclaredOptions options(step);
    if (options.all.find_nothrow(name, false)) return true;
  }
  return false;
}

}  // namespace

void store_config_file(const std::string& path, const std::string& step,
                       const po::options_description& options, po::variables_map& values) {
  std::ifstream in(path);
  if (!in) throw UsageError(path + ": cannot open config file");
  po::parsed_options parsed(nullptr);
  try {
    parsed = po::parse_config_file(in, po::options_description(), true);
  } catch (const po::error& error) {
    throw UsageError(path + ": " + error.what());
  }
  po::parsed_options kept(&options);
  for (const auto& option : parsed.options) {
    const auto& key = option.string_key;
    const auto dot = key.find('.');
    std::string name = key;
    const bool sectioned = dot != std::string::npos;
    if (sectioned) {
      const std::string section = key.substr(0, dot);
      name = key.substr(dot + 1);
      // [slurm] and [slurm.<step>]: job resources for slurm/submit, not kr options.
      if (section == "slurm") continue;
      if (section != step) {
        if (!steps::find_step(section))
          throw UsageError(path + ": unknown section [" + section + "]");
        continue;
      }
    }
    if (name == "config")
      throw UsageError(path + ": a config file cannot name another config file");
    if (options.find_nothrow(name, false)) {
      po::option copy = option;
      copy.string_key = name;
      copy.unregistered = false;
      kept.options.push_back(copy);
    } else if (sectioned || !any_step_has(name)) {
      throw UsageError(path + ": unknown option '" + name + "'" +
                       (sectioned ? " in [" + step + "]" : ""));
    }
  }
  try {
    po::store(kept, values);
  } catch (const po::error& error) {
    throw UsageError(path + ": " + error.what());
  }
}

Json options_to_json(const po::variables_map& values) {
  Json out = Json::object();
  for (const auto& [name, value] : values) {
    const auto& any = value.value();
    if (any.empty()) continue;
    const auto& type = any.type();
    if (type == typeid(std::string)) {
      out[name] = boost::any_cast<std::string>(any);
    } else if (type == typeid(std::int64_t)) {
      out[name] = boost::any_cast<std::int64_t>(any);
    } else if (type == typeid(std::uint64_t)) {
      out[name] = boost::any_cast<std::uint64_t>(any);
    } else if (type == typeid(int)) {
      out[name] = boost::any_cast<int>(any);
    } else if (type == typeid(double)) {
      out[name] = boost::any_cast<double>(any);
    } else if (type == typeid(bool)) {
      out[name] = boost::any_cast<bool>(any);
    }
  }
  return out;
}

}  // namespace kr::cli
