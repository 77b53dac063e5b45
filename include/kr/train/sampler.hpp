// Distributed sampler: one permutation per epoch, every rank takes its slice of
// each global batch.
//
// Note [Global batches]
// A global batch of B indices is cut into `world` equal, contiguous slices; rank r
// takes slice r. The union over ranks of one step is exactly the batch a one-rank
// run with batch B takes at that step, which (with gradient averaging) makes
// N ranks x B/N follow the 1 rank x B trajectory. Incomplete final batches are
// dropped so every rank takes the same number of steps.
#pragma once

#include <cstdint>
#include <vector>

namespace kr::train {

class DistributedSampler {
 public:
  DistributedSampler(std::int64_t dataset_size, std::int64_t global_batch, int rank, int world,
                     std::uint64_t seed);
  std::int64_t steps_per_epoch() const { return dataset_size_ / global_batch_; }
  std::int64_t local_batch() const { return global_batch_ / world_; }
  std::int64_t global_batch() const { return global_batch_; }
  // The permutation of epoch `epoch` (seeded by (seed, epoch)).
  const std::vector<std::int64_t>& permutation(std::int64_t epoch);
  std::vector<std::int64_t> global_indices(std::int64_t epoch, std::int64_t step);
  std::vector<std::int64_t> local_indices(std::int64_t epoch, std::int64_t step);

 private:
  std::int64_t dataset_size_;
  std::int64_t global_batch_;
  int rank_;
  int world_;
  std::uint64_t seed_;
  std::int64_t cached_epoch_ = -1;
  std::vector<std::int64_t> permutation_;
};

}  // namespace kr::train
