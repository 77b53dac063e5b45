// Where a step's wall time goes: data, compute, communication and I/O.
//
// Note [Cost split]
// Code that moves data, talks to other ranks or touches files opens a cost::Scope
// for its part; the time inside it is charged to that part, exclusively: a scope
// opened inside another charges its time to the inner part only (an HDF5 read
// inside batch assembly is I/O, not data). Time outside every scope is compute.
// The parts therefore add up to the wall time. Each thread keeps its own account;
// a step reports its main thread's (the one that runs the step), taken as the
// difference of two snapshots, so nested steps (kr mia's replayed runs) each get
// their own. Communication includes the time spent waiting for other ranks:
// stragglers show up there, as they do in PyTorch's profiler.
#pragma once

#include <array>

#include "kr/core/json.hpp"

namespace kr::cost {

enum class Part : int { compute = 0, data = 1, comm = 2, io = 3 };
constexpr int kParts = 4;
const char* part_name(Part part);

// Charges the time until it is destroyed to `part` (exclusive of nested scopes).
class Scope {
 public:
  explicit Scope(Part part);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
};

// This thread's seconds per part so far (the open scope's time included).
struct Split {
  std::array<double, kParts> seconds{};
  double total() const;
  Split operator-(const Split& earlier) const;
  // {"wall_seconds", "data_seconds", "compute_seconds", "comm_seconds", "io_seconds",
  //  and each part's share of the wall time}
  Json to_json() const;
};
Split snapshot();

}  // namespace kr::cost
