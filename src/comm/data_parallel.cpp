#include "kr/comm/data_parallel.hpp"

#include <torch/torch.h>

#include "kr/core/error.hpp"

namespace kr::comm {

DataParallel::DataParallel(Communicator& comm, torch::nn::Module& module, double bucket_mb,
                           double first_bucket_mb)
    : comm_(comm), module_(module) {
  auto parameters = module.parameters();
  std::vector<at::Tensor> trainable;
  for (auto& parameter : parameters) {
    if (parameter.requires_grad()) trainable.push_back(parameter);
  }
  const double mib = 1024.0 * 1024.0;
  double cap = first_bucket_mb * mib;
  Bucket current;
  std::size_t current_bytes = 0;
  auto close_bucket = [&] {
    if (current.parameters.empty()) return;
    std::int64_t elements = 0;
    for (const auto& parameter : current.parameters) elements += parameter.numel();
    current.flat =
        torch::zeros({elements}, current.parameters.front().options().requires_grad(false));
    buckets_.push_back(std::move(current));
    current = Bucket{};
    current_bytes = 0;
    cap = bucket_mb * mib;
  };
  for (auto it = trainable.rbegin(); it != trainable.rend(); ++it) {
    if (!current.parameters.empty() &&
        it->scalar_type() != current.parameters.front().scalar_type())
      close_bucket();
    current.parameters.push_back(*it);
    current_bytes += it->nbytes();
    if (static_cast<double>(current_bytes) >= cap) close_bucket();
  }
  close_bucket();
  broadcast_parameters();
}

std::vector<std::int64_t> DataParallel::bucket_sizes() const {
  std::vector<std::int64_t> sizes;
  for (const auto& bucket : buckets_) sizes.push_back(bucket.flat.numel());
  return sizes;
}

void DataParallel::broadcast_parameters() {
  torch::NoGradGuard no_grad;
  for (auto& parameter : module_.parameters()) {
    auto contiguous = parameter.data().contiguous();
    comm_.broadcast(contiguous, 0);
    if (!contiguous.is_same(parameter.data())) parameter.data().copy_(contiguous);
  }
  broadcast_buffers();
}

void DataParallel::broadcast_buffers() {
  if (comm_.size() == 1) return;
  torch::NoGradGuard no_grad;
  for (auto& buffer : module_.buffers()) {
    auto contiguous = buffer.contiguous();
    comm_.broadcast(contiguous, 0);
    if (!contiguous.is_same(buffer)) buffer.copy_(contiguous);
  }
}

void DataParallel::synchronize_gradients() {
  if (comm_.size() == 1) return;
  torch::NoGradGuard no_grad;
  const double scale = 1.0 / comm_.size();
  for (auto& bucket : buckets_) {
    std::int64_t offset = 0;
    for (auto& parameter : bucket.parameters) {
      auto slice = bucket.flat.narrow(0, offset, parameter.numel());
      if (parameter.grad().defined()) {
        slice.copy_(parameter.grad().reshape({-1}));
      } else {
        slice.zero_();
      }
      offset += parameter.numel();
    }
    bucket.flat.mul_(scale);
    comm_.allreduce(bucket.flat, comm::ReduceOp::sum);
    offset = 0;
    for (auto& parameter : bucket.parameters) {
      auto slice = bucket.flat.narrow(0, offset, parameter.numel()).view(parameter.sizes());
      if (!parameter.grad().defined()) {
        parameter.mutable_grad() = torch::zeros_like(parameter);
      }
      parameter.mutable_grad().copy_(slice);
      offset += parameter.numel();
    }
  }
}

}  // namespace kr::comm
