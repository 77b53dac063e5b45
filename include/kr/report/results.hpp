// results/<name>.json (and .csv) under a work directory: where a step's results live,
// how they are written (atomically, JSON indented by 2) and read (an unparsable file is an
// error naming it). Every step that writes results and every reader (the report, kr mia
// reading its runs' accuracies) goes through here.
#pragma once

#include <string>

#include "kr/core/json.hpp"

namespace kr::report {

// <workdir>/results/<name>.<extension>
std::string results_path(const std::string& workdir, const std::string& name,
                         const std::string& extension = "json");

// Writes <workdir>/results/<name>.json (making results/); atomic.
void write_results(const std::string& workdir, const std::string& name, const Json& results);
// Writes <workdir>/results/<name>.csv (making results/); atomic.
void write_results_csv(const std::string& workdir, const std::string& name, const std::string& csv);

// <workdir>/results/<name>.json, or null when there is none.
Json read_results(const std::string& workdir, const std::string& name);

}  // namespace kr::report
