#include "kr/steps/pipeline.hpp"
#include "kr/steps/run_record.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "kr/comm/communicator.hpp"
#include "kr/config.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/json.hpp"
#include "kr/core/log.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (auto at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

}  // namespace

std::string pipeline_path(const std::string& name_or_path) {
  const std::string suffix = ".pipeline";
  const bool is_path =
      name_or_path.find('/') != std::string::npos ||
      (name_or_path.size() > suffix.size() &&
       name_or_path.compare(name_or_path.size() - suffix.size(), suffix.size(), suffix) == 0);
  if (is_path) return name_or_path;
  const char* env = std::getenv("KR_JOBS_DIR");
  const std::string dir = env && *env ? env : KR_SOURCE_JOBS_DIR;
  return dir + "/" + name_or_path + suffix;
}

std::vector<PipelineStep> read_pipeline(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError(path + ": cannot open pipeline file");
  std::vector<PipelineStep> steps;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    std::istringstream words(line);
    PipelineStep step;
    if (!(words >> step.step) || step.step[0] == '#') continue;
    const std::string where = path + ":" + std::to_string(number);
    if (!find_step(step.step) || step.step == "run")
      throw UsageError(where + ": no step named '" + step.step + "' (a pipeline cannot run 'run')");
    if (!(words >> step.directory))
      throw UsageError(where + ": '" + step.step + "' needs a run directory ('-' for none)");
    if (step.directory.front() == '/' || step.directory.find("..") != std::string::npos)
      throw UsageError(where + ": the run directory must stay inside the workdir");
    for (std::string word; words >> word;) step.options.push_back(word);
    steps.push_back(std::move(step));
  }
  if (steps.empty()) throw UsageError(path + ": no steps");
  return steps;
}

namespace {
std::vector<std::string> step_arguments(const PipelineStep& step, const std::string& workdir,
                                        const std::vector<std::string>& common) {
  auto args = common;
  for (const auto& option : step.options) args.push_back(replace_all(option, "{workdir}", workdir));
  return args;
}
}  // namespace

StepOptions resolve_step_options(const Context& parent, const PipelineStep& step,
                                 const std::string& workdir,
                                 const std::vector<std::string>& common) {
  if (!parent.parse_options) throw Error("a pipeline needs the cli's option parser");
  const Step* found = find_step(step.step);
  if (!found) throw UsageError("pipeline: no step named '" + step.step + "'");
  return parent.parse_options(*found, step_arguments(step, workdir, common));
}

int run_pipeline(Context& parent, comm::Communicator& comm, const std::vector<PipelineStep>& steps,
                 const std::string& workdir, const std::vector<std::string>& common) {
  // Every step's options (its INI section, its bounds) are checked before the first
  // step starts: a typo in the last step's section must not surface hours later.
  for (const auto& step : steps) resolve_step_options(parent, step, workdir, common);
  for (const auto& step : steps) {
    const bool always = step.directory == "-";
    const std::string dir = workdir + "/" + step.directory;
    if (!always && run_complete(dir)) {
      log::info("== " + step.step + ": complete in " + dir + ", skipped");
      continue;
    }
    log::info("== " + step.step + (always ? std::string() : " (" + dir + ")"));
    const auto args = step_arguments(step, workdir, common);
    log::record(Json{{"event", "pipeline_step"}, {"step", step.step}, {"directory", dir}});
    int code = exit_code::failure;
    try {
      code = run_nested_step(parent, comm, step.step, args);
    } catch (const std::exception&) {
      log::error("pipeline: " + step.step + " in " + dir + " failed; later steps not run");
      throw;
    }
    // Root writes some outputs after the other ranks have finished the step: the next
    // step reads them only once every rank is past this one.
    comm.barrier();
    if (code != exit_code::ok) {
      log::error("pipeline: " + step.step + " in " + dir + " ended with exit code " +
                 std::to_string(code) + "; later steps not run (run again to resume)");
      return code;
    }
  }
  return exit_code::ok;
}

}  // namespace kr::steps
