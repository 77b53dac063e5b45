// Data parallelism for one module: parameter broadcast at start and bucketed
// gradient averaging after each backward pass.
//
// Note [Gradient buckets]
// As PyTorch DDP does, parameters are grouped into buckets in reverse
// registration order (roughly the order backward produces their gradients):
// the first bucket holds about 1 MiB, later ones about --bucket-mb. Each
// bucket is one flat buffer: gradients are copied in (an undefined gradient
// as zeros, so every rank issues the same calls with the same sizes), scaled
// by 1/world, summed by one allreduce, and copied back. Buckets are reduced in
// the same fixed order on every rank. Unlike DDP, the reduction starts only
// after backward has finished (synchronize_gradients): communication is not yet
// overlapped with backward, so the bucket order only fixes the call sequence.
// It lives in comm/ beside the communicator (as c10d's Reducer beside its
// process group): data parallelism is communication, used by train/ and gen/.
//
// Note [BatchNorm under data parallelism]
// BatchNorm uses each rank's local batch statistics in training. The running
// buffers may drift apart across ranks; rank 0's are the reference and are
// broadcast to every rank before each evaluation and each checkpoint, so
// evaluations and checkpoints see one model. Only rank 0's buffers reach a
// checkpoint; the parameters are identical on every rank by construction.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <vector>

#include "kr/comm/communicator.hpp"

namespace kr::comm {

class DataParallel {
 public:
  DataParallel(Communicator& comm, torch::nn::Module& module, double bucket_mb = 25.0,
               double first_bucket_mb = 1.0);

  void broadcast_parameters();  // parameters and buffers from rank 0
  void broadcast_buffers();     // buffers only (BatchNorm running statistics)
  void synchronize_gradients();

  std::size_t bucket_count() const { return buckets_.size(); }
  std::vector<std::int64_t> bucket_sizes() const;  // elements per bucket

 private:
  struct Bucket {
    std::vector<at::Tensor> parameters;
    at::Tensor flat;
  };
  Communicator& comm_;
  torch::nn::Module& module_;
  std::vector<Bucket> buckets_;
};

}  // namespace kr::comm
