#include "kr/steps/root_only.hpp"

#include <torch/torch.h>

#include "kr/core/error.hpp"

namespace kr::steps {

void run_on_root(comm::Communicator& comm, const std::function<void()>& work) {
  std::string failure;
  bool usage = false;
  if (comm.rank() == 0) {
    try {
      work();
    } catch (const UsageError& error) {
      failure = error.what();
      usage = true;
    } catch (const std::exception& error) {
      failure = error.what();
    }
  }
  auto header = torch::tensor(
      {static_cast<std::int64_t>(failure.size()), static_cast<std::int64_t>(usage)}, torch::kInt64);
  comm.broadcast(header, 0);
  const auto length = header[0].item<std::int64_t>();
  if (length == 0) return;
  auto message = torch::zeros({length}, torch::kUInt8);
  if (comm.rank() == 0) std::memcpy(message.data_ptr(), failure.data(), failure.size());
  comm.broadcast(message, 0);
  std::string text(static_cast<const char*>(message.data_ptr()), static_cast<std::size_t>(length));
  if (header[1].item<std::int64_t>() != 0) throw UsageError(text);
  throw Error(text);
}

}  // namespace kr::steps
