// The report over one run (or a sweep of runs): what each step's results file says,
// summarised (JSON, CSV) and rendered (HTML). One schema, read here, for every results
// file the report uses: results/{teacher,generator,generate,distill,mia,mia-tckr,tune}.json and
// results/audit-<name>.json.
#pragma once

#include <string>

#include "kr/core/json.hpp"

namespace kr::report {

// The results files of one work directory; a missing file is null.
struct RunResults {
  std::string workdir;
  Json teacher, generator, generate, distill, mia, tckr, tune;
  Json generator_dp, distill_dp;  // jobs/dp.pipeline: results/generator-dp, distill-dp
  Json audits = Json::object();   // results/audit-<name>.json by name (kr audit)
};

// Reads <workdir>/results/*.json; an unparsable file is an error naming it, and a work
// directory with neither a teacher nor a distill result is an error.
RunResults load_run(const std::string& workdir);

// One run's summary row of report.json: accuracies, gap, membership figures, cost.
Json summarize_run(const RunResults& run);

// report.csv: its header and one run's row.
std::string csv_header();
std::string csv_row(const Json& summary);

// One run's section of the page (accuracy, membership, TCKR's protocol, training curves,
// sample grid, cost), and the whole page around the sections.
std::string run_section(const RunResults& run, const Json& summary);
std::string page(const std::string& sections);

}  // namespace kr::report
