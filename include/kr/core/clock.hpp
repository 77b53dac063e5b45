// The monotonic clock every step times itself with.
#pragma once

#include <chrono>

namespace kr {

using Clock = std::chrono::steady_clock;

// Seconds from `start` to now.
inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace kr
