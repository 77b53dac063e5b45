// Per-sample gradients for DP-SGD (issue 24), computed per layer from its input and its
// output gradient, as Opacus' grad samplers do (Note [Per-sample gradients]).
//
// Note [Per-sample gradients]
// DP-SGD clips each sample's gradient before summing, so it needs the gradient of every
// parameter for every sample of a batch, not only their sum. A layer here is an ordinary
// LibTorch op unless a Recorder is active on the thread (RecordScope); then it runs as an
// autograd function whose backward also writes, for each parameter it used, the (B, ...)
// per-sample gradients into the recorder:
// - linear: x (B, ..., I), output gradient g (B, ..., O): dW_b = sum g_b^T x_b, db_b = sum g_b;
// - conv2d: the input unfolded to (B, C k k, L): dW_b = g_b (O, L) x_unf_b^T, db_b = sum g_b;
// - embedding: dW_b is zero but for the rows sample b looked up, which get its g_b;
// - affine (the per-channel gain and bias after a normalisation, GroupNorm's affine):
//   dgamma_b = sum over positions of g_b x_hat_b, dbeta_b = sum g_b.
// Sample b is row b of the batch dimension; a parameter used twice in one forward has
// its per-sample gradients summed. The loss must be a sum over samples (a mean scales
// every per-sample gradient by 1/B). Normalisations over the batch (BatchNorm) mix
// samples and have no per-sample gradient: a DP step refuses models that hold one.
// The gradients of the inputs and the summed parameter gradients are those of the
// ordinary ops, so a recorded backward trains as an unrecorded one would.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace kr::nn::grad_sample {

class Recorder {
 public:
  // Adds per-sample gradients (B, parameter shape...) of `parameter`.
  void add(const at::Tensor& parameter, const at::Tensor& per_sample);
  // The recorded per-sample gradients of `parameter`, or an undefined tensor.
  at::Tensor of(const at::Tensor& parameter) const;
  // As of(), and the entry is removed (a layer that maps the gradients of a tensor it
  // computed, as spectral normalisation's W / sigma, onto its own parameter).
  at::Tensor take(const at::Tensor& parameter);
  // (B) float64: each sample's gradient norm over every recorded parameter.
  at::Tensor norms() const;
  std::int64_t batch() const { return batch_; }
  std::size_t parameters() const { return entries_.size(); }
  void clear();

 private:
  struct Entry {
    at::Tensor parameter;  // kept for its identity
    at::Tensor per_sample;
  };
  std::vector<Entry> entries_;
  std::int64_t batch_ = -1;
};

// While alive, the layers below record into `recorder` (this thread only).
class RecordScope {
 public:
  explicit RecordScope(Recorder& recorder);
  ~RecordScope();
  RecordScope(const RecordScope&) = delete;
  RecordScope& operator=(const RecordScope&) = delete;

 private:
  Recorder* previous_;
};
Recorder* active();

// x (B, ..., I), weight (O, I), bias (O) or undefined.
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);
// x (B, C, H, W), weight (O, C, kh, kw), bias (O) or undefined; groups 1, dilation 1.
at::Tensor conv2d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                  std::int64_t stride, std::int64_t padding);
// indices (B) int64, weight (V, D) -> (B, D).
at::Tensor embedding(const at::Tensor& indices, const at::Tensor& weight);
// x_hat (B, C, ...) times gamma (C) plus beta (C), per channel.
at::Tensor affine(const at::Tensor& x_hat, const at::Tensor& gamma, const at::Tensor& beta);
// GroupNorm without batch statistics: normalised per sample and group, then affine
// (weight and bias undefined: none).
at::Tensor group_norm(const at::Tensor& x, std::int64_t groups, const at::Tensor& weight,
                      const at::Tensor& bias, double eps = 1e-5);

}  // namespace kr::nn::grad_sample
