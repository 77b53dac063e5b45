#include "kr/comm/mpi_communicator.hpp"

#include <torch/torch.h>

#include <cstdlib>

#include "kr/core/error.hpp"
#include "kr/core/log.hpp"

namespace kr::comm {

namespace {

constexpr int kArrivalTag = 7001;      // rank r -> rank 0: "I am in collective #n"
constexpr int kRootArrivalTag = 7002;  // rank 0 -> every rank: the same, for rank 0

MPI_Datatype mpi_type(DataType type) {
  switch (type) {
    case DataType::float32:
      return MPI_FLOAT;
    case DataType::float64:
      return MPI_DOUBLE;
    case DataType::int64:
      return MPI_INT64_T;
    case DataType::int32:
      return MPI_INT32_T;
    case DataType::uint8:
      return MPI_UINT8_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op mpi_op(ReduceOp op) {
  return op == ReduceOp::max ? MPI_MAX : MPI_SUM;
}

class MpiPending final : public PendingOp {
 public:
  MPI_Request request = MPI_REQUEST_NULL;
  bool test() override {
    int done = 0;
    MPI_Test(&request, &done, MPI_STATUS_IGNORE);
    return done != 0;
  }
};

std::size_t checked_count(std::size_t count) {
  if (count > static_cast<std::size_t>(INT32_MAX))
    throw Error("communicator: message above 2^31 elements");
  return count;
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm parent)
    : Communicator(
          [&] {
            int rank = 0;
            MPI_Comm_rank(parent, &rank);
            return rank;
          }(),
          [&] {
            int size = 1;
            MPI_Comm_size(parent, &size);
            return size;
          }()) {
  MPI_Comm_dup(parent, &comm_);
  MPI_Comm_dup(parent, &heartbeat_);
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_ARE_FATAL);
  arrived_.assign(size(), 0);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  // Every rank announced every collective it completed; receive them all so no
  // message is left unmatched at MPI_Finalize.
  if (rank() == 0) drain_heartbeats(true, last_announced_);
  reap_sends(true);
  if (rank() != 0) drain_root_arrivals(true, last_announced_);
  MPI_Comm_free(&heartbeat_);
  MPI_Comm_free(&comm_);
}

void MpiCommunicator::abort(int code, const std::string& why) {
  log::error(why);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

void MpiCommunicator::check_tensor(const at::Tensor& tensor) const {
  if (!tensor.device().is_cpu()) throw Error("MPI communicator: tensors must be on the CPU");
  if (!tensor.is_contiguous()) throw Error("MPI communicator: tensors must be contiguous");
}

std::unique_ptr<PendingOp> MpiCommunicator::start_allreduce(void* data, std::size_t count,
                                                            DataType type, ReduceOp op) {
  auto pending = std::make_unique<MpiPending>();
  MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(checked_count(count)), mpi_type(type),
                 mpi_op(op), comm_, &pending->request);
  return pending;
}

std::unique_ptr<PendingOp> MpiCommunicator::start_broadcast(void* data, std::size_t bytes,
                                                            int root) {
  auto pending = std::make_unique<MpiPending>();
  MPI_Ibcast(data, static_cast<int>(checked_count(bytes)), MPI_BYTE, root, comm_,
             &pending->request);
  return pending;
}

std::unique_ptr<PendingOp> MpiCommunicator::start_allgather(const void* send, void* receive,
                                                            std::size_t bytes_per_rank) {
  auto pending = std::make_unique<MpiPending>();
  const int count = static_cast<int>(checked_count(bytes_per_rank));
  MPI_Iallgather(send, count, MPI_BYTE, receive, count, MPI_BYTE, comm_, &pending->request);
  return pending;
}

std::unique_ptr<PendingOp> MpiCommunicator::start_barrier() {
  auto pending = std::make_unique<MpiPending>();
  MPI_Ibarrier(comm_, &pending->request);
  return pending;
}

void MpiCommunicator::announce_arrival(std::uint64_t sequence) {
  last_announced_ = sequence;
  if (rank() == 0) {
    arrived_[0] = sequence;
    drain_heartbeats(false, 0);
    // Every other rank learns when rank 0 arrives, so a late rank 0 is named too.
    reap_sends(false);
    for (int r = 1; r < size(); ++r) {
      Send send{std::make_unique<std::uint64_t>(sequence), MPI_REQUEST_NULL};
      MPI_Isend(send.value.get(), 1, MPI_UINT64_T, r, kRootArrivalTag, heartbeat_, &send.request);
      sends_.push_back(std::move(send));
    }
    return;
  }
  drain_root_arrivals(false, 0);
  reap_sends(false);
  Send send{std::make_unique<std::uint64_t>(sequence), MPI_REQUEST_NULL};
  MPI_Isend(send.value.get(), 1, MPI_UINT64_T, 0, kArrivalTag, heartbeat_, &send.request);
  sends_.push_back(std::move(send));
}

std::vector<int> MpiCommunicator::ranks_not_arrived(std::uint64_t sequence) {
  if (rank() != 0) {
    // Only rank 0 hears every rank; the others hear rank 0.
    drain_root_arrivals(false, 0);
    if (root_arrived_ < sequence) return {0};
    return {};
  }
  drain_heartbeats(false, 0);
  std::vector<int> missing;
  for (int r = 0; r < size(); ++r) {
    if (arrived_[r] < sequence) missing.push_back(r);
  }
  return missing;
}

void MpiCommunicator::drain_heartbeats(bool block_until, std::uint64_t sequence) {
  for (;;) {
    int flag = 0;
    MPI_Status status;
    MPI_Iprobe(MPI_ANY_SOURCE, kArrivalTag, heartbeat_, &flag, &status);
    if (!flag) {
      if (!block_until) return;
      bool complete = true;
      for (int r = 1; r < size(); ++r) complete = complete && arrived_[r] >= sequence;
      if (complete) return;
      MPI_Probe(MPI_ANY_SOURCE, kArrivalTag, heartbeat_, &status);
    }
    std::uint64_t value = 0;
    MPI_Recv(&value, 1, MPI_UINT64_T, status.MPI_SOURCE, kArrivalTag, heartbeat_,
             MPI_STATUS_IGNORE);
    arrived_[status.MPI_SOURCE] = std::max(arrived_[status.MPI_SOURCE], value);
  }
}

void MpiCommunicator::drain_root_arrivals(bool block_until, std::uint64_t sequence) {
  for (;;) {
    int flag = 0;
    MPI_Iprobe(0, kRootArrivalTag, heartbeat_, &flag, MPI_STATUS_IGNORE);
    if (!flag && (!block_until || root_arrived_ >= sequence)) return;
    std::uint64_t value = 0;
    MPI_Recv(&value, 1, MPI_UINT64_T, 0, kRootArrivalTag, heartbeat_, MPI_STATUS_IGNORE);
    root_arrived_ = std::max(root_arrived_, value);
  }
}

void MpiCommunicator::reap_sends(bool wait) {
  while (!sends_.empty()) {
    int done = 0;
    if (wait) {
      MPI_Wait(&sends_.front().request, MPI_STATUS_IGNORE);
      done = 1;
    } else {
      MPI_Test(&sends_.front().request, &done, MPI_STATUS_IGNORE);
    }
    if (!done) return;
    sends_.pop_front();
  }
}

}  // namespace kr::comm
