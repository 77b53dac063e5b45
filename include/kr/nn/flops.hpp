// Floating-point operations counted by LibTorch's own profiler.
//
// Note [Counting FLOPs]
// count_flops() runs a function under the legacy profiler with FLOP counting
// on and sums what it reports: 2 x multiply-adds for aten::conv2d and the
// matrix products (mm, addmm, bmm, baddbmm), one per element for aten::add
// and aten::mul. Backward kernels are not counted, so a training step's
// figure is 3 x the forward count by the usual convention; normalisation,
// activations and softmax count nothing. For resnet20 the count agrees with
// the analytic resnet20_forward_flops() (unit-tested).
#pragma once

#include <cstdint>
#include <functional>

namespace kr::nn {

std::uint64_t count_flops(const std::function<void()>& work);

}  // namespace kr::nn
