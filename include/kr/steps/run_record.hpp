// run.json: what ran, where, with which settings and inputs, and how it ended.
#pragma once

#include <string>

#include "kr/core/json.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

class RunRecord {
 public:
  // Collective over context.comm (gathers host names). Rank 0 writes <run_dir>/run.json with status
  // "running".
  RunRecord(Context& context, std::string run_dir);
  void add_input(const std::string& role, const std::string& path);  // records its sha256
  void set(const std::string& key, Json value);
  // Rank 0 rewrites run.json with the end time and status.
  void finish(const std::string& status);
  const std::string& run_dir() const { return run_dir_; }

 private:
  void write();
  Context& context_;
  std::string run_dir_;
  Json record_;
};

// What <run_dir>/run.json says: "complete", "failed", "running", "missing" (no
// run.json) or "unreadable". A step's run directory is complete when it says so (the
// reader of the file RunRecord writes: `kr run`'s skips, `kr status`, kr mia's runs).
std::string run_status(const std::string& run_dir);
bool run_complete(const std::string& run_dir);

// Rank 0 only: the first run into `directory` writes settings.json; a later run
// must bring the same settings, else a UsageError names the first difference.
// `what` says what the directory holds ("a pool", "runs").
void claim_settings(const std::string& directory, const Json& settings, const std::string& what);

}  // namespace kr::steps
