#include "kr/core/log.hpp"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <mutex>

#include "kr/core/fs.hpp"

namespace kr::log {

namespace {
int g_rank = 0;
int g_world = 1;
std::mutex g_mutex;
std::ofstream g_jsonl;
std::string g_jsonl_dir;

std::string timestamp() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  std::tm local{};
  localtime_r(&seconds, &local);
  char text[32];
  std::strftime(text, sizeof text, "%H:%M:%S", &local);
  return text;
}

void emit(std::FILE* stream, const char* level, const std::string& message) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_world > 1) {
    std::fprintf(stream, "[%s kr rank %d] %s%s\n", timestamp().c_str(), g_rank, level,
                 message.c_str());
  } else {
    std::fprintf(stream, "[%s kr] %s%s\n", timestamp().c_str(), level, message.c_str());
  }
  std::fflush(stream);
}
}  // namespace

void set_rank(int rank, int world_size) {
  g_rank = rank;
  g_world = world_size;
}

int rank() {
  return g_rank;
}

void open_jsonl(const std::string& run_dir) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_jsonl.is_open() && g_jsonl_dir == run_dir) return;
  if (g_jsonl.is_open()) g_jsonl.close();
  make_dirs(run_dir + "/logs");
  g_jsonl.open(run_dir + "/logs/rank_" + std::to_string(g_rank) + ".jsonl", std::ios::app);
  g_jsonl_dir = run_dir;
}

void close_jsonl() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_jsonl.is_open()) g_jsonl.close();
  g_jsonl_dir.clear();
}

void record(Json event) {
  const double seconds =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  Json line;
  line["time"] = seconds;
  line["rank"] = g_rank;
  for (auto& item : event.items()) line[item.key()] = item.value();
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_jsonl.is_open()) return;
  g_jsonl << line.dump() << '\n';
  g_jsonl.flush();
}

void info(const std::string& message) {
  if (g_rank == 0) emit(stdout, "", message);
}

void rank_info(const std::string& message) {
  emit(stdout, "", message);
}

void warn(const std::string& message) {
  emit(stderr, "warning: ", message);
  record(Json{{"event", "warning"}, {"message", message}});
}

void error(const std::string& message) {
  emit(stderr, "error: ", message);
  record(Json{{"event", "error"}, {"message", message}});
}

bool stdout_is_tty() {
  return ::isatty(STDOUT_FILENO) == 1;
}

}  // namespace kr::log
