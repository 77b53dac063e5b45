// Independent jobs dealt whole to ranks: the membership runs of `kr mia`, the candidates
// of `kr tune`.
#pragma once

#include <cstdint>
#include <functional>

namespace kr::comm {

class Communicator;

// Note [Dealt jobs]
// Job j goes whole to rank j % world, which runs it on its own one-rank communicator
// (no all-reduce between jobs), so J jobs on R ranks take ceil(J / R) job times. Each
// rank runs its jobs j = rank, rank + size, ... that `complete(j)` does not report done,
// in order, stopping at the first for which `run(j)` returns false (preempted); a rerun
// at any rank count skips complete jobs. Collective: returns true on every rank when
// any rank was preempted.
bool deal_jobs(Communicator& comm, std::int64_t jobs,
               const std::function<bool(std::int64_t)>& complete,
               const std::function<bool(std::int64_t)>& run);

}  // namespace kr::comm
