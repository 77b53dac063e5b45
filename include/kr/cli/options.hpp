// Command line and INI config handling shared by every step.
#pragma once

#include <boost/program_options.hpp>

#include <set>
#include <string>

#include "kr/core/json.hpp"
#include "kr/steps/step.hpp"

namespace kr::cli {

namespace po = boost::program_options;

void add_common_options(steps::OptionTable& options);

// Every option of `step`, the common ones first, bound to a fresh options struct of the
// step (Note [Typed options]).
struct DeclaredOptions {
  explicit DeclaredOptions(const steps::Step& step);
  DeclaredOptions(const DeclaredOptions&) = delete;
  DeclaredOptions& operator=(const DeclaredOptions&) = delete;

  po::options_description common{"Common options"};
  po::options_description specific;
  po::options_description all;
  steps::OptionTable common_table{common};
  steps::OptionTable specific_table{specific};

  std::set<std::string> operational() const;
  // Every declared bound (OptionTable::at_least/range; finite floats): UsageError otherwise.
  void validate(const po::variables_map& values) const;
};

// Stores the options of an INI file for `step`: top-level keys apply to every step
// that has them, keys under [<step>] only to that step, other steps' sections are
// skipped. An unknown key or section is a UsageError naming the file.
void store_config_file(const std::string& path, const std::string& step,
                       const po::options_description& options, po::variables_map& values);

// Every option's resolved value (for run.json and config hashes).
Json options_to_json(const po::variables_map& values);

}  // namespace kr::cli
