// The classifier-training steps' shared options (teacher, student, membership runs),
// bound into train::ClassifierSettings, and the end of such a run.
#pragma once

#include <string>
#include <vector>

#include "kr/data/image_set.hpp"
#include "kr/steps/step.hpp"
#include "kr/steps/training_options.hpp"
#include "kr/train/checkpoint.hpp"
#include "kr/train/classifier.hpp"
#include "kr/train/evaluate.hpp"
#include "kr/train/trainer.hpp"

namespace kr::steps {

struct ClassifierOptions {
  std::int64_t width = 16;
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 5e-4;
  double warmup_epochs = 1.0;
  double label_smoothing;
  int crop_padding = 2;
  std::string hflip;
  bool channels_last = true;
  std::int64_t eval_batch = 500;
  TrainingOptions training;
};

void add_classifier_options(OptionTable& table, ClassifierOptions& options,
                            double default_label_smoothing, std::int64_t default_epochs);
// The options as settings; a UsageError names a bad value. `info` decides --hflip auto.
train::ClassifierSettings classifier_settings(const Context& context,
                                              const ClassifierOptions& options,
                                              const data::DatasetInfo& info);

struct ClassifierResult {
  train::EvalResult test;
  double val_accuracy = 0;  // of the selected epoch, as the trainer measured it
  std::string params_sha256;
  std::string test_sha256;  // split_sha256 of the test split measured on
};

// After run_training: loads the best-on-val checkpoint into the task's model,
// measures test accuracy once (val was measured when the epoch was selected: not
// again), and (rank 0) writes <run_dir>/model.pt and model.json, which records both
// accuracies and the test split's fingerprint (split_sha256).
ClassifierResult finish_classifier(Context& context, train::ClassifierTask& task,
                                   train::CheckpointManager& checkpoints,
                                   const std::string& run_dir, const data::Dataset& dataset,
                                   const train::TrainOutcome& outcome);

// sha256 of a split's images and labels: which test set an accuracy was measured on.
std::string split_sha256(const data::ImageSet& set);

// epoch,train_loss,val_accuracy,... from the trainer's history.
void write_history_csv(const std::string& path, const Json& history,
                       const std::vector<std::string>& columns);

}  // namespace kr::steps
