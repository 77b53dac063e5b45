#include "kr/nn/grad_sample.hpp"

#include <torch/torch.h>

#include <stdexcept>
#include <string>

namespace kr::nn::grad_sample {

namespace {

thread_local Recorder* active_recorder = nullptr;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The recorder a forward ran under, kept with its autograd node (as an integer: IValues
// hold no raw pointers).
void save_recorder(AutogradContext* ctx) {
  ctx->saved_data["recorder"] = reinterpret_cast<std::int64_t>(active_recorder);
}
Recorder& saved_recorder(AutogradContext* ctx) {
  return *reinterpret_cast<Recorder*>(ctx->saved_data["recorder"].toInt());
}

// The parameter tensors themselves (their identity names them in the recorder).
void save_parameters(AutogradContext* ctx, const at::Tensor& weight, const at::Tensor& bias) {
  ctx->saved_data["weight"] = weight;
  ctx->saved_data["bias"] = bias.defined() && bias.numel() > 0 ? c10::IValue(bias) : c10::IValue();
}

// An undefined bias crosses Function::apply as an empty placeholder (apply needs
// defined tensors); a bias of 0 elements is none.
at::Tensor or_placeholder(const at::Tensor& bias, const at::Tensor& like) {
  return bias.defined() ? bias : at::empty({0}, like.options());
}
c10::optional<at::Tensor> optional_bias(const at::Tensor& bias) {
  return bias.defined() && bias.numel() > 0 ? c10::optional<at::Tensor>(bias) : c10::nullopt;
}

at::Tensor saved_bias(AutogradContext* ctx) {
  const auto& value = ctx->saved_data["bias"];
  return value.isTensor() ? value.toTensor() : at::Tensor();
}

void record(AutogradContext* ctx, const at::Tensor& weight_grads, const at::Tensor& bias_grads) {
  auto& recorder = saved_recorder(ctx);
  recorder.add(ctx->saved_data["weight"].toTensor(), weight_grads);
  const auto bias = saved_bias(ctx);
  if (bias.defined()) recorder.add(bias, bias_grads);
}

struct LinearFunction : public torch::autograd::Function<LinearFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias) {
    ctx->save_for_backward({x, weight});
    save_parameters(ctx, weight, bias);
    save_recorder(ctx);
    return at::linear(x, weight, optional_bias(bias));
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const auto& g = grads[0];
    const auto batch = x.size(0);
    const auto g3 = g.reshape({batch, -1, weight.size(0)});
    const auto x3 = x.reshape({batch, -1, weight.size(1)});
    const auto weight_grads = torch::bmm(g3.transpose(1, 2), x3);  // (B, O, I)
    const auto bias_grads = g3.sum(1);                             // (B, O)
    record(ctx, weight_grads, bias_grads);
    const bool bias = saved_bias(ctx).defined();
    return {g.matmul(weight), weight_grads.sum(0), bias ? bias_grads.sum(0) : at::Tensor()};
  }
};

struct Conv2dFunction : public torch::autograd::Function<Conv2dFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const at::Tensor& bias, std::int64_t stride, std::int64_t padding) {
    ctx->save_for_backward({x, weight});
    save_parameters(ctx, weight, bias);
    save_recorder(ctx);
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    return at::conv2d(x, weight, optional_bias(bias), {stride, stride}, {padding, padding});
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& weight = saved[1];
    const auto g = grads[0].contiguous();
    const auto stride = ctx->saved_data["stride"].toInt();
    const auto padding = ctx->saved_data["padding"].toInt();
    const auto batch = x.size(0);
    const auto kh = weight.size(2), kw = weight.size(3);
    namespace F = torch::nn::functional;
    const auto unfolded = F::unfold(
        x, F::UnfoldFuncOptions({kh, kw}).padding({padding, padding}).stride({stride, stride}));
    const auto g3 = g.reshape({batch, weight.size(0), -1});             // (B, O, L)
    const auto weight_grads = torch::bmm(g3, unfolded.transpose(1, 2))  // (B, O, C k k)
                                  .reshape({batch, weight.size(0), weight.size(1), kh, kw});
    const auto bias_grads = g3.sum(2);
    record(ctx, weight_grads, bias_grads);
    const auto input_grad = std::get<0>(
        at::convolution_backward(g, x, weight, c10::nullopt, {stride, stride}, {padding, padding},
                                 {1, 1}, false, {0, 0}, 1, {true, false, false}));
    const bool bias = saved_bias(ctx).defined();
    return {input_grad, weight_grads.sum(0), bias ? bias_grads.sum(0) : at::Tensor(), at::Tensor(),
            at::Tensor()};
  }
};

struct EmbeddingFunction : public torch::autograd::Function<EmbeddingFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& indices,
                            const at::Tensor& weight) {
    ctx->save_for_backward({indices});
    save_parameters(ctx, weight, at::Tensor());
    save_recorder(ctx);
    ctx->saved_data["rows"] = weight.size(0);
    return weight.index_select(0, indices);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto indices = ctx->get_saved_variables()[0];
    const auto& g = grads[0];  // (B, D)
    const auto batch = indices.size(0);
    auto per_sample =
        torch::zeros({batch, ctx->saved_data["rows"].toInt(), g.size(1)}, g.options());
    per_sample.index_put_({torch::arange(batch, indices.options()), indices}, g);
    record(ctx, per_sample, at::Tensor());
    return {at::Tensor(), per_sample.sum(0)};
  }
};

