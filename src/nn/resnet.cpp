#include "kr/nn/resnet.hpp"

#include <torch/torch.h>

namespace kr::nn {

namespace {
torch::nn::Conv2dOptions conv3x3(std::int64_t in, std::int64_t out, std::int64_t stride) {
  return torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false);
}
}  // namespace

BasicBlockImpl::BasicBlockImpl(std::int64_t in, std::int64_t out, std::int64_t stride) {
  conv1 = register_module("conv1", torch::nn::Conv2d(conv3x3(in, out, stride)));
  bn1 = register_module("bn1", torch::nn::BatchNorm2d(out));
  conv2 = register_module("conv2", torch::nn::Conv2d(conv3x3(out, out, 1)));
  bn2 = register_module("bn2", torch::nn::BatchNorm2d(out));
  shortcut = register_module("shortcut", torch::nn::Sequential());
  if (stride != 1 || in != out) {
    shortcut->push_back(
        torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
    shortcut->push_back(torch::nn::BatchNorm2d(out));
  }
}

at::Tensor BasicBlockImpl::forward(const at::Tensor& x) {
  auto y = torch::relu(bn1(conv1(x)));
  y = bn2(conv2(y));
  y = y + (shortcut->is_empty() ? x : shortcut->forward(x));
  return torch::relu(y);
}

ResNet20Impl::ResNet20Impl(const ResNetShape& shape) : shape_(shape) {
  const auto w = shape.width;
  stem = register_module("stem", torch::nn::Conv2d(conv3x3(shape.channels, w, 1)));
  stem_bn = register_module("stem_bn", torch::nn::BatchNorm2d(w));
  stages = register_module("stages", torch::nn::Sequential());
  std::int64_t in = w;
  for (int stage = 0; stage < 3; ++stage) {
    const std::int64_t out = w << stage;
    for (int block = 0; block < 3; ++block) {
      const std::int64_t stride = (stage > 0 && block == 0) ? 2 : 1;
      stages->push_back(BasicBlock(in, out, stride));
      in = out;
    }
  }
  head = register_module("head", torch::nn::Linear(4 * w, shape.classes));
  // He initialisation for convolutions, as the reference CIFAR ResNets do.
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* conv = module->as<torch::nn::Conv2d>()) {
      torch::nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
    }
  }
}

at::Tensor ResNet20Impl::features(const at::Tensor& x) {
  auto y = torch::relu(stem_bn(stem(x)));
  y = stages->forward(y);
  return y.mean({2, 3});
}

at::Tensor ResNet20Impl::classify(const at::Tensor& features) {
  return head(features);
}

at::Tensor ResNet20Impl::forward(const at::Tensor& x) {
  return head(features(x));
}

std::int64_t parameter_count(torch::nn::Module& module) {
  std::int64_t count = 0;
  for (const auto& parameter : module.parameters()) count += parameter.numel();
  return count;
}

double resnet20_forward_flops(const ResNetShape& shape) {
  const double w = static_cast<double>(shape.width);
  double h = static_cast<double>(shape.height);
  double v = static_cast<double>(shape.image_width);
  double macs = 9.0 * shape.channels * w * h * v;  // stem
  double in = w;
  for (int stage = 0; stage < 3; ++stage) {
    const double out = w * (1 << stage);
    for (int block = 0; block < 3; ++block) {
      if (stage > 0 && block == 0) {
        h = std::ceil(h / 2);
        v = std::ceil(v / 2);
        macs += in * out * h * v;  // 1x1 projection shortcut
      }
      macs += 9.0 * in * out * h * v + 9.0 * out * out * h * v;
      in = out;
    }
  }
  macs += 4.0 * w * shape.classes;
  return 2.0 * macs;
}

void to_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& parameter : module.parameters()) {
    if (parameter.dim() == 4)
      parameter.set_data(parameter.data().contiguous(at::MemoryFormat::ChannelsLast));
  }
}

}  // namespace kr::nn
