// Regeneration's per-block work (`kr generate`, Note [Synthetic pool]): one block
// of global sample indices sampled, labelled by the teacher, and for a filtered
// pool reduced to its confident candidates.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>

#include "kr/io/shard.hpp"

namespace kr::comm {
class Communicator;
}

namespace kr::gen {

class Sampler;

// Where a rank's regeneration time went (seconds), summed over its blocks.
struct RegenerationTimers {
  double sampling = 0.0;
  double teacher = 0.0;
  double io = 0.0;
};

// float images in [-1, 1] -> logits; empty: no teacher.
using Labeller = std::function<at::Tensor(const at::Tensor&)>;

// Global indices [first, first + n): images (sampled in batches of `sample_batch`,
// Note [Batch-independent sampling]), conditioning labels (i mod K) and, with a
// labeller, the teacher's logits (in chunks of 500).
io::Shard sample_block(Sampler& sampler, const Labeller& teacher, std::int64_t first,
                       std::int64_t n, std::uint64_t seed, std::int64_t sample_batch,
                       RegenerationTimers& timers);

// Images of global indices [first, first + count), as sample_range gives them, with the
// sample batches that cover them dealt to comm's ranks (batch b to rank b % size) and
// gathered: every rank returns all `count` images. Collective.
at::Tensor sample_range_dealt(comm::Communicator& comm, Sampler& sampler, std::int64_t first,
                              std::int64_t count, std::uint64_t seed, std::int64_t sample_batch);

}  // namespace kr::gen
