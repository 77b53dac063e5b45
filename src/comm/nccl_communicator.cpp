#include "kr/comm/nccl_communicator.hpp"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstdlib>

#include "kr/core/error.hpp"
#include "kr/core/log.hpp"

namespace kr::comm {

namespace {

ncclDataType_t nccl_type(DataType type) {
  switch (type) {
    case DataType::float32:
      return ncclFloat32;
    case DataType::float64:
      return ncclFloat64;
    case DataType::int64:
      return ncclInt64;
    case DataType::int32:
      return ncclInt32;
    case DataType::uint8:
      return ncclUint8;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return ncclSum;
    case ReduceOp::avg:
      return ncclAvg;
    case ReduceOp::max:
      return ncclMax;
  }
  return ncclSum;
}

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(status));
}

void check_nccl(ncclResult_t status, const char* what) {
  if (status != ncclSuccess)
    throw Error(std::string("NCCL: ") + what + ": " + ncclGetErrorString(status));
}

// Completion is an event recorded after the enqueued operation; an asynchronous
// NCCL error (a peer died) is surfaced while polling.
class NcclPending final : public PendingOp {
 public:
  NcclPending(cudaStream_t stream, ncclComm_t comm) : comm_(comm) {
    check_cuda(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "event create");
    check_cuda(cudaEventRecord(event_, stream), "event record");
  }
  ~NcclPending() override { cudaEventDestroy(event_); }
  bool test() override {
    const cudaError_t status = cudaEventQuery(event_);
    if (status == cudaSuccess) return true;
    if (status != cudaErrorNotReady) check_cuda(status, "collective");
    ncclResult_t async_error = ncclSuccess;
    check_nccl(ncclCommGetAsyncError(comm_, &async_error), "async error query");
    check_nccl(async_error, "collective failed");
    return false;
  }

 private:
  cudaEvent_t event_ = nullptr;
  ncclComm_t comm_;
};

}  // namespace

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
  return count;
}

NcclCommunicator::NcclCommunicator(std::unique_ptr<MpiCommunicator> mpi, int local_rank)
    : Communicator(mpi->rank(), mpi->size()), mpi_(std::move(mpi)) {
  const int devices = cuda_device_count();
  if (devices == 0)
    throw Error("NCCL communicator: no CUDA device on rank " + std::to_string(rank()));
  device_ = local_rank % devices;
  check_cuda(cudaSetDevice(device_), "set device");
  ncclUniqueId id;
  if (rank() == 0) check_nccl(ncclGetUniqueId(&id), "unique id");
  MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, mpi_->raw());
  ncclComm_t comm = nullptr;
  check_nccl(ncclCommInitRank(&comm, size(), id, rank()), "communicator init");
  comm_ = comm;
  cudaStream_t stream = nullptr;
  check_cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream create");
  stream_ = stream;
  check_cuda(cudaMalloc(&scratch_, sizeof(float)), "scratch allocation");
}

NcclCommunicator::~NcclCommunicator() {
  if (scratch_) cudaFree(scratch_);
  if (comm_) ncclCommDestroy(static_cast<ncclComm_t>(comm_));
  if (stream_) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

void NcclCommunicator::abort(int code, const std::string& why) {
  if (comm_) ncclCommAbort(static_cast<ncclComm_t>(comm_));
  comm_ = nullptr;
  mpi_->abort(code, why);
}

void NcclCommunicator::check_tensor(const at::Tensor& tensor) const {
  if (!tensor.device().is_cuda())
    throw Error("NCCL communicator: tensors must be on a CUDA device");
  if (!tensor.is_contiguous()) throw Error("NCCL communicator: tensors must be contiguous");
}

std::unique_ptr<PendingOp> NcclCommunicator::after_enqueue(int nccl_status, const char* what) {
  check_nccl(static_cast<ncclResult_t>(nccl_status), what);
  return std::make_unique<NcclPending>(static_cast<cudaStream_t>(stream_),
                                       static_cast<ncclComm_t>(comm_));
}

std::unique_ptr<PendingOp> NcclCommunicator::start_allreduce(void* data, std::size_t count,
                                                             DataType type, ReduceOp op) {
  return after_enqueue(
      ncclAllReduce(data, data, count, nccl_type(type), nccl_op(op), static_cast<ncclComm_t>(comm_),
                    static_cast<cudaStream_t>(stream_)),
      "allreduce");
}

std::unique_ptr<PendingOp> NcclCommunicator::start_broadcast(void* data, std::size_t bytes,
                                                             int root) {
  return after_enqueue(
      ncclBroadcast(data, data, bytes, ncclUint8, root, static_cast<ncclComm_t>(comm_),
                    static_cast<cudaStream_t>(stream_)),
      "broadcast");
}

std::unique_ptr<PendingOp> NcclCommunicator::start_allgather(const void* send, void* receive,
                                                             std::size_t bytes_per_rank) {
  return after_enqueue(
      ncclAllGather(send, receive, bytes_per_rank, ncclUint8, static_cast<ncclComm_t>(comm_),
                    static_cast<cudaStream_t>(stream_)),
      "allgather");
}

std::unique_ptr<PendingOp> NcclCommunicator::start_barrier() {
  return after_enqueue(
      ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, static_cast<ncclComm_t>(comm_),
                    static_cast<cudaStream_t>(stream_)),
      "barrier");
}

}  // namespace kr::comm
