#include "kr/nn/upsample.hpp"

#include <torch/torch.h>

#include "kr/core/error.hpp"

namespace kr::nn {

namespace {

// fold[a] (2 x 3): the taps of phase a along one axis, Note [Sub-pixel upsampling convolution].
at::Tensor fold_matrix(const at::Tensor& like) {
  return torch::tensor({1.f, 0.f, 0.f, 0.f, 1.f, 1.f, 1.f, 1.f, 0.f, 0.f, 0.f, 1.f},
                       like.options().requires_grad(false))
      .view({2, 2, 3});
}

}  // namespace

at::Tensor upsample2x_conv3x3(const at::Tensor& x, const at::Tensor& weight,
                              const at::Tensor& bias) {
  if (x.dim() != 4 || weight.dim() != 4 || weight.size(2) != 3 || weight.size(3) != 3 ||
      weight.size(1) != x.size(1))
    throw Error("upsample2x_conv3x3: input " + std::to_string(x.dim()) + "-d with " +
                std::to_string(x.size(1)) + " channels does not fit weight " +
                std::to_string(weight.size(0)) + "x" + std::to_string(weight.size(1)) + "x" +
                std::to_string(weight.size(2)) + "x" + std::to_string(weight.size(3)));
  const auto out = weight.size(0);
  const auto in = weight.size(1);
  const auto h = x.size(2);
  const auto w = x.size(3);
  const auto fold = fold_matrix(weight);
  // phases[o, a, b, i, p, q] = sum_{y, x} fold[a, p, y] fold[b, q, x] weight[o, i, y, x]
  auto phases =
      torch::einsum("apy,bqx,oiyx->oabipq", {fold, fold, weight}).reshape({out * 4, in, 2, 2});
  auto phase_bias = bias.defined() ? bias.repeat_interleave(4) : at::Tensor();
  // Output channel o * 4 + 2a + b is phase (a, b) of channel o, at (h+1) x (w+1) positions.
  // Stride, padding and dilation spelled out per axis: LibTorch's profiler counts the FLOPs of a
  // conv2d only then (Note [Counting FLOPs]).
  auto all = torch::conv2d(torch::constant_pad_nd(x, {1, 1, 1, 1}), phases, phase_bias,
                           at::IntArrayRef{1, 1}, at::IntArrayRef{0, 0}, at::IntArrayRef{1, 1})
                 .contiguous();
  // kept[n, o, i, a, j, b] = all[n, o * 4 + 2a + b, i + a, j + b]: one strided view (the
  // offsets are linear in the indices), so autograd sees a single gather, not 16 slices.
  const auto row = w + 1;
  const auto plane = (h + 1) * row;
  auto kept = all.as_strided({x.size(0), out, h, 2, w, 2},
                             {out * 4 * plane, 4 * plane, row, 2 * plane + row, 1, plane + 1});
  return kept.reshape({x.size(0), out, 2 * h, 2 * w});
}

}  // namespace kr::nn
