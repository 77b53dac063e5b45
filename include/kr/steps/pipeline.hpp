// Pipeline definitions (jobs/*.pipeline) and the one runner that executes them:
// `kr run` runs a whole pipeline, `kr mia` replays its training steps once per
// membership run, and slurm/submit reads the same files (one source of truth).
//
// File format: one step per line, `STEP RUN_DIR [options...]`; RUN_DIR is relative to
// the workdir ('-': no outputs of its own, always runs); `{workdir}` in options is
// replaced; '#' starts a comment line.
#pragma once

#include <string>
#include <vector>

namespace kr::comm {
class Communicator;
}

namespace kr::steps {

struct Context;
struct StepOptions;

struct PipelineStep {
  std::string step;
  std::string directory;             // relative to the workdir; "-" always runs
  std::vector<std::string> options;  // with {workdir} still unreplaced
};

// A name such as "kr" is <jobs dir>/kr.pipeline (the jobs dir: $KR_JOBS_DIR, else the
// source tree's jobs/); anything with a '/' or a .pipeline suffix is a path.
std::string pipeline_path(const std::string& name_or_path);
// Parses a pipeline file; an unknown step or a malformed line is an error naming file:line.
std::vector<PipelineStep> read_pipeline(const std::string& path);

// The options `step` would run with (its arguments after `common`, the INI section a
// --config among them names), as run_pipeline parses them; UsageError when they are bad.
StepOptions resolve_step_options(const Context& parent, const PipelineStep& step,
                                 const std::string& workdir,
                                 const std::vector<std::string>& common);

// Runs `steps` in order in this process on `comm`, each with `common` options (config,
// workdir, seed ...) before its own, skipping steps whose run directory is complete.
// Returns the first exit code that is not ok (a preempted step stops the pipeline),
// else ok; a failing step's code is returned after logging which step failed.
int run_pipeline(Context& parent, comm::Communicator& comm, const std::vector<PipelineStep>& steps,
                 const std::string& workdir, const std::vector<std::string>& common);

}  // namespace kr::steps
