// The inference fast path of resnet20 (Note [Inference fast path]): every BatchNorm
// folded into the convolution before it, weights in channels-last, forward passes
// under c10::InferenceMode. For every forward pass that needs no gradient: teacher
// labelling, evaluation, the audit's logits, generator-quality features.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "kr/nn/resnet.hpp"

namespace kr::nn {

class InferenceResNet {
 public:
  InferenceResNet() = default;
  // A snapshot of `trained` as its eval mode computes it (running statistics); later
  // changes to `trained` are not seen: fold again after training. NHWC weights when
  // `channels_last`.
  InferenceResNet(ResNet20Impl& trained, bool channels_last);

  bool empty() const { return blocks_.empty(); }
  bool channels_last() const { return channels_last_; }

  // Each returns an ordinary tensor (not an inference tensor), so it may be used
  // as a target in a loss that is differentiated.
  at::Tensor forward(const at::Tensor& images) const;     // logits (B, K)
  at::Tensor features(const at::Tensor& images) const;    // penultimate (B, 4w)
  at::Tensor classify(const at::Tensor& features) const;  // the linear head

 private:
  struct Conv {
    at::Tensor weight, bias;
    std::int64_t stride = 1, padding = 0;
  };
  struct Block {
    Conv conv1, conv2, shortcut;  // shortcut.weight undefined for identity
  };
  Conv fold(torch::nn::Conv2dImpl& conv, torch::nn::BatchNorm2dImpl& bn) const;
  at::Tensor features_block(const at::Tensor& images) const;
  at::Tensor features_inference(const at::Tensor& images) const;
  static at::Tensor apply(const Conv& conv, const at::Tensor& x);

  Conv stem_;
  std::vector<Block> blocks_;
  at::Tensor head_weight_, head_bias_;
  bool channels_last_ = false;
};

}  // namespace kr::nn
