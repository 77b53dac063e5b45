// The class-conditional epsilon-prediction UNet of ARCHITECTURES.md "unet"
// (795,105 parameters for C=1, K=10, c=32) and its diffusion schedule.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <vector>

#include "kr/gen/spec.hpp"

namespace kr::gen {

class ResidualBlockImpl : public torch::nn::Module {
 public:
  ResidualBlockImpl(std::int64_t in, std::int64_t out, std::int64_t embedding);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& embedding);

 private:
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, skip{nullptr};
  torch::nn::Linear project{nullptr};
};
TORCH_MODULE(ResidualBlock);

class SelfAttentionImpl : public torch::nn::Module {
 public:
  explicit SelfAttentionImpl(std::int64_t channels);
  at::Tensor forward(const at::Tensor& x);

 private:
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d qkv{nullptr}, out{nullptr};
};
TORCH_MODULE(SelfAttention);

class UNetImpl : public torch::nn::Module {
 public:
  explicit UNetImpl(const GeneratorSpec& spec);
  // x (B, C, H, W), t int64 (B) in [0, T), labels int64 (B) in [0, K] (K: null) -> eps
  at::Tensor forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& labels);

 private:
  std::int64_t width_;
  torch::nn::Linear time1{nullptr}, time2{nullptr};
  torch::nn::Embedding class_embed{nullptr};
  torch::nn::Conv2d conv_in{nullptr};
  torch::nn::ModuleList encoder{nullptr}, downs{nullptr}, decoder{nullptr}, ups{nullptr};
  ResidualBlock mid1{nullptr}, mid2{nullptr};
  SelfAttention attention{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
  torch::nn::Conv2d conv_out{nullptr};
};
TORCH_MODULE(UNet);

// alpha-bar_t for t = 0..T-1 (float64): linear betas 1e-4..0.02, or the cosine
// schedule of Nichol and Dhariwal (2021).
at::Tensor alphas_cumprod(const std::string& schedule, std::int64_t timesteps);

// DDIM (eta = 0) timesteps, descending, `steps` of them spread over [0, T).
std::vector<std::int64_t> ddim_timesteps(std::int64_t timesteps, std::int64_t steps);

}  // namespace kr::gen
