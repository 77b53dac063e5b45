// The class-conditional GAN (docs/ARCHITECTURE.md "gan"): a generator without
// batch statistics (class-conditional GroupNorm, so an image depends on its own
// latent only) and a projection discriminator with spectral normalisation.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "kr/gen/spec.hpp"

namespace kr::nn::grad_sample {
class Recorder;
}

namespace kr::gen {

// GroupNorm without affine parameters, then a per-sample gain and bias computed
// from the conditioning vector: x * (1 + gamma(cond)) + beta(cond).
class ConditionalNormImpl : public torch::nn::Module {
 public:
  ConditionalNormImpl(std::int64_t channels, std::int64_t cond_dim);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cond);

 private:
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Linear affine{nullptr};
  std::int64_t channels_;
};
TORCH_MODULE(ConditionalNorm);

class GanGeneratorImpl : public torch::nn::Module {
 public:
  explicit GanGeneratorImpl(const GeneratorSpec& spec);
  // z (B, latent), labels int64 (B) -> images (B, C, H, W) in [-1, 1]
  at::Tensor forward(const at::Tensor& z, const at::Tensor& labels);

 private:
  GeneratorSpec spec_;
  torch::nn::Embedding embed{nullptr};
  torch::nn::Linear fc{nullptr};
  ConditionalNorm norm0{nullptr}, norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, out{nullptr};
};
TORCH_MODULE(GanGenerator);

// Convolution or linear map whose weight is divided by its largest singular
// value, estimated by one power iteration per training forward (Miyato et al. 2018).
//
// Note [Spectral per-sample gradients]
// For DP-SGD the layer runs through nn::grad_sample, which records the per-sample
// gradients G_b of the normalised weight W~ = W / sigma. The power iteration's u and v
// are constants of the forward (no gradient flows through them, as in PyTorch's
// spectral_norm), so sigma = u^T W v has d sigma / dW = u v^T and the chain rule gives
// each sample's gradient of the stored W:
//   dW_b = G_b / sigma - (<G_b, W> / sigma^2) u v^T,
// with W and G_b viewed as (out, in k k) matrices. per_sample() maps them so, summed over
// every forward run under the recorder; the bias is used as is.
class SpectralConvImpl : public torch::nn::Module {
 public:
  // kernel 0: a linear map (x of shape (B, in)); else a 'same'-padded convolution.
  SpectralConvImpl(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor normalized_weight();
  // After the backward of a forward run under a grad_sample::RecordScope: the per-sample
  // gradients (B, ...) of weight and bias (Note [Spectral per-sample gradients]); the
  // recorder's entry for the normalised weight is taken out.
  std::pair<at::Tensor, at::Tensor> per_sample(nn::grad_sample::Recorder& recorder);

 private:
  struct Normalized {
    at::Tensor weight, u, v, sigma;
  };
  Normalized normalize();

  at::Tensor weight_, bias_, u_;
  // The forwards run under recorder_ since the last per_sample() (a loss may call the
  // layer more than once).
  std::vector<Normalized> recorded_;
  const nn::grad_sample::Recorder* recorder_ = nullptr;
  std::int64_t stride_, padding_;
  bool linear_;
};
TORCH_MODULE(SpectralConv);

class GanDiscriminatorImpl : public torch::nn::Module {
 public:
  explicit GanDiscriminatorImpl(const GeneratorSpec& spec);
  // images (B, C, H, W), labels (B) -> scores (B)
  at::Tensor forward(const at::Tensor& images, const at::Tensor& labels);
  // DP-SGD: after the backward of a forward run under a grad_sample::RecordScope, the
  // per-sample gradients of parameters(), in its order.
  std::vector<at::Tensor> per_sample(nn::grad_sample::Recorder& recorder);

 private:
  torch::nn::ModuleList convs{nullptr};
  SpectralConv head{nullptr};
  torch::nn::Embedding projection{nullptr};
};
TORCH_MODULE(GanDiscriminator);

}  // namespace kr::gen
