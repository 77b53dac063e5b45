#include "kr/gen/unet.hpp"

#include <torch/torch.h>

#include <cmath>

#include "kr/core/error.hpp"
#include "kr/nn/upsample.hpp"

namespace kr::gen {

namespace {
torch::nn::Conv2d conv3(std::int64_t in, std::int64_t out, std::int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1).stride(stride));
}
torch::nn::Conv2d conv1x1(std::int64_t in, std::int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1));
}
torch::nn::GroupNorm group_norm(std::int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(8, channels));
}
}  // namespace

ResidualBlockImpl::ResidualBlockImpl(std::int64_t in, std::int64_t out, std::int64_t embedding) {
  norm1 = register_module("norm1", group_norm(in));
  conv1 = register_module("conv1", conv3(in, out));
  project = register_module("project", torch::nn::Linear(embedding, out));
  norm2 = register_module("norm2", group_norm(out));
  conv2 = register_module("conv2", conv3(out, out));
  if (in != out) skip = register_module("skip", conv1x1(in, out));
}

at::Tensor ResidualBlockImpl::forward(const at::Tensor& x, const at::Tensor& embedding) {
  auto h = conv1->forward(torch::silu(norm1->forward(x)));
  h = h + project->forward(embedding).unsqueeze(-1).unsqueeze(-1);
  h = conv2->forward(torch::silu(norm2->forward(h)));
  return h + (skip ? skip->forward(x) : x);
}

SelfAttentionImpl::SelfAttentionImpl(std::int64_t channels) {
  norm = register_module("norm", group_norm(channels));
  qkv = register_module("qkv", conv1x1(channels, 3 * channels));
  out = register_module("out", conv1x1(channels, channels));
}

at::Tensor SelfAttentionImpl::forward(const at::Tensor& x) {
  const auto batch = x.size(0);
  const auto channels = x.size(1);
  const auto pixels = x.size(2) * x.size(3);
  auto parts = qkv->forward(norm->forward(x)).view({batch, 3, channels, pixels}).unbind(1);
  // softmax(q^T k / sqrt(ch)) over keys; output (B, ch, HW)
  auto weights = torch::softmax(
      torch::bmm(parts[0].transpose(1, 2), parts[1]) / std::sqrt(static_cast<double>(channels)),
      -1);
  auto attended = torch::bmm(parts[2], weights.transpose(1, 2)).view(x.sizes());
  return x + out->forward(attended);
}

UNetImpl::UNetImpl(const GeneratorSpec& spec) : width_(spec.unet_width) {
  const std::int64_t c = spec.unet_width;
  if (c % 8 != 0) throw UsageError("unet: --unet-width must be a multiple of 8");
  if (spec.height % 4 != 0 || spec.width % 4 != 0)
    throw UsageError("unet: image height and width must be multiples of 4");
  const std::int64_t e = 4 * c;
  const std::vector<std::int64_t> widths = {c, 2 * c, 2 * c};
  time1 = register_module("time1", torch::nn::Linear(c, e));
  time2 = register_module("time2", torch::nn::Linear(e, e));
  class_embed = register_module("class_embed", torch::nn::Embedding(spec.classes + 1, e));
  conv_in = register_module("conv_in", conv3(spec.channels, c));
  encoder = register_module("encoder", torch::nn::ModuleList());
  downs = register_module("downs", torch::nn::ModuleList());
  std::int64_t current = c;
  for (std::size_t level = 0; level < widths.size(); ++level) {
    encoder->push_back(ResidualBlock(current, widths[level], e));
    current = widths[level];
    if (level + 1 < widths.size()) downs->push_back(conv3(current, current, 2));
  }
  mid1 = register_module("mid1", ResidualBlock(current, current, e));
  attention = register_module("attention", SelfAttention(current));
  mid2 = register_module("mid2", ResidualBlock(current, current, e));
  decoder = register_module("decoder", torch::nn::ModuleList());
  ups = register_module("ups", torch::nn::ModuleList());
  for (std::size_t level = widths.size(); level-- > 0;) {
    decoder->push_back(ResidualBlock(current + widths[level], widths[level], e));
    current = widths[level];
    if (level > 0) ups->push_back(conv3(current, current));
  }
  norm_out = register_module("norm_out", group_norm(c));
  conv_out = register_module("conv_out", conv3(c, spec.channels));
}

at::Tensor UNetImpl::forward(const at::Tensor& x, const at::Tensor& t, const at::Tensor& labels) {
  const std::int64_t half = width_ / 2;
  auto frequencies = torch::exp(torch::arange(half, torch::kFloat32) * (-std::log(10000.0) / half));
  auto angles = t.to(torch::kFloat32).unsqueeze(1) * frequencies.unsqueeze(0);
  auto time = torch::cat({torch::sin(angles), torch::cos(angles)}, 1);
  auto embedding = time2->forward(torch::silu(time1->forward(time))) + class_embed->forward(labels);

  auto h = conv_in->forward(x);
  std::vector<at::Tensor> skips;
  const auto levels = encoder->size();
  for (std::size_t level = 0; level < levels; ++level) {
    h = encoder[level]->as<ResidualBlock>()->forward(h, embedding);
    skips.push_back(h);
    if (level + 1 < levels) h = downs[level]->as<torch::nn::Conv2d>()->forward(h);
  }
  h = mid2->forward(attention->forward(mid1->forward(h, embedding)), embedding);
  for (std::size_t i = 0; i < levels; ++i) {
    const std::size_t level = levels - 1 - i;
    h = decoder[i]->as<ResidualBlock>()->forward(torch::cat({h, skips[level]}, 1), embedding);
    if (level > 0) {
      // Nearest 2x upsampling then ups[i], computed at the low resolution:
      // Note [Sub-pixel upsampling convolution].
      const auto& conv = *ups[i]->as<torch::nn::Conv2d>();
      h = nn::upsample2x_conv3x3(h, conv.weight, conv.bias);
    }
  }
  return conv_out->forward(torch::silu(norm_out->forward(h)));
}

at::Tensor alphas_cumprod(const std::string& schedule, std::int64_t timesteps) {
  if (schedule == "linear") {
    auto betas = torch::linspace(1e-4, 0.02, timesteps, torch::kFloat64);
    return torch::cumprod(1.0 - betas, 0);
  }
  if (schedule == "cosine") {
    const double s = 0.008;
    auto steps = torch::arange(timesteps + 1, torch::kFloat64) / static_cast<double>(timesteps);
    auto f = torch::cos((steps + s) / (1 + s) * (M_PI / 2)).pow(2);
    auto bar = f / f[0];
    auto betas = (1 - bar.slice(0, 1) / bar.slice(0, 0, timesteps)).clamp(0.0, 0.999);
    return torch::cumprod(1.0 - betas, 0);
  }
  throw UsageError("--schedule must be linear or cosine, got '" + schedule + "'");
}

std::vector<std::int64_t> ddim_timesteps(std::int64_t timesteps, std::int64_t steps) {
  if (steps < 1 || steps > timesteps)
    throw UsageError("--steps must be in [1, " + std::to_string(timesteps) + "]");
  std::vector<std::int64_t> result;
  for (std::int64_t i = steps - 1; i >= 0; --i) {
    result.push_back(static_cast<std::int64_t>(std::llround(
        static_cast<double>(i) * (timesteps - 1) / std::max<std::int64_t>(1, steps - 1))));
  }
  if (steps == 1) result = {timesteps - 1};
  return result;
}

}  // namespace kr::gen
