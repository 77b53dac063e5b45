// run.json: what ran, where, with which settings and inputs, and how it ended.
#pragma once

#include <string>

#include "kr/core/cost.hpp"
#include "kr/core/json.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

// Note [Run records]
// A step opens its record with open_record() once it knows its run directory. The
// record's rules, whatever the step:
// - Before anything is written it refuses (UsageError, nothing touched) a directory
//   whose run.json belongs to another step, or that another live run holds: rank 0
//   takes <run_dir>/run.lock (host, pid, Slurm job); a lock whose process is gone on
//   this host, or that the same Slurm job left (a requeue), is stale and taken over.
// - The record is owned by the step's scaffold (typed_step), which settles it: a step
//   refused later (UsageError) puts the previous run.json back byte for byte (or
//   removes the new one), so a refused step never overwrites a complete record; any
//   other exception marks it "failed" with the error; a record left "running" when
//   its process died is read as "failed" by run_status.
class RunRecord {
 public:
  // Collective over context.comm (gathers host names). Rank 0 writes <run_dir>/run.json with
  // status "running" after the checks above.
  RunRecord(Context& context, std::string run_dir);
  ~RunRecord();
  RunRecord(const RunRecord&) = delete;
  RunRecord& operator=(const RunRecord&) = delete;
  void add_input(const std::string& role, const std::string& path);  // records its sha256
  void set(const std::string& key, Json value);
  // Rank 0 rewrites run.json with the end time, status and cost split.
  void finish(const std::string& status);
  // This rank's wall time since the record opened, split into data, compute,
  // communication and I/O (Note [Cost split]); steps add it to their results.
  Json cost_split() const;
  // The scaffold's endings (Note [Run records]).
  void refused();
  void failed(const std::string& error);
  bool finished() const { return finished_; }
  const std::string& run_dir() const { return run_dir_; }

 private:
  void write();
  void release_lock();
  Context& context_;
  std::string run_dir_;
  Json record_;
  cost::Split opened_ = cost::snapshot();
  bool finished_ = false;
  bool had_previous_ = false;
  bool created_dir_ = false;
  bool locked_ = false;
  std::string previous_;
};

// Opens the step's record (at most one per step run) and gives it to the scaffold.
RunRecord& open_record(Context& context, const std::string& run_dir);

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
