// What the classifier-training steps share (teacher, student, MIA runs): options,
// the resnet20 replica with its optimiser and reducer, the learning-rate
// schedule, evaluation, and the end of a run (best-on-val weights, test once).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "kr/data/augment.hpp"
#include "kr/data/image_set.hpp"
#include "kr/nn/resnet.hpp"
#include "kr/steps/step.hpp"
#include "kr/train/checkpoint.hpp"
#include "kr/train/evaluate.hpp"
#include "kr/train/trainer.hpp"

namespace torch::optim {
class SGD;
}

namespace kr::train {
class DataParallel;
}

namespace kr::steps {

void add_classifier_options(po::options_description& options, double default_label_smoothing,
                            std::int64_t default_epochs);

class ClassifierTask : public train::TrainTask {
 public:
  ClassifierTask(Context& context, const data::DatasetInfo& info, const data::ImageSet& val,
                 std::int64_t steps_per_epoch);
  ~ClassifierTask() override;

  // The subclass's loss on this rank's share of the step (the model is in train mode).
  virtual at::Tensor batch_loss(const std::vector<std::int64_t>& local,
                                const train::StepInfo& info) = 0;

  train::StepOutput train_step(const std::vector<std::int64_t>& local,
                               const train::StepInfo& info) override;
  Json evaluate(std::int64_t epoch) override;
  train::CheckpointItems checkpoint_items() override;
  void synchronize_buffers() override;

  train::EvalResult evaluate_on(const data::ImageSet& set);
  at::Tensor forward(const at::Tensor& images);  // memory format handled
  nn::ResNet20& model() { return model_; }
  const nn::ResNetShape& shape() const { return shape_; }
  const data::Augment& augment() const { return augment_; }
  double label_smoothing() const { return label_smoothing_; }

 protected:
  Context& context_;
  std::uint64_t seed_ = 0;

 private:
  const data::ImageSet& val_;
  nn::ResNetShape shape_;
  nn::ResNet20 model_{nullptr};
  std::unique_ptr<torch::optim::SGD> optimizer_;
  std::unique_ptr<train::DataParallel> parallel_;
  data::Augment augment_;
  std::int64_t warmup_steps_ = 0;
  bool channels_last_ = true;
  double label_smoothing_ = 0.0;
};

struct ClassifierResult {
  train::EvalResult test;
  train::EvalResult val;
  std::string params_sha256;
};

// After run_training: loads the best-on-val checkpoint into the task's model,
// measures test and val accuracy once, and (rank 0) writes <run_dir>/model.pt and
// model.json.
ClassifierResult finish_classifier(Context& context, ClassifierTask& task,
                                   train::CheckpointManager& checkpoints,
                                   const std::string& run_dir, const data::Dataset& dataset);

// epoch,train_loss,val_accuracy,... from the trainer's history.
void write_history_csv(const std::string& path, const Json& history,
                       const std::vector<std::string>& columns);

}  // namespace kr::steps
