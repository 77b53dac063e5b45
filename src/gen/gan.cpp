#include "kr/gen/gan.hpp"

#include <torch/torch.h>

#include <stdexcept>

#include "kr/core/error.hpp"
#include "kr/nn/grad_sample.hpp"
#include "kr/nn/upsample.hpp"

namespace kr::gen {

namespace F = torch::nn::functional;

ConditionalNormImpl::ConditionalNormImpl(std::int64_t channels, std::int64_t cond_dim)
    : channels_(channels) {
  norm = register_module(
      "norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(8, channels).affine(false)));
  affine = register_module("affine", torch::nn::Linear(cond_dim, 2 * channels));
  torch::NoGradGuard no_grad;
  affine->weight.mul_(0.1);  // start close to the identity
  affine->bias.zero_();
}

at::Tensor ConditionalNormImpl::forward(const at::Tensor& x, const at::Tensor& cond) {
  auto params = affine->forward(cond).view({-1, 2 * channels_, 1, 1});
  auto gamma = params.narrow(1, 0, channels_);
  auto beta = params.narrow(1, channels_, channels_);
  return norm->forward(x) * (1 + gamma) + beta;
}

GanGeneratorImpl::GanGeneratorImpl(const GeneratorSpec& spec) : spec_(spec) {
  if (spec.height % 4 != 0 || spec.width % 4 != 0)
    throw UsageError("gan: image height and width must be multiples of 4, got " +
                     std::to_string(spec.height) + "x" + std::to_string(spec.width));
  const std::int64_t c = spec.g_width;
  if (c % 8 != 0) throw UsageError("gan: --g-width must be a multiple of 8");
  const std::int64_t cond = spec.latent + 64;
  embed = register_module("embed", torch::nn::Embedding(spec.classes, 64));
  fc = register_module("fc", torch::nn::Linear(cond, 4 * c * (spec.height / 4) * (spec.width / 4)));
  norm0 = register_module("norm0", ConditionalNorm(4 * c, cond));
  conv1 = register_module("conv1",
                          torch::nn::Conv2d(torch::nn::Conv2dOptions(4 * c, 2 * c, 3).padding(1)));
  norm1 = register_module("norm1", ConditionalNorm(2 * c, cond));
  conv2 =
      register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(2 * c, c, 3).padding(1)));
  norm2 = register_module("norm2", ConditionalNorm(c, cond));
  out = register_module(
      "out", torch::nn::Conv2d(torch::nn::Conv2dOptions(c, spec.channels, 3).padding(1)));
}

at::Tensor GanGeneratorImpl::forward(const at::Tensor& z, const at::Tensor& labels) {
  const std::int64_t c = spec_.g_width;
  auto cond = torch::cat({z, embed->forward(labels)}, 1);
  auto h = fc->forward(cond).view({-1, 4 * c, spec_.height / 4, spec_.width / 4});
  // Each conv reads a nearest 2x upsampling of h, computed at h's resolution:
  // Note [Sub-pixel upsampling convolution].
  h = torch::relu(norm0->forward(h, cond));
  h = nn::upsample2x_conv3x3(h, conv1->weight, conv1->bias);
  h = torch::relu(norm1->forward(h, cond));
  h = nn::upsample2x_conv3x3(h, conv2->weight, conv2->bias);
  h = torch::relu(norm2->forward(h, cond));
  return torch::tanh(out->forward(h));
}

SpectralConvImpl::SpectralConvImpl(std::int64_t in, std::int64_t out, std::int64_t kernel,
                                   std::int64_t stride)
    : stride_(stride), padding_(kernel / 2), linear_(kernel == 0) {
  const auto fan_in = static_cast<double>(in * std::max<std::int64_t>(1, kernel * kernel));
  const double bound = 1.0 / std::sqrt(fan_in);
  auto shape = linear_ ? std::vector<std::int64_t>{out, in}
                       : std::vector<std::int64_t>{out, in, kernel, kernel};
  weight_ = register_parameter("weight", torch::empty(shape).uniform_(-bound, bound));
  bias_ = register_parameter("bias", torch::zeros({out}));
  u_ = register_buffer("u", F::normalize(torch::randn({out}), F::NormalizeFuncOptions().dim(0)));
}

