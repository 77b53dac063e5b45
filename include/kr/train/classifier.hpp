// What the classifier-training steps share (teacher, student, membership runs): the
// resnet20 replica with its optimiser and gradient reducer, the learning-rate
// schedule, augmentation settings and evaluation. The steps bind their options into
// ClassifierSettings (steps/classifier_options.hpp) and subclass the task with
// their loss.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kr/data/augment.hpp"
#include "kr/data/image_set.hpp"
#include "kr/nn/inference.hpp"
#include "kr/nn/resnet.hpp"
#include "kr/train/evaluate.hpp"
#include "kr/train/trainer.hpp"

namespace torch::optim {
class SGD;
}
namespace kr::comm {
class Communicator;
class DataParallel;
}  // namespace kr::comm

namespace kr::train {

struct ClassifierSettings {
  std::int64_t width = 16;  // resnet20 base width
  double lr = 0.1;          // peak learning rate (SGD, Nesterov momentum, cosine)
  double momentum = 0.9;
  double weight_decay = 5e-4;
  double warmup_epochs = 1.0;  // linear warm-up
  double label_smoothing = 0.0;
  int crop_padding = 2;       // random-crop zero padding, pixels per side
  bool hflip = false;         // random horizontal flips
  bool channels_last = true;  // NHWC convolutions where the width allows
  std::int64_t eval_batch = 500;
  double bucket_mb = 25.0;  // gradient bucket size (Note [Gradient buckets])
  std::uint64_t seed = 0;   // initial weights and every keyed stream
};

// Cosine learning rate with linear warm-up, per step.
double cosine_learning_rate(double base, std::int64_t step, std::int64_t total_steps,
                            std::int64_t warmup_steps);

class ClassifierTask : public TrainTask {
 public:
  ClassifierTask(comm::Communicator& comm, const ClassifierSettings& settings,
                 const data::DatasetInfo& info, const data::ImageSet& val,
                 std::int64_t steps_per_epoch);
  ~ClassifierTask() override;

  // The subclass's loss on this rank's share of the step (the model is in train mode).
  virtual at::Tensor batch_loss(const std::vector<std::int64_t>& local, const StepInfo& info) = 0;

  StepOutput train_step(const std::vector<std::int64_t>& local, const StepInfo& info) override;
  Json evaluate(std::int64_t epoch) override;
  CheckpointItems checkpoint_items() override;
  void synchronize_buffers() override;

  // `reference`: see evaluate_classifier.
  EvalResult evaluate_on(const data::ImageSet& set, const at::Tensor& reference = {});
  at::Tensor forward(const at::Tensor& images);  // memory format handled
  // The network as it stands, in eval mode, folded for inference (Note [Inference fast path]).
  nn::InferenceResNet folded();
  nn::ResNet20& model() { return model_; }
  const nn::ResNetShape& shape() const { return shape_; }
  const data::Augment& augment() const { return augment_; }
  double label_smoothing() const { return settings_.label_smoothing; }
  std::uint64_t seed() const { return settings_.seed; }
  comm::Communicator& comm() { return comm_; }

 private:
  comm::Communicator& comm_;
  ClassifierSettings settings_;
  const data::ImageSet& val_;
  nn::ResNetShape shape_;
  nn::ResNet20 model_{nullptr};
  std::unique_ptr<torch::optim::SGD> optimizer_;
  std::unique_ptr<comm::DataParallel> parallel_;
  data::Augment augment_;
  std::int64_t warmup_steps_ = 0;
  bool channels_last_ = true;
};

}  // namespace kr::train
