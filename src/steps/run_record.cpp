#include "kr/steps/run_record.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <thread>

#include "kr/comm/communicator.hpp"
#include "kr/comm/mpi_runtime.hpp"
#include "kr/config.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
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

namespace {

std::string lock_path(const std::string& run_dir) {
  return run_dir + "/run.lock";
}

std::string this_host() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

std::string slurm_job() {
  const char* job = std::getenv("SLURM_JOB_ID");
  return job ? job : "";
}

bool process_alive(long pid) {
  if (pid <= 0 || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM)) return false;
  // A zombie (killed, not yet reaped) holds nothing: /proc/<pid>/stat's state is 'Z'.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(stat, text);
  const auto close = text.rfind(')');
  return close == std::string::npos || close + 2 >= text.size() || text[close + 2] != 'Z';
}

// Whether the process that wrote `holder` (a lock or a "running" record) has ended on
// this host; another host's processes cannot be seen from here.
bool process_gone(const Json& holder) {
  return holder.value("host", "") == this_host() && !process_alive(holder.value("pid", 0L));
}

// Whether a lock can no longer be live: its process is gone or is this one, or it was
// left by this same Slurm job (requeued or restarted, perhaps on another node).
bool lock_stale(const Json& holder) {
  if (process_gone(holder)) return true;
  if (holder.value("host", "") == this_host() &&
      holder.value("pid", 0L) == static_cast<long>(::getpid()))
    return true;
  const std::string job = holder.value("slurm_job_id", "");
  return !job.empty() && job == slurm_job();
}

// Rank 0: takes <run_dir>/run.lock, or returns why not.
std::string take_lock(const std::string& run_dir, const std::string& step) {
  const std::string path = lock_path(run_dir);
  const Json mine{{"step", step},
                  {"host", this_host()},
                  {"pid", static_cast<long>(::getpid())},
                  {"slurm_job_id", slurm_job()},
                  {"since", now_iso()}};
  for (int attempt = 0; attempt < 3; ++attempt) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      const std::string text = mine.dump() + "\n";
      const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
      ::close(fd);
      if (!ok) {
        ::unlink(path.c_str());
        return path + ": cannot write the lock (" + free_space_text(path) + ")";
      }
      return "";
    }
    if (errno != EEXIST) return path + ": cannot create the lock (" + std::strerror(errno) + ")";
    Json holder;
    try {
      holder = Json::parse(read_file(path));
    } catch (const std::exception&) {
      holder = Json::object();  // being written, or left unreadable by a crash
    }
    // A holder on this host that is still alive may be a crashed job's rank still being
    // torn down (a rerun right after kill -9): give it a few seconds to end.
    for (int wait = 0; wait < 50 && holder.contains("pid") && !lock_stale(holder) &&
                       holder.value("host", "") == this_host();
         ++wait)
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (holder.contains("pid") && lock_stale(holder)) {
      log::warn(path + ": stale lock of pid " + std::to_string(holder.value("pid", 0L)) + " on " +
                holder.value("host", "?") + " taken over");
      ::unlink(path.c_str());
      continue;
    }
    if (!holder.contains("pid")) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      continue;
    }
    return run_dir + " is in use by kr " + holder.value("step", "?") + " (pid " +
           std::to_string(holder.value("pid", 0L)) + " on " + holder.value("host", "?") +
           (holder.value("slurm_job_id", "").empty()
                ? std::string()
                : ", Slurm job " + holder.value("slurm_job_id", "")) +
           ", since " + holder.value("since", "?") + "); if that run is gone, remove " + path;
  }
  return path + ": unreadable lock; if no run uses " + run_dir + ", remove it";
}

// Rank 0: why this step may not record into run_dir, or "".
std::string refusal(const std::string& run_dir, const std::string& step, std::string* previous) {
  const std::string path = run_dir + "/run.json";
  if (!path_exists(path)) return "";
  *previous = read_file(path);
  try {
    const std::string owner = Json::parse(*previous).value("step", "");
    if (!owner.empty() && owner != step)
      return run_dir + " holds the run of `kr " + owner + "` (" + path + "); kr " + step +
             " needs a directory of its own";
  } catch (const std::exception&) {
    // An unreadable record is replaced.
  }
  return "";
}

}  // namespace

