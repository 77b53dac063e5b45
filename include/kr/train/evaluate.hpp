// Sharded, unpadded evaluation: each rank scores a disjoint slice and the counts
// are summed, so 1-rank and N-rank accuracies are equal exactly.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>

#include "kr/comm/communicator.hpp"
#include "kr/data/image_set.hpp"

namespace kr::train {

struct EvalResult {
  std::int64_t correct = 0;
  std::int64_t count = 0;
  double loss_sum = 0.0;
  std::int64_t agree = 0;  // predictions equal to the reference's (when one was given)
  double accuracy() const { return count ? static_cast<double>(correct) / count : 0.0; }
  double agreement() const { return count ? static_cast<double>(agree) / count : 0.0; }
  double mean_loss() const { return count ? loss_sum / count : 0.0; }
};

using LogitsFn = std::function<at::Tensor(const at::Tensor&)>;

// Collective. `logits` is called under NoGradGuard on float batches in [-1, 1].
// `reference`, when defined, holds another model's predicted classes for this rank's
// rows (comm::shard_range of the set): their agreement is counted in the same pass.
EvalResult evaluate_classifier(comm::Communicator& comm, const LogitsFn& logits,
                               const data::ImageSet& set, std::int64_t batch,
                               const at::Tensor& reference = {});

}  // namespace kr::train
