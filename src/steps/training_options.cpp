#include "kr/steps/training_options.hpp"

#include <cmath>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"

namespace kr::steps {

void add_training_options(po::options_description& options, std::int64_t default_epochs,
                          std::int64_t default_batch) {
  // clang-format off
  options.add_options()
      ("epochs", po::value<std::int64_t>()->default_value(default_epochs), "training epochs")
      ("batch", po::value<std::int64_t>()->default_value(default_batch),
       "global batch size (images per step over all ranks; a multiple of the rank count)")
      ("bucket-mb", po::value<double>()->default_value(25.0), "gradient all-reduce bucket size (MiB)")
      ("checkpoint-every-steps", po::value<std::int64_t>()->default_value(0),
       "also checkpoint every this many steps (0: only at epoch ends)")
      ("checkpoint-every-minutes", po::value<double>()->default_value(10.0),
       "also checkpoint when this many minutes passed since the last one, by rank 0's clock (0: off)")
      ("keep", po::value<int>()->default_value(3), "checkpoints kept (latest and best are never deleted)")
      ("resume", po::value<std::string>()->default_value("auto"),
       "auto (continue from <out>/ckpt/latest when present), never, or a checkpoint directory")
      ("allow-reshard", po::bool_switch(), "resume a checkpoint written by a different number of ranks")
      ("stop-at-step", po::value<std::int64_t>()->default_value(-1),
       "checkpoint and stop (exit code 75) after this many steps in total (-1: off)")
      ("progress-every", po::value<std::int64_t>()->default_value(50), "steps between progress lines")
      ("fault-rank", po::value<int>()->default_value(-1), "testing: rank that injects --fault-action")
      ("fault-step", po::value<std::int64_t>()->default_value(-1), "testing: step at which the fault happens")
      ("fault-action", po::value<std::string>()->default_value(""), "testing: sleep:<seconds>, nan or kill");
  // clang-format on
}

train::TrainerOptions trainer_options(const Context& context, const std::string& run_dir,
                                      const std::string& label) {
  train::TrainerOptions options;
  options.epochs = context.get<std::int64_t>("epochs");
  options.global_batch = context.get<std::int64_t>("batch");
  options.seed = context.get<std::uint64_t>("seed");
  options.checkpoint_dir = run_dir + "/ckpt";
  options.checkpoint_every_steps = context.get<std::int64_t>("checkpoint-every-steps");
  options.checkpoint_every_seconds = 60.0 * context.get<double>("checkpoint-every-minutes");
  options.keep = context.get<int>("keep");
  options.resume = context.get<std::string>("resume");
  options.allow_reshard = context.get<bool>("allow-reshard");
  options.stop_at_step = context.get<std::int64_t>("stop-at-step");
  options.progress_every = context.get<std::int64_t>("progress-every");
  options.label = label;
  options.fault.rank = context.get<int>("fault-rank");
  options.fault.step = context.get<std::int64_t>("fault-step");
  options.fault.action = context.get<std::string>("fault-action");
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
