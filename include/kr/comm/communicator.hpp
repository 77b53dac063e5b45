// The communicator: collectives over the ranks of one job, with a watchdog.
//
// Note [Watchdog]
// Every collective is started non-blocking and completed by polling, so a
// waiting rank can tell how long it has waited and report it. Before starting
// collective number `seq`, each rank announces its arrival to rank 0 on a side
// channel (a heartbeat); rank 0 can therefore name the ranks that have not yet
// reached `seq`. After `warn_seconds` a waiting rank logs which collective it
// waits on (sequence number, name, step) and, on rank 0, which ranks are
// missing; after `timeout_seconds` it aborts the whole job with that message.
// The polling loop is shared by every backend (MPI, NCCL): only starting and
// testing one operation is backend-specific.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kr::comm {

enum class ReduceOp { sum, avg, max };
enum class DataType { float32, float64, int64, int32, uint8 };

DataType data_type_of(at::ScalarType type);
std::size_t element_bytes(DataType type);
const char* reduce_op_name(ReduceOp op);

struct WatchdogSettings {
  double warn_seconds = 60.0;
  double timeout_seconds = 600.0;
};

// One started operation. test() returns true once it has completed.
class PendingOp {
 public:
  virtual ~PendingOp() = default;
  virtual bool test() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  virtual std::string backend() const = 0;

  // In place on a contiguous tensor on this backend's device.
  void allreduce(const at::Tensor& tensor, ReduceOp op);
  void broadcast(const at::Tensor& tensor, int root);
  // Rank r's tensor becomes rows [r*n, (r+1)*n) of the result (concatenated along dim 0).
  at::Tensor allgather(const at::Tensor& tensor);
  // Every rank's string, rank order (any lengths): two allgathers, lengths then padded bytes.
  std::vector<std::string> allgather_strings(const std::string& mine);
  // A (rows, ...) table every rank holds afterwards: this rank's `parts[i]` are its rows
  // [begins[i], begins[i] + parts[i].size(0)); rows no rank gives are zero. Every rank
  // passes the same `rows` and `row_shape` (the sizes after the first), parts of any
  // type are converted to `type`. One sum all-reduce.
  at::Tensor gather_rows(const std::vector<at::Tensor>& parts,
                         const std::vector<std::int64_t>& begins, std::int64_t rows,
                         const std::vector<std::int64_t>& row_shape, at::ScalarType type);
  void barrier();
  // Ends the whole job at once; `why` is logged first.
  [[noreturn]] virtual void abort(int code, const std::string& why) = 0;

  // Context for watchdog messages: the caller's current step.
  void set_step(std::int64_t step) { step_ = step; }
  std::uint64_t sequence() const { return sequence_; }
  WatchdogSettings& watchdog() { return watchdog_; }

 protected:
  Communicator(int rank, int size) : rank_(rank), size_(size) {}

  virtual void check_tensor(const at::Tensor& tensor) const = 0;
  virtual std::unique_ptr<PendingOp> start_allreduce(void* data, std::size_t count, DataType type,
                                                     ReduceOp op) = 0;
  virtual std::unique_ptr<PendingOp> start_broadcast(void* data, std::size_t bytes, int root) = 0;
  virtual std::unique_ptr<PendingOp> start_allgather(const void* send, void* receive,
                                                     std::size_t bytes_per_rank) = 0;
  virtual std::unique_ptr<PendingOp> start_barrier() = 0;
  virtual bool native_average() const { return false; }

  // Heartbeat side channel, see Note [Watchdog]. The defaults suit one rank.
  virtual void announce_arrival(std::uint64_t sequence) {}
  virtual std::vector<int> ranks_not_arrived(std::uint64_t sequence) { return {}; }
  // Whether ranks_not_arrived knows anything (a rank other than 0 knows only rank 0).
  virtual bool tracks_arrivals() const { return false; }

 private:
  void run(const char* name, std::unique_ptr<PendingOp> op);

  int rank_;
  int size_;
  std::uint64_t sequence_ = 0;
  std::int64_t step_ = -1;
  WatchdogSettings watchdog_;
};

}  // namespace kr::comm
