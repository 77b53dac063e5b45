// A 3x3 convolution of a 2x nearest-neighbour upsampled image, computed on the
// low-resolution image (the UNet's and the GAN generator's upsampling layers).
//
// Note [Sub-pixel upsampling convolution]
// conv3x3(pad 1)(upsample2x(x)) reads every input pixel through 9 taps, but an
// output pixel at (2i + a, 2j + b) sees only rows i-1..i (a = 0) or i..i+1 (a = 1)
// of x, and likewise for columns: along each axis the taps (w0, w1, w2) fold to
// (w0, w1 + w2) for a = 0 and (w0 + w1, w2) for a = 1. So the layer is four 2x2
// convolutions of x, one per output phase (a, b), interleaved: 4 multiply-adds
// per output pixel and channel pair instead of 9, and no upsampled tensor. The
// four phases run as one convolution with 4x the output channels over x padded
// by 1, which gives (h+1) x (w+1) positions per phase; phase (a, b) keeps rows
// a..a+h-1 and columns b..b+w-1, and the interleaving is one strided view plus
// one copy (cost 4 (h+1)(w+1) / 9hw of the direct layer: 0.51x at 14 -> 28
// pixels). The weights stay the direct layer's 3x3 kernel: same parameters,
// checkpoints and gradients up to float rounding (unit-tested forward and
// backward). The same rewrite replaces transposed convolutions.
// Measured, 3 interleaved runs each (kr bench, 2 ranks x 1 thread, tools/bench-generators
// layouts): UNet c=32 training 1.09x, c=64 1.10x; GAN w16 training 1.19x,
// sampling 1.44x. Slicing the four phases separately was 2x slower than the direct
// layer: each slice's backward allocates and sums a full-size zero gradient.
#pragma once

#include <ATen/core/Tensor.h>

namespace kr::nn {

// x (B, I, h, w), weight (O, I, 3, 3), bias (O) or undefined -> (B, O, 2h, 2w), equal to
// conv2d(interpolate(x, scale 2, nearest), weight, bias, padding 1).
at::Tensor upsample2x_conv3x3(const at::Tensor& x, const at::Tensor& weight,
                              const at::Tensor& bias);

}  // namespace kr::nn
