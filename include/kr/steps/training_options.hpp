// Options every training step shares, and their mapping to the trainer.
#pragma once

#include "kr/steps/step.hpp"
#include "kr/train/checkpoint.hpp"
#include "kr/train/trainer.hpp"

namespace kr::steps {

struct TrainingOptions {
  std::int64_t epochs;
  std::int64_t batch;
  double bucket_mb = 25.0;
  std::int64_t checkpoint_every_steps = 0;
  double checkpoint_every_minutes = 10.0;
  int keep = 3;
  std::string resume;
  bool allow_reshard = false;
  std::int64_t stop_at_step = -1;
  std::int64_t progress_every = 50;
  int fault_rank = -1;
  std::int64_t fault_step = -1;
  std::string fault_action;
};

void add_training_options(OptionTable& table, TrainingOptions& options, std::int64_t default_epochs,
                          std::int64_t default_batch);
train::TrainerOptions trainer_options(const Context& context, const TrainingOptions& given,
                                      const std::string& run_dir, const std::string& label);
train::RunIdentity run_identity(const Context& context, const std::string& config_hash);

}  // namespace kr::steps
