#include "kr/steps/classifier.hpp"

#include <torch/torch.h>

#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/nn/serialize.hpp"
#include "kr/steps/artifacts.hpp"
#include "kr/steps/training_options.hpp"
#include "kr/train/data_parallel.hpp"

namespace kr::steps {

void add_classifier_options(po::options_description& options, double default_label_smoothing,
                            std::int64_t default_epochs) {
  // clang-format off
  options.add_options()
      ("width", po::value<std::int64_t>()->default_value(16), "resnet20 base width w")
      ("lr", po::value<double>()->default_value(0.1), "peak learning rate (SGD, Nesterov momentum, cosine)")
      ("momentum", po::value<double>()->default_value(0.9), "SGD momentum")
      ("weight-decay", po::value<double>()->default_value(5e-4), "L2 weight decay")
      ("warmup-epochs", po::value<double>()->default_value(1.0), "linear learning-rate warm-up (epochs)")
      ("label-smoothing", po::value<double>()->default_value(default_label_smoothing), "label smoothing of the cross-entropy")
      ("crop-padding", po::value<int>()->default_value(2), "random-crop zero padding (pixels per side)")
      ("hflip", po::value<std::string>()->default_value("auto"), "random horizontal flips: auto (per data set), yes, no")
      ("channels-last", po::value<bool>()->default_value(true), "NHWC memory format for convolutions (faster here; widths not divisible by 8 stay NCHW)")
      ("eval-batch", po::value<std::int64_t>()->default_value(500), "batch size for evaluation");
  // clang-format on
  add_training_options(options, default_epochs, 128);
}

ClassifierTask::ClassifierTask(Context& context, const data::DatasetInfo& info,
                               const data::ImageSet& val, std::int64_t steps_per_epoch)
    : context_(context), val_(val) {
  seed_ = context.get<std::uint64_t>("seed");
  shape_ = nn::ResNetShape{info.channels, info.classes, context.get<std::int64_t>("width"),
                           info.height, info.width};
  // LibTorch 1.13's oneDNN path crashes on channels-last convolutions whose widths
  // are not multiples of 8 (seen with w=4), so such widths stay NCHW.
  channels_last_ = context.get<bool>("channels-last") && shape_.width % 8 == 0;
  torch::manual_seed(seed_);
  model_ = nn::ResNet20(shape_);
  if (channels_last_) nn::to_channels_last(*model_);
  optimizer_ = std::make_unique<torch::optim::SGD>(
      model_->parameters(), torch::optim::SGDOptions(context.get<double>("lr"))
                                .momentum(context.get<double>("momentum"))
                                .nesterov(true)
                                .weight_decay(context.get<double>("weight-decay")));
  parallel_ = std::make_unique<train::DataParallel>(context.comm, *model_,
                                                    context.get<double>("bucket-mb"));
  augment_.crop_padding = context.get<int>("crop-padding");
  const auto hflip = context.get<std::string>("hflip");
  if (hflip != "auto" && hflip != "yes" && hflip != "no")
    throw UsageError("--hflip must be auto, yes or no");
  augment_.hflip = hflip == "auto" ? info.hflip : hflip == "yes";
  warmup_steps_ = static_cast<std::int64_t>(context.get<double>("warmup-epochs") * steps_per_epoch);
  label_smoothing_ = context.get<double>("label-smoothing");
  if (label_smoothing_ < 0 || label_smoothing_ >= 1)
    throw UsageError("--label-smoothing must be in [0, 1)");
}

ClassifierTask::~ClassifierTask() = default;

at::Tensor ClassifierTask::forward(const at::Tensor& images) {
  return model_->forward(channels_last_ ? images.contiguous(at::MemoryFormat::ChannelsLast)
                                        : images);
}

train::StepOutput ClassifierTask::train_step(const std::vector<std::int64_t>& local,
                                             const train::StepInfo& info) {
  model_->train();
  const double lr = cosine_learning_rate(context_.get<double>("lr"), info.global_step,
                                         info.total_steps, warmup_steps_);
  for (auto& group : optimizer_->param_groups())
    static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
  optimizer_->zero_grad();
  auto loss = batch_loss(local, info);
  loss.backward();
  parallel_->synchronize_gradients();
  optimizer_->step();
  return train::StepOutput{loss.item<double>(), static_cast<std::int64_t>(local.size())};
}

Json ClassifierTask::evaluate(std::int64_t) {
  auto result = evaluate_on(val_);
  return Json{{"val_accuracy", result.accuracy()}, {"val_loss", result.mean_loss()}};
}

train::EvalResult ClassifierTask::evaluate_on(const data::ImageSet& set) {
  model_->eval();
  return train::evaluate_classifier(
      context_.comm, [&](const at::Tensor& images) { return forward(images); }, set,
      context_.get<std::int64_t>("eval-batch"));
}

train::CheckpointItems ClassifierTask::checkpoint_items() {
  return train::CheckpointItems{{{"model", model_.ptr().get()}}, {{"optimizer", optimizer_.get()}}};
}

void ClassifierTask::synchronize_buffers() {
  parallel_->broadcast_buffers();
}

ClassifierResult finish_classifier(Context& context, ClassifierTask& task,
                                   train::CheckpointManager& checkpoints,
                                   const std::string& run_dir, const data::Dataset& dataset) {
  const auto best = checkpoints.find_best();
  if (!best) throw Error(run_dir + ": training finished without a best checkpoint");
  nn::load_module(*task.model(), *best + "/model.pt");
  ClassifierResult result;
  result.test = task.evaluate_on(dataset.test);
  result.val = task.evaluate_on(dataset.val);
  result.params_sha256 = nn::state_sha256(*task.model());
  if (context.comm.rank() == 0) {
    nn::save_module(*task.model(), run_dir + "/model.pt");
    write_file_atomic(
        run_dir + "/model.json",
        classifier_description(task.shape(), result.params_sha256, dataset.info.source_sha256)
                .dump(2) +
            "\n");
  }
  return result;
}

void write_history_csv(const std::string& path, const Json& history,
                       const std::vector<std::string>& columns) {
  std::string csv;
  for (std::size_t i = 0; i < columns.size(); ++i) csv += (i ? "," : "") + columns[i];
  csv += "\n";
  for (const auto& epoch : history) {
    for (std::size_t i = 0; i < columns.size(); ++i) {
      const auto& value = epoch.contains(columns[i]) ? epoch.at(columns[i]) : Json(nullptr);
      csv += (i ? "," : "") + (value.is_null() ? std::string() : value.dump());
    }
    csv += "\n";
  }
  write_file_atomic(path, csv);
}

}  // namespace kr::steps
