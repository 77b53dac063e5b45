// Options every training step shares, and their mapping to the trainer.
#pragma once

#include "kr/steps/step.hpp"
#include "kr/train/checkpoint.hpp"
#include "kr/train/trainer.hpp"

namespace kr::steps {

void add_training_options(po::options_description& options, std::int64_t default_epochs,
                          std::int64_t default_batch);
train::TrainerOptions trainer_options(const Context& context, const std::string& run_dir,
                                      const std::string& label);
train::RunIdentity run_identity(const Context& context, const std::string& config_hash);

}  // namespace kr::steps
