// The inference fast path of resnet20 (Note [Inference fast path]): every BatchNorm
// folded into the convolution before it, weights in channels-last, forward passes
// under c10::InferenceMode. For every forward pass that needs no gradient: teacher
// labelling, evaluation, the audit's logits, generator-quality features.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kr/nn/resnet.hpp"

namespace kr::nn {

// Arithmetic of the folded network's convolutions (Note [Inference precision]).
enum class Precision { fp32, bf16 };

// Whether this CPU multiplies bfloat16 natively (AVX512_BF16 or AMX-BF16).
bool native_bf16();
// "fp32", "bf16" or "auto" (bf16 where native_bf16(), else fp32); a UsageError
// naming the option `what` for any other name, or for bf16 on a CPU without it.
Precision parse_precision(const std::string& name, const std::string& what);
const char* precision_name(Precision precision);

class InferenceResNet {
 public:
  InferenceResNet() = default;
  // A snapshot of `trained` as its eval mode computes it (running statistics); later
  // changes to `trained` are not seen: fold again after training. NHWC weights when
  // `channels_last`.
  InferenceResNet(ResNet20Impl& trained, bool channels_last);

  bool empty() const { return blocks_.empty(); }
  bool channels_last() const { return channels_last_; }
  Precision precision() const { return precision_; }
  // The same folded network computing in `precision` (weights rounded once from the
  // float32 fold). bf16 is refused on a CPU without native_bf16(): oneDNN would
  // emulate it, slower than float32.
  InferenceResNet with_precision(Precision precision) const;

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
  Precision precision_ = Precision::fp32;
};

}  // namespace kr::nn
