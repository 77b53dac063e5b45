// resnet20: He et al. 2016 CIFAR ResNet-20 of width w (ARCHITECTURES.md).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>

namespace kr::nn {

class InferenceResNet;

struct ResNetShape {
  std::int64_t channels = 1;
  std::int64_t classes = 10;
  std::int64_t width = 16;
  std::int64_t height = 28;  // only for FLOP counts
  std::int64_t image_width = 28;
};

class BasicBlockImpl : public torch::nn::Module {
 public:
  BasicBlockImpl(std::int64_t in, std::int64_t out, std::int64_t stride);
  at::Tensor forward(const at::Tensor& x);

 private:
  friend class InferenceResNet;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential shortcut{nullptr};  // empty for identity
};
TORCH_MODULE(BasicBlock);

class ResNet20Impl : public torch::nn::Module {
 public:
  explicit ResNet20Impl(const ResNetShape& shape);
  at::Tensor forward(const at::Tensor& x);          // logits (B, K)
  at::Tensor features(const at::Tensor& x);         // penultimate, (B, 4w)
  at::Tensor classify(const at::Tensor& features);  // the linear head
  const ResNetShape& shape() const { return shape_; }

 private:
  friend class InferenceResNet;
  ResNetShape shape_;
  torch::nn::Conv2d stem{nullptr};
  torch::nn::BatchNorm2d stem_bn{nullptr};
  torch::nn::Sequential stages{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(ResNet20);

std::int64_t parameter_count(torch::nn::Module& module);

// Multiply-adds x 2 of one forward pass for one image (convolutions and the head).
double resnet20_forward_flops(const ResNetShape& shape);

// Whether NHWC convolutions pay at this width (oneDNN's blocked kernels want
// channel counts divisible by 8; narrower nets stay NCHW).
inline bool channels_last_suits(const ResNetShape& shape) {
  return shape.width % 8 == 0;
}

// Parameters and buffers to channels-last (NHWC) memory format, in place.
void to_channels_last(torch::nn::Module& module);

}  // namespace kr::nn
