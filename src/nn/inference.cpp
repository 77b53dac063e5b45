#include "kr/nn/inference.hpp"

#include <c10/core/InferenceMode.h>
#include <torch/torch.h>

#include "kr/core/error.hpp"

namespace kr::nn {

// Note [Inference precision]
// With Precision::bf16 the folded convolutions, ReLUs and residual adds run in
// bfloat16 (8 significant bits), through oneDNN's bf16 kernels; the pooled features
// are widened to float32 before the mean and the linear head. On a CPU with
// AVX512_BF16 this runs resnet20's forward about twice as fast as float32. Its
// logits differ from float32's by under 1 % of their spread, so arg-maxes differ
// only on near ties: kr uses it only where a forward pass's output is a training target (the
// teacher's labelling in `distill`), never where a reported figure is computed
// (evaluation, the audit's logits, generator quality), which stay float32. The unit
// test states the bound on soft targets.

bool native_bf16() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  // CPUs with AMX-BF16 (Sapphire Rapids on) have AVX512_BF16 too.
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

Precision parse_precision(const std::string& name, const std::string& what) {
  if (name == "fp32") return Precision::fp32;
  if (name == "auto") return native_bf16() ? Precision::bf16 : Precision::fp32;
  if (name == "bf16") {
    if (!native_bf16())
      throw UsageError(what +
                       " bf16: this CPU has neither AVX512_BF16 nor AMX-BF16, and emulated "
                       "bfloat16 is slower than float32 (use fp32 or auto)");
    return Precision::bf16;
  }
  throw UsageError(what + ": unknown precision '" + name + "' (fp32, bf16 or auto)");
}

const char* precision_name(Precision precision) {
  return precision == Precision::bf16 ? "bf16" : "fp32";
}

// Note [Inference fast path]
// In eval mode a BatchNorm is an affine map per channel, y = s (x - mean) + beta with
// s = gamma / sqrt(var + eps), so conv then BN is one convolution with weight W s
// (scaled per output channel) and bias beta - s mean. Folding removes the BN passes
// over every activation and gives oneDNN a convolution with bias, which it fuses.
// The fold is computed in float64 and rounded once; the folded network's logits
// differ from the eval-mode network's by float rounding only (the unit test states
// the bound). Forward passes run under c10::InferenceMode (no autograd records, no
// version counters) with ReLU and the residual add in place; outputs are cloned out
// of inference mode, so callers may use them as targets of a differentiated loss.

InferenceResNet::Conv InferenceResNet::fold(torch::nn::Conv2dImpl& conv,
                                            torch::nn::BatchNorm2dImpl& bn) const {
  if (!bn.running_mean.defined() || !bn.running_var.defined())
    throw Error("inference fold: a BatchNorm without running statistics");
  if (conv.bias.defined()) throw Error("inference fold: resnet20's convolutions have no bias");
  torch::NoGradGuard no_grad;
  const auto variance = bn.running_var.to(torch::kFloat64);
  auto scale = torch::rsqrt(variance + bn.options.eps());
  if (bn.weight.defined()) scale = scale * bn.weight.to(torch::kFloat64);
  auto bias = -bn.running_mean.to(torch::kFloat64) * scale;
  if (bn.bias.defined()) bias = bias + bn.bias.to(torch::kFloat64);
  auto weight = (conv.weight.to(torch::kFloat64) * scale.view({-1, 1, 1, 1})).to(torch::kFloat32);
  weight = weight.contiguous(channels_last_ ? at::MemoryFormat::ChannelsLast
                                            : at::MemoryFormat::Contiguous);
  const auto& options = conv.options;
  if (options.stride()->at(0) != options.stride()->at(1))
    throw Error("inference fold: non-square stride");
  const auto* padding = c10::get_if<torch::ExpandingArray<2>>(&options.padding());
  if (padding == nullptr || (*padding)->at(0) != (*padding)->at(1))
    throw Error("inference fold: padding must be a square number of pixels");
  return Conv{weight, bias.to(torch::kFloat32).contiguous(), options.stride()->at(0),
              (*padding)->at(0)};
}

InferenceResNet::InferenceResNet(ResNet20Impl& trained, bool channels_last)
    : channels_last_(channels_last) {
  stem_ = fold(*trained.stem, *trained.stem_bn);
  for (const auto& module : trained.stages->children()) {
    auto* block = module->as<BasicBlockImpl>();
    if (block == nullptr) throw Error("inference fold: a resnet20 stage that is not a block");
    Block folded{fold(*block->conv1, *block->bn1), fold(*block->conv2, *block->bn2), Conv{}};
    if (!block->shortcut->is_empty()) {
      auto conv = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(block->shortcut->ptr(0));
      auto bn = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(block->shortcut->ptr(1));
      if (!conv || !bn) throw Error("inference fold: a shortcut that is not conv + BatchNorm");
      folded.shortcut = fold(*conv, *bn);
    }
    blocks_.push_back(std::move(folded));
  }
  torch::NoGradGuard no_grad;
  head_weight_ = trained.head->weight.detach().clone();
  head_bias_ = trained.head->bias.detach().clone();
}

InferenceResNet InferenceResNet::with_precision(Precision precision) const {
  if (empty()) throw Error("inference: no network folded");
  if (precision == Precision::bf16 && !native_bf16())
    throw Error("inference: bf16 asked for on a CPU without native bfloat16");
  const auto type = precision == Precision::bf16 ? torch::kBFloat16 : torch::kFloat32;
  const auto format =
      channels_last_ ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  auto convert = [&](const Conv& conv) {
    if (!conv.weight.defined()) return conv;
    return Conv{conv.weight.to(type).contiguous(format), conv.bias.to(type), conv.stride,
                conv.padding};
  };
  InferenceResNet out = *this;
  if (precision_ == Precision::bf16 && precision == Precision::fp32)
    throw Error("inference: a bf16 network cannot be widened back to float32; fold again");
  out.precision_ = precision;
  out.stem_ = convert(stem_);
  for (auto& block : out.blocks_)
    block = Block{convert(block.conv1), convert(block.conv2), convert(block.shortcut)};
  return out;
}

at::Tensor InferenceResNet::apply(const Conv& conv, const at::Tensor& x) {
  return at::conv2d(x, conv.weight, conv.bias, {conv.stride, conv.stride},
                    {conv.padding, conv.padding});
}

at::Tensor InferenceResNet::features_block(const at::Tensor& images) const {
  if (empty()) throw Error("inference: no network folded");
  auto input = precision_ == Precision::bf16 ? images.to(torch::kBFloat16) : images;
  if (channels_last_) input = input.contiguous(at::MemoryFormat::ChannelsLast);
  auto y = apply(stem_, input).relu_();
  for (const auto& block : blocks_) {
    auto z = apply(block.conv1, y).relu_();
    z = apply(block.conv2, z);
    z.add_(block.shortcut.weight.defined() ? apply(block.shortcut, y) : y);
    y = z.relu_();
  }
  if (precision_ == Precision::bf16) y = y.to(torch::kFloat32);
  return y.mean({2, 3});
}

// Note [Inference batch]: at resnet20's widths a forward pass runs fastest in
// batches of about 64 (measured single-thread, AVX-512: 778 img/s at 64, 692 at 128,
// 624 at 256), where one block's activations stay in cache; larger calls are split.
constexpr std::int64_t kInferenceBatch = 64;

at::Tensor InferenceResNet::features_inference(const at::Tensor& images) const {
  if (images.size(0) <= kInferenceBatch) return features_block(images);
  std::vector<at::Tensor> parts;
  for (std::int64_t i = 0; i < images.size(0); i += kInferenceBatch)
    parts.push_back(
        features_block(images.narrow(0, i, std::min(kInferenceBatch, images.size(0) - i))));
  return at::cat(parts);
}

namespace {
// Runs `compute` under c10::InferenceMode and returns an ordinary tensor: an
// inference tensor cannot be saved for backward, and callers use these outputs as
// loss targets.
template <typename Compute>
at::Tensor outside_inference(Compute&& compute) {
  at::Tensor out;
  {
    c10::InferenceMode guard;
    out = compute();
  }
  return out.clone();
}
}  // namespace

at::Tensor InferenceResNet::features(const at::Tensor& images) const {
  return outside_inference([&] { return features_inference(images); });
}

at::Tensor InferenceResNet::classify(const at::Tensor& features) const {
  return outside_inference([&] { return at::linear(features, head_weight_, head_bias_); });
}

at::Tensor InferenceResNet::forward(const at::Tensor& images) const {
  return outside_inference(
      [&] { return at::linear(features_inference(images), head_weight_, head_bias_); });
}

}  // namespace kr::nn
