#include "kr/comm/communicator.hpp"

#include <torch/torch.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "kr/core/cost.hpp"
#include "kr/core/error.hpp"
#include "kr/core/log.hpp"

namespace kr::comm {

DataType data_type_of(at::ScalarType type) {
  switch (type) {
    case at::kFloat:
      return DataType::float32;
    case at::kDouble:
      return DataType::float64;
    case at::kLong:
      return DataType::int64;
    case at::kInt:
      return DataType::int32;
    case at::kByte:
      return DataType::uint8;
    default:
      throw Error("communicator: unsupported tensor type " + std::string(c10::toString(type)));
  }
}

std::size_t element_bytes(DataType type) {
  switch (type) {
    case DataType::float32:
      return 4;
    case DataType::float64:
      return 8;
    case DataType::int64:
      return 8;
    case DataType::int32:
      return 4;
    case DataType::uint8:
      return 1;
  }
  return 0;
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return "allreduce(sum)";
    case ReduceOp::avg:
      return "allreduce(avg)";
    case ReduceOp::max:
      return "allreduce(max)";
  }
  return "allreduce";
}

void Communicator::allreduce(const at::Tensor& tensor, ReduceOp op) {
  const cost::Scope comm(cost::Part::comm);
  check_tensor(tensor);
  const DataType type = data_type_of(tensor.scalar_type());
  const bool emulate_average = op == ReduceOp::avg && !native_average();
  if (op == ReduceOp::avg && !tensor.is_floating_point()) {
    throw Error("communicator: allreduce(avg) needs a floating-point tensor");
  }
  const ReduceOp started = emulate_average ? ReduceOp::sum : op;
  run(reduce_op_name(op), start_allreduce(tensor.data_ptr(), tensor.numel(), type, started));
  if (emulate_average) tensor.div_(static_cast<double>(size()));
}

void Communicator::broadcast(const at::Tensor& tensor, int root) {
  const cost::Scope comm(cost::Part::comm);
  check_tensor(tensor);
  run("broadcast", start_broadcast(tensor.data_ptr(), tensor.nbytes(), root));
}

at::Tensor Communicator::allgather(const at::Tensor& tensor) {
  const cost::Scope comm(cost::Part::comm);
  check_tensor(tensor);
  auto input = tensor.contiguous();
  std::vector<std::int64_t> sizes(input.sizes().begin(), input.sizes().end());
  if (sizes.empty()) sizes.push_back(1);
  sizes[0] *= size();
  auto output = torch::empty(sizes, input.options());
  run("allgather", start_allgather(input.data_ptr(), output.data_ptr(), input.nbytes()));
  return output;
}

at::Tensor Communicator::gather_rows(const std::vector<at::Tensor>& parts,
                                     const std::vector<std::int64_t>& begins, std::int64_t rows,
                                     const std::vector<std::int64_t>& row_shape,
                                     at::ScalarType type) {
  if (parts.size() != begins.size()) throw std::logic_error("gather_rows: one begin per part");
  std::vector<std::int64_t> sizes{rows};
  sizes.insert(sizes.end(), row_shape.begin(), row_shape.end());
  auto table = torch::zeros(sizes, torch::TensorOptions().dtype(type));
  for (std::size_t i = 0; i < parts.size(); ++i)
    table.narrow(0, begins[i], parts[i].size(0)).copy_(parts[i]);
  allreduce(table, ReduceOp::sum);
  return table;
}

std::vector<std::string> Communicator::allgather_strings(const std::string& mine) {
  auto lengths = allgather(torch::tensor({static_cast<std::int64_t>(mine.size())}, torch::kInt64));
  const auto longest = std::max<std::int64_t>(1, lengths.max().item<std::int64_t>());
  auto buffer = torch::zeros({longest}, torch::kUInt8);
  std::memcpy(buffer.data_ptr(), mine.data(), mine.size());
  auto all = allgather(buffer);
  const auto* bytes = reinterpret_cast<const char*>(all.data_ptr<std::uint8_t>());
  std::vector<std::string> strings;
  for (int r = 0; r < size(); ++r)
    strings.emplace_back(bytes + r * longest,
                         static_cast<std::size_t>(lengths[r].item<std::int64_t>()));
  return strings;
}

void Communicator::barrier() {
  const cost::Scope comm(cost::Part::comm);
  run("barrier", start_barrier());
}

void Communicator::run(const char* name, std::unique_ptr<PendingOp> op) {
  const std::uint64_t sequence = ++sequence_;
  announce_arrival(sequence);
  if (op->test()) return;

  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto next_warning = watchdog_.warn_seconds;
  auto pause = std::chrono::microseconds(1);
  for (;;) {
    if (op->test()) return;
    const double waited = std::chrono::duration<double>(Clock::now() - start).count();
    if (waited >= next_warning || waited >= watchdog_.timeout_seconds) {
      std::string message = "collective #" + std::to_string(sequence) + " (" + name + ") at step " +
                            std::to_string(step_) + " has waited " +
                            std::to_string(static_cast<int>(waited)) + " s";
      const auto missing = ranks_not_arrived(sequence);
      if (!missing.empty()) {
        message += "; not arrived: rank";
        for (std::size_t i = 0; i < missing.size(); ++i)
          message += (i ? ", " : " ") + std::to_string(missing[i]);
      } else if (rank() != 0 && tracks_arrivals()) {
        message += "; rank 0 has arrived (its warning names the ranks missing)";
      }
      if (waited >= watchdog_.timeout_seconds) {
        abort(exit_code::failure, message + "; past --comm-timeout " +
                                      std::to_string(static_cast<int>(watchdog_.timeout_seconds)) +
                                      " s, aborting the job");
      }
      log::warn(message);
      next_warning += watchdog_.warn_seconds;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(1000));
  }
}

}  // namespace kr::comm
