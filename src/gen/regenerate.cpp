#include "kr/gen/regenerate.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <vector>

#include "kr/comm/communicator.hpp"
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

at::Tensor sample_range_dealt(comm::Communicator& comm, Sampler& sampler, std::int64_t first,
                              std::int64_t count, std::uint64_t seed, std::int64_t sample_batch) {
  const auto& spec = sampler.spec();
  const std::int64_t begin = first / sample_batch * sample_batch;
  const std::int64_t batches = (first + count - begin + sample_batch - 1) / sample_batch;
  const int world = comm.size();
  const std::int64_t per_rank = (batches + world - 1) / world;
  auto mine = torch::zeros({per_rank * sample_batch, spec.channels, spec.height, spec.width},
                           torch::kUInt8);
  for (std::int64_t j = 0; j < per_rank; ++j) {
    const std::int64_t b = j * world + comm.rank();
    if (b >= batches) break;
    mine.narrow(0, j * sample_batch, sample_batch)
        .copy_(sample_range(sampler, begin + b * sample_batch, sample_batch, seed, sample_batch));
  }
  auto all = comm.allgather(mine);  // rank r's rows: batches j * world + r
  auto ordered =
      torch::empty({batches * sample_batch, spec.channels, spec.height, spec.width}, torch::kUInt8);
  for (std::int64_t b = 0; b < batches; ++b) {
    const std::int64_t r = b % world;
    const std::int64_t j = b / world;
    ordered.narrow(0, b * sample_batch, sample_batch)
        .copy_(all.narrow(0, (r * per_rank + j) * sample_batch, sample_batch));
  }
  return ordered.narrow(0, first - begin, count).contiguous();
}

}  // namespace kr::gen
