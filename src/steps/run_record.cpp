#include "kr/steps/run_record.hpp"

#include <chrono>
#include <cstdlib>
#include <ctime>

#include "kr/comm/communicator.hpp"
#include "kr/comm/mpi_runtime.hpp"
#include "kr/config.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/sha256.hpp"

extern char** environ;

namespace kr::steps {

namespace {
std::string now_iso() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}
}  // namespace

RunRecord::RunRecord(Context& context, std::string run_dir)
    : context_(context), run_dir_(std::move(run_dir)) {
  // Through the step's communicator (a membership run's is one rank): a world
  // collective here would wait for ranks that are running other steps.
  const auto hosts = context.comm.allgather_strings(context.runtime.hostname());
  record_["step"] = context.step;
  record_["status"] = "running";
  record_["kr_version"] = KR_VERSION;
  record_["git_describe"] = KR_GIT_DESCRIBE;
  record_["start_time"] = now_iso();
  record_["world_size"] = context.comm.size();
  record_["communicator"] = context.comm.backend();
  record_["hostnames"] = hosts;
  record_["threads"] = context.threads.to_json();
  Json slurm = Json::object();
  for (char** variable = environ; *variable; ++variable) {
    const std::string entry = *variable;
    if (entry.rfind("SLURM_", 0) != 0) continue;
    const auto equals = entry.find('=');
    slurm[entry.substr(0, equals)] = entry.substr(equals + 1);
  }
  record_["slurm"] = slurm;
  record_["config"] = context.config;
  record_["config_hash"] = config_hash(context);
  record_["inputs"] = Json::object();
  if (context.comm.rank() == 0) {
    make_dirs(run_dir_);
    write();
  }
}

void RunRecord::add_input(const std::string& role, const std::string& path) {
  if (context_.comm.rank() != 0) return;
  record_["inputs"][role] = Json{{"path", path}, {"sha256", sha256_file(path)}};
}

void RunRecord::set(const std::string& key, Json value) {
  record_[key] = std::move(value);
}

void RunRecord::finish(const std::string& status) {
  record_["status"] = status;
  record_["end_time"] = now_iso();
  if (context_.comm.rank() == 0) write();
}

void RunRecord::write() {
  write_file_atomic(run_dir_ + "/run.json", record_.dump(2) + "\n");
}

namespace {
std::string first_difference(const Json& old_settings, const Json& new_settings) {
  for (const auto& item : new_settings.items()) {
    if (!old_settings.contains(item.key()) || old_settings.at(item.key()) != item.value()) {
      return item.key() + " was " +
             (old_settings.contains(item.key()) ? old_settings.at(item.key()).dump() : "unset") +
             ", now " + item.value().dump();
    }
  }
  for (const auto& item : old_settings.items())
    if (!new_settings.contains(item.key())) return item.key() + " was set, now unset";
  return "settings differ";
}
}  // namespace

void claim_settings(const std::string& directory, const Json& settings, const std::string& what) {
  const std::string path = directory + "/settings.json";
  if (!path_exists(path)) {
    make_dirs(directory);
    write_file_atomic(path, settings.dump(2) + "\n");
    return;
  }
  Json old;
  try {
    old = Json::parse(read_file(path));
  } catch (const std::exception& error) {
    throw Error(path + ": unreadable (" + error.what() + "); remove the directory to start again");
  }
  if (old != settings)
    throw UsageError(directory + " holds " + what + " made with different settings (" +
                     first_difference(old, settings) +
                     "); use another --out or remove the directory");
}

std::string run_status(const std::string& run_dir) {
  const std::string path = run_dir + "/run.json";
  if (!path_exists(path)) return "missing";
  try {
    const auto status = Json::parse(read_file(path)).value("status", "");
    return status.empty() ? "unreadable" : status;
  } catch (const std::exception&) {
    return "unreadable";  // run the step again
  }
}

bool run_complete(const std::string& run_dir) {
  return run_status(run_dir) == "complete";
}

}  // namespace kr::steps
