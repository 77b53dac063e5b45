// Rank-aware logging: rank 0 prints progress; warnings and errors print on every
// rank with a rank prefix; every rank may also append JSON lines to
// <run dir>/logs/rank_<r>.jsonl.
#pragma once

#include <string>

#include "kr/core/json.hpp"

namespace kr::log {

void set_rank(int rank, int world_size);
int rank();
void open_jsonl(const std::string& run_dir);  // logs/rank_<r>.jsonl; idempotent per directory
void close_jsonl();

void info(const std::string& message);       // rank 0 only, stdout
void rank_info(const std::string& message);  // any rank, stdout (work dealt to ranks)
void warn(const std::string& message);       // any rank, stderr, also recorded
void error(const std::string& message);      // any rank, stderr, also recorded
void record(Json event);                     // JSON line to this rank's log, with time and rank
bool stdout_is_tty();

}  // namespace kr::log