RunRecord::RunRecord(Context& context, std::string run_dir)
    : context_(context), run_dir_(std::move(run_dir)) {
  // Through the step's communicator (a membership run's is one rank): a world
  // collective here would wait for ranks that are running other steps.
  const auto hosts = context.comm.allgather_strings(context.runtime.hostname());
  std::string why;
  if (context.comm.rank() == 0) {
    try {
      why = refusal(run_dir_, context.step, &previous_);
      had_previous_ = path_exists(run_dir_ + "/run.json");
      if (why.empty()) {
        created_dir_ = !path_exists(run_dir_);
        make_dirs(run_dir_);
        why = take_lock(run_dir_, context.step);
        locked_ = why.empty();
      }
    } catch (const std::exception& error) {
      why = error.what();
    }
  }
  why = context.comm.allgather_strings(why)[0];
  if (!why.empty()) {
    finished_ = true;  // nothing was written: nothing to settle
    if (created_dir_) ::rmdir(run_dir_.c_str());
    throw UsageError(why);
  }
  record_["step"] = context.step;
  record_["status"] = "running";
  record_["kr_version"] = KR_VERSION;
  record_["git_describe"] = KR_GIT_DESCRIBE;
  record_["start_time"] = now_iso();
  record_["world_size"] = context.comm.size();
  record_["communicator"] = context.comm.backend();
  record_["hostnames"] = hosts;
  record_["host"] = this_host();
  record_["pid"] = static_cast<long>(::getpid());
  record_["slurm_job_id"] = slurm_job();
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
  if (context.comm.rank() == 0) write();
}

RunRecord::~RunRecord() {
  if (!finished_) {
    try {
      failed("the step ended without recording how");
    } catch (const std::exception& error) {
      log::error(run_dir_ + "/run.json: " + error.what());
    }
  }
  release_lock();
}

void RunRecord::release_lock() {
  if (locked_) ::unlink(lock_path(run_dir_).c_str());
  locked_ = false;
}

void RunRecord::add_input(const std::string& role, const std::string& path) {
  if (context_.comm.rank() != 0) return;
  record_["inputs"][role] = Json{{"path", path}, {"sha256", sha256_file(path)}};
}

void RunRecord::set(const std::string& key, Json value) {
  record_[key] = std::move(value);
}

Json RunRecord::cost_split() const {
  return (cost::snapshot() - opened_).to_json();
}

void RunRecord::finish(const std::string& status) {
  record_["status"] = status;
  record_["end_time"] = now_iso();
  record_["cost_split"] = cost_split();
  finished_ = true;
  if (context_.comm.rank() == 0) write();
}

void RunRecord::refused() {
  if (finished_) return;
  finished_ = true;
  if (context_.comm.rank() != 0) return;
  const std::string path = run_dir_ + "/run.json";
  if (had_previous_) {
    write_file_atomic(path, previous_);
  } else {
    ::unlink(path.c_str());
    release_lock();
    if (created_dir_) ::rmdir(run_dir_.c_str());  // only when empty
  }
}

void RunRecord::failed(const std::string& error) {
  if (finished_) return;
  record_["error"] = error;
  finish("failed");
}

void RunRecord::write() {
  write_file_atomic(run_dir_ + "/run.json", record_.dump(2) + "\n");
}

RunRecord& open_record(Context& context, const std::string& run_dir) {
  if (context.record) throw std::logic_error("kr " + context.step + " opened a second run record");
  context.record = std::make_shared<RunRecord>(context, run_dir);
  return *context.record;
}

int run_settling_record(Context& context, const std::function<int()>& body) {
  struct Reset {
    Context& context;
    ~Reset() { context.record.reset(); }
  } reset{context};
  try {
    const int code = body();
    if (context.record && !context.record->finished())
      context.record->failed("the step returned exit code " + std::to_string(code) +
                             " without recording how it ended");
    return code;
  } catch (const UsageError&) {
    if (context.record) context.record->refused();
    throw;
  } catch (const std::exception& error) {
    if (context.record) context.record->failed(error.what());
    throw;
  }
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
    const Json record = Json::parse(read_file(path));
    const auto status = record.value("status", "");
    // A record left "running" by a process that has died (killed, or its job aborted).
    if (status == "running" && record.contains("pid") && process_gone(record)) return "failed";
    return status.empty() ? "unreadable" : status;
  } catch (const std::exception&) {
    return "unreadable";  // run the step again
  }
}

bool run_complete(const std::string& run_dir) {
  return run_status(run_dir) == "complete";
}

}  // namespace kr::steps
