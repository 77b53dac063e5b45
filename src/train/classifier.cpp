#include "kr/train/classifier.hpp"

#include <torch/torch.h>

#include <cmath>

#include "kr/comm/data_parallel.hpp"

namespace kr::train {

double cosine_learning_rate(double base, std::int64_t step, std::int64_t total_steps,
                            std::int64_t warmup_steps) {
  if (warmup_steps > 0 && step < warmup_steps)
    return base * (step + 1) / static_cast<double>(warmup_steps);
  const double span = std::max<std::int64_t>(1, total_steps - warmup_steps);
  const double progress = std::min(1.0, (step - warmup_steps) / span);
  return base * 0.5 * (1.0 + std::cos(M_PI * progress));
}

ClassifierTask::ClassifierTask(comm::Communicator& comm, const ClassifierSettings& settings,
                               const data::DatasetInfo& info, const data::ImageSet& val,
                               std::int64_t steps_per_epoch)
    : comm_(comm), settings_(settings), val_(val) {
  shape_ = nn::ResNetShape{info.channels, info.classes, settings.width, info.height, info.width};
  // LibTorch 1.13's oneDNN path crashes on channels-last convolutions whose widths
  // are not multiples of 8 (seen with w=4), so such widths stay NCHW.
  channels_last_ = settings.channels_last && nn::channels_last_suits(shape_);
  torch::manual_seed(settings.seed);
  model_ = nn::ResNet20(shape_);
  if (channels_last_) nn::to_channels_last(*model_);
  optimizer_ = std::make_unique<torch::optim::SGD>(model_->parameters(),
                                                   torch::optim::SGDOptions(settings.lr)
                                                       .momentum(settings.momentum)
                                                       .nesterov(true)
                                                       .weight_decay(settings.weight_decay));
  parallel_ = std::make_unique<comm::DataParallel>(comm, *model_, settings.bucket_mb);
  augment_.crop_padding = settings.crop_padding;
  augment_.hflip = settings.hflip;
  warmup_steps_ = static_cast<std::int64_t>(settings.warmup_epochs * steps_per_epoch);
}

ClassifierTask::~ClassifierTask() = default;

at::Tensor ClassifierTask::forward(const at::Tensor& images) {
  return model_->forward(channels_last_ ? images.contiguous(at::MemoryFormat::ChannelsLast)
                                        : images);
}

StepOutput ClassifierTask::train_step(const std::vector<std::int64_t>& local,
                                      const StepInfo& info) {
  model_->train();
  const double lr =
      cosine_learning_rate(settings_.lr, info.global_step, info.total_steps, warmup_steps_);
  for (auto& group : optimizer_->param_groups())
    static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
  optimizer_->zero_grad();
  auto loss = batch_loss(local, info);
  loss.backward();
  parallel_->synchronize_gradients();
  optimizer_->step();
  return StepOutput{loss.item<double>(), static_cast<std::int64_t>(local.size())};
}

Json ClassifierTask::evaluate(std::int64_t) {
  auto result = evaluate_on(val_);
  return Json{{"val_accuracy", result.accuracy()}, {"val_loss", result.mean_loss()}};
}

nn::InferenceResNet ClassifierTask::folded() {
  model_->eval();
  return nn::InferenceResNet(*model_, channels_last_);
}

EvalResult ClassifierTask::evaluate_on(const data::ImageSet& set, const at::Tensor& reference) {
  const auto network = folded();
  return evaluate_classifier(
      comm_, [&](const at::Tensor& images) { return network.forward(images); }, set,
      settings_.eval_batch, reference);
}

CheckpointItems ClassifierTask::checkpoint_items() {
  return CheckpointItems{{{"model", model_.ptr().get()}}, {{"optimizer", optimizer_.get()}}};
}

void ClassifierTask::synchronize_buffers() {
  parallel_->broadcast_buffers();
}

}  // namespace kr::train
