#include "kr/gen/regenerate.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "kr/core/clock.hpp"
#include "kr/data/augment.hpp"
#include "kr/gen/sampler.hpp"

namespace kr::gen {

io::Shard sample_block(Sampler& sampler, const Labeller& teacher, std::int64_t first,
                       std::int64_t n, std::uint64_t seed, std::int64_t sample_batch,
                       RegenerationTimers& timers) {
  auto t0 = Clock::now();
  io::Shard shard;
  shard.images = sample_range(sampler, first, n, seed, sample_batch);
  shard.labels = classes_of_range(first, n, sampler.spec().classes);
  timers.sampling += seconds_since(t0);
  if (teacher) {
    auto t1 = Clock::now();
    std::vector<at::Tensor> logits;
    for (std::int64_t i = 0; i < n; i += 500)
      logits.push_back(
          teacher(data::to_float(shard.images.narrow(0, i, std::min<std::int64_t>(500, n - i)))));
    shard.teacher_logits = torch::cat(logits).contiguous();
    timers.teacher += seconds_since(t1);
  }
  return shard;
}

}  // namespace kr::gen