SpectralConvImpl::Normalized SpectralConvImpl::normalize() {
  auto matrix = weight_.view({weight_.size(0), -1});
  at::Tensor u;
  at::Tensor v;
  {
    torch::NoGradGuard no_grad;
    v = F::normalize(torch::mv(matrix.t(), u_), F::NormalizeFuncOptions().dim(0).eps(1e-12));
    u = F::normalize(torch::mv(matrix, v), F::NormalizeFuncOptions().dim(0).eps(1e-12));
    if (is_training()) u_.copy_(u);
  }
  const auto sigma = torch::dot(u, torch::mv(matrix, v));
  return Normalized{weight_ / sigma, u, v, sigma};
}

at::Tensor SpectralConvImpl::normalized_weight() {
  return normalize().weight;
}

at::Tensor SpectralConvImpl::forward(const at::Tensor& x) {
  auto normalized = normalize();
  const auto weight = normalized.weight;
  if (const auto* recorder = nn::grad_sample::active()) {
    if (recorder != recorder_) recorded_.clear();
    recorder_ = recorder;
    recorded_.push_back(std::move(normalized));
  }
  if (linear_) return nn::grad_sample::linear(x, weight, bias_);
  return nn::grad_sample::conv2d(x, weight, bias_, stride_, padding_);
}

std::pair<at::Tensor, at::Tensor> SpectralConvImpl::per_sample(
    nn::grad_sample::Recorder& recorder) {
  if (recorded_.empty() || recorder_ != &recorder)
    throw std::logic_error("SpectralConv::per_sample: no forward ran under this recorder");
  torch::NoGradGuard no_grad;
  const auto rows = weight_.size(0);
  const auto w = weight_.detach().reshape({1, rows, -1});
  at::Tensor weight_grads;
  for (const auto& normalized : recorded_) {
    const auto g = recorder.take(normalized.weight);
    if (!g.defined())
      throw std::logic_error("SpectralConv::per_sample: a recorded forward had no backward");
    const auto batch = g.size(0);
    const auto g3 = g.reshape({batch, rows, -1});
    const auto sigma = normalized.sigma.detach().item<double>();
    const auto inner = (g3 * w).sum({1, 2}).view({batch, 1, 1});
    const auto uv = torch::outer(normalized.u, normalized.v).unsqueeze(0);
    const auto mapped = g3 / sigma - inner * uv / (sigma * sigma);
    weight_grads = weight_grads.defined() ? weight_grads + mapped : mapped;
  }
  recorded_.clear();
  recorder_ = nullptr;
  std::vector<std::int64_t> shape{weight_grads.size(0)};
  for (auto d : weight_.sizes()) shape.push_back(d);
  return {weight_grads.reshape(shape), recorder.of(bias_)};
}

GanDiscriminatorImpl::GanDiscriminatorImpl(const GeneratorSpec& spec) {
  const std::int64_t c = spec.d_width;
  convs = register_module("convs", torch::nn::ModuleList());
  convs->push_back(SpectralConv(spec.channels, c, 3, 1));
  convs->push_back(SpectralConv(c, 2 * c, 3, 2));
  convs->push_back(SpectralConv(2 * c, 2 * c, 3, 1));
  convs->push_back(SpectralConv(2 * c, 4 * c, 3, 2));
  convs->push_back(SpectralConv(4 * c, 4 * c, 3, 1));
  head = register_module("head", SpectralConv(4 * c, 1, 0, 1));
  projection = register_module("projection", torch::nn::Embedding(spec.classes, 4 * c));
  torch::NoGradGuard no_grad;
  projection->weight.uniform_(-0.1, 0.1);
}

at::Tensor GanDiscriminatorImpl::forward(const at::Tensor& images, const at::Tensor& labels) {
  auto h = images;
  for (const auto& layer : *convs) {
    h = F::leaky_relu(layer->as<SpectralConv>()->forward(h),
                      F::LeakyReLUFuncOptions().negative_slope(0.2));
  }
  auto pooled = h.sum({2, 3});
  auto score = head->forward(pooled).squeeze(1);
  return score + (nn::grad_sample::embedding(labels, projection->weight) * pooled).sum(1);
}

std::vector<at::Tensor> GanDiscriminatorImpl::per_sample(nn::grad_sample::Recorder& recorder) {
  std::vector<at::Tensor> out;
  auto add = [&](SpectralConvImpl& layer) {
    auto [weight, bias] = layer.per_sample(recorder);
    out.push_back(std::move(weight));
    out.push_back(std::move(bias));
  };
  for (const auto& layer : *convs) add(*layer->as<SpectralConv>());
  add(*head);
  out.push_back(recorder.of(projection->weight));
  return out;
}

}  // namespace kr::gen
