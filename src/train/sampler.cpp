#include "kr/train/sampler.hpp"

#include <numeric>

#include "kr/core/error.hpp"
#include "kr/core/keyed_rng.hpp"

namespace kr::train {

DistributedSampler::DistributedSampler(std::int64_t dataset_size, std::int64_t global_batch,
                                       int rank, int world, std::uint64_t seed)
    : dataset_size_(dataset_size),
      global_batch_(global_batch),
      rank_(rank),
      world_(world),
      seed_(seed) {
  if (global_batch <= 0 || global_batch % world != 0) {
    throw UsageError("--batch " + std::to_string(global_batch) +
                     " must be a positive multiple of the " + std::to_string(world) + " ranks");
  }
  if (dataset_size < global_batch) {
    throw UsageError("--batch " + std::to_string(global_batch) + " exceeds the " +
                     std::to_string(dataset_size) + " training images");
  }
}

const std::vector<std::int64_t>& DistributedSampler::permutation(std::int64_t epoch) {
  if (epoch == cached_epoch_) return permutation_;
  permutation_.resize(static_cast<std::size_t>(dataset_size_));
  std::iota(permutation_.begin(), permutation_.end(), std::int64_t{0});
  KeyedRng rng(stream_key(seed_, Purpose::shuffle, static_cast<std::uint64_t>(epoch), 0));
  for (std::size_t i = permutation_.size(); i > 1; --i)
    std::swap(permutation_[i - 1], permutation_[rng.below(i)]);
  cached_epoch_ = epoch;
  return permutation_;
}

std::vector<std::int64_t> DistributedSampler::global_indices(std::int64_t epoch,
                                                             std::int64_t step) {
  if (step < 0 || step >= steps_per_epoch())
    throw Error("sampler: step " + std::to_string(step) + " out of range");
  const auto& order = permutation(epoch);
  const auto begin = order.begin() + step * global_batch_;
  return std::vector<std::int64_t>(begin, begin + global_batch_);
}

std::vector<std::int64_t> DistributedSampler::local_indices(std::int64_t epoch, std::int64_t step) {
  auto global = global_indices(epoch, step);
  const auto local = local_batch();
  return std::vector<std::int64_t>(global.begin() + rank_ * local,
                                   global.begin() + (rank_ + 1) * local);
}

}  // namespace kr::train
