#include "kr/steps/training_options.hpp"

#include <cmath>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"

namespace kr::steps {

void add_training_options(OptionTable& table, TrainingOptions& options, std::int64_t default_epochs,
                          std::int64_t default_batch) {
  // clang-format off
  table
      ("epochs", &options.epochs, default_epochs, "training epochs").at_least(1)
      ("batch", &options.batch, default_batch, "global batch size (images per step over all ranks; a multiple of the rank count)").at_least(1)
      ("bucket-mb", &options.bucket_mb, 25.0, "gradient all-reduce bucket size (MiB)").at_least(0.001)
      ("checkpoint-every-steps", &options.checkpoint_every_steps, 0, "also checkpoint every this many steps (0: only at epoch ends)").at_least(0).operational()
      ("checkpoint-every-minutes", &options.checkpoint_every_minutes, 10.0, "also checkpoint when this many minutes passed since the last one, by rank 0's clock (0: off)").at_least(0).operational()
      ("keep", &options.keep, 3, "checkpoints kept (latest and best are never deleted)").at_least(1).operational()
      ("resume", &options.resume, "auto", "auto (continue from <out>/ckpt/latest when present), never, or a checkpoint directory").operational()
      ("allow-reshard", &options.allow_reshard, "resume a checkpoint written by a different number of ranks").operational()
      ("stop-at-step", &options.stop_at_step, -1, "checkpoint and stop (exit code 75) after this many steps in total (-1: off)").at_least(-1).operational()
      ("progress-every", &options.progress_every, 50, "steps between progress lines").at_least(0).operational()
      ("fault-rank", &options.fault_rank, -1, "testing: rank that injects --fault-action").at_least(-1).operational()
      ("fault-step", &options.fault_step, -1, "testing: step at which the fault happens").at_least(-1).operational()
      ("fault-action", &options.fault_action, "", "testing: sleep:<seconds>, nan or kill").operational();
  // clang-format on
}

train::TrainerOptions trainer_options(const Context& context, const TrainingOptions& given,
                                      const std::string& run_dir, const std::string& label) {
  train::TrainerOptions options;
  options.epochs = given.epochs;
  options.global_batch = given.batch;
  options.seed = context.get<std::uint64_t>("seed");
  options.checkpoint_dir = run_dir + "/ckpt";
  options.checkpoint_every_steps = given.checkpoint_every_steps;
  options.checkpoint_every_seconds = 60.0 * given.checkpoint_every_minutes;
  options.keep = given.keep;
  options.resume = given.resume;
  options.allow_reshard = given.allow_reshard;
  options.stop_at_step = given.stop_at_step;
  options.progress_every = given.progress_every;
  options.label = label;
  options.fault.rank = given.fault_rank;
  options.fault.step = given.fault_step;
  options.fault.action = given.fault_action;
  if (options.epochs <= 0) throw UsageError("--epochs must be positive");
  return options;
}

train::RunIdentity run_identity(const Context& context, const std::string& config_hash) {
  train::RunIdentity identity;
  identity.config_hash = config_hash;
  identity.world_size = context.comm.size();
  identity.intra_threads = context.threads.intra_op;
  identity.openblas_threads = context.threads.openblas;
  identity.onednn_isa = context.threads.onednn_isa;
  return identity;
}

}  // namespace kr::steps
