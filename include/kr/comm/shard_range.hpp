// Which part of `count` items a rank owns: evaluation slices, sampling blocks.
#pragma once

#include <cstdint>

namespace kr::comm {

// The disjoint slice [begin, end) of `count` items that rank `rank` of `world` owns;
// the slices of all ranks tile [0, count), their sizes differ by at most one.
struct Range {
  std::int64_t begin = 0;
  std::int64_t end = 0;
};

inline Range shard_range(std::int64_t count, int rank, int world) {
  return Range{count * rank / world, count * (rank + 1) / world};
}

}  // namespace kr::comm