// gamma (C) as (1, C, 1, ...) against x of x.dim() dimensions.
at::Tensor per_channel(const at::Tensor& values, std::int64_t dims) {
  std::vector<std::int64_t> shape(static_cast<std::size_t>(dims), 1);
  shape[1] = values.size(0);
  return values.view(shape);
}

std::vector<std::int64_t> positions(const at::Tensor& x) {
  std::vector<std::int64_t> dims;
  for (std::int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

struct AffineFunction : public torch::autograd::Function<AffineFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_hat, const at::Tensor& gamma,
                            const at::Tensor& beta) {
    ctx->save_for_backward({x_hat, gamma});
    save_parameters(ctx, gamma, beta);
    save_recorder(ctx);
    auto y = x_hat * per_channel(gamma, x_hat.dim());
    return saved_bias(ctx).defined() ? y + per_channel(beta, x_hat.dim()) : y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x_hat = saved[0];
    const auto& gamma = saved[1];
    const auto& g = grads[0];
    const auto dims = positions(x_hat);
    const auto gamma_grads = dims.empty() ? g * x_hat : (g * x_hat).sum(dims);  // (B, C)
    const auto beta_grads = dims.empty() ? g : g.sum(dims);
    record(ctx, gamma_grads, beta_grads);
    const bool beta = saved_bias(ctx).defined();
    return {g * per_channel(gamma, x_hat.dim()), gamma_grads.sum(0),
            beta ? beta_grads.sum(0) : at::Tensor()};
  }
};

}  // namespace

void Recorder::add(const at::Tensor& parameter, const at::Tensor& per_sample) {
  if (batch_ >= 0 && per_sample.size(0) != batch_)
    throw std::runtime_error("grad_sample: per-sample gradients of " +
                             std::to_string(per_sample.size(0)) + " samples beside " +
                             std::to_string(batch_) + " (one batch per recording)");
  batch_ = per_sample.size(0);
  for (auto& entry : entries_)
    if (entry.parameter.unsafeGetTensorImpl() == parameter.unsafeGetTensorImpl()) {
      entry.per_sample = entry.per_sample + per_sample;
      return;
    }
  entries_.push_back(Entry{parameter, per_sample});
}

at::Tensor Recorder::of(const at::Tensor& parameter) const {
  for (const auto& entry : entries_)
    if (entry.parameter.unsafeGetTensorImpl() == parameter.unsafeGetTensorImpl())
      return entry.per_sample;
  return {};
}

at::Tensor Recorder::take(const at::Tensor& parameter) {
  for (auto it = entries_.begin(); it != entries_.end(); ++it)
    if (it->parameter.unsafeGetTensorImpl() == parameter.unsafeGetTensorImpl()) {
      auto per_sample = it->per_sample;
      entries_.erase(it);
      return per_sample;
    }
  return {};
}

at::Tensor Recorder::norms() const {
  if (entries_.empty()) return torch::zeros({0}, torch::kFloat64);
  auto squares = torch::zeros({batch_}, torch::kFloat64);
  for (const auto& entry : entries_)
    squares += entry.per_sample.reshape({batch_, -1}).to(torch::kFloat64).pow(2).sum(1);
  return squares.sqrt();
}

void Recorder::clear() {
  entries_.clear();
  batch_ = -1;
}

RecordScope::RecordScope(Recorder& recorder) : previous_(active_recorder) {
  active_recorder = &recorder;
}
RecordScope::~RecordScope() {
  active_recorder = previous_;
}

Recorder* active() {
  return active_recorder;
}

at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  if (active_recorder) return LinearFunction::apply(x, weight, or_placeholder(bias, weight));
  return at::linear(x, weight, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt);
}

at::Tensor conv2d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                  std::int64_t stride, std::int64_t padding) {
  if (active_recorder)
    return Conv2dFunction::apply(x, weight, or_placeholder(bias, weight), stride, padding);
  return at::conv2d(x, weight, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt,
                    {stride, stride}, {padding, padding});
}

at::Tensor embedding(const at::Tensor& indices, const at::Tensor& weight) {
  if (indices.dim() != 1) throw std::runtime_error("grad_sample::embedding: indices must be (B)");
  if (active_recorder) return EmbeddingFunction::apply(indices, weight);
  return weight.index_select(0, indices);
}

at::Tensor affine(const at::Tensor& x_hat, const at::Tensor& gamma, const at::Tensor& beta) {
  if (active_recorder) return AffineFunction::apply(x_hat, gamma, or_placeholder(beta, gamma));
  auto y = x_hat * per_channel(gamma, x_hat.dim());
  return beta.defined() ? y + per_channel(beta, x_hat.dim()) : y;
}

at::Tensor group_norm(const at::Tensor& x, std::int64_t groups, const at::Tensor& weight,
                      const at::Tensor& bias, double eps) {
  auto x_hat = at::group_norm(x, groups, c10::nullopt, c10::nullopt, eps);
  return weight.defined() ? affine(x_hat, weight, bias) : x_hat;
}

}  // namespace kr::nn::grad_sample
