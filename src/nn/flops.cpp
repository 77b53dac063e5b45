#include "kr/nn/flops.hpp"

#include <torch/csrc/autograd/profiler_legacy.h>

namespace kr::nn {

std::uint64_t count_flops(const std::function<void()>& work) {
  namespace profiler = torch::autograd::profiler;
  using torch::profiler::impl::ProfilerConfig;
  using torch::profiler::impl::ProfilerState;
  profiler::enableProfilerLegacy(ProfilerConfig(ProfilerState::CPU, /*report_input_shapes=*/true,
                                                /*profile_memory=*/false, /*with_stack=*/false,
                                                /*with_flops=*/true));
  try {
    work();
  } catch (...) {
    profiler::disableProfilerLegacy();
    throw;
  }
  std::uint64_t total = 0;
  auto events = profiler::disableProfilerLegacy();
  for (auto& thread_events : events)
    for (auto& event : thread_events) total += event.flops();  // flops() is not const
  return total;
}

}  // namespace kr::nn
