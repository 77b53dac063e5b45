// The training loop every training step shares (teacher, generator, student,
// shadow models): sampler position, per-step agreement across ranks,
// checkpoints, preemption, progress, per-epoch evaluation and best-on-val.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kr/comm/communicator.hpp"
#include "kr/core/json.hpp"
#include "kr/train/checkpoint.hpp"

namespace kr::train {

struct StepInfo {
  std::int64_t epoch = 0;
  std::int64_t step_in_epoch = 0;
  std::int64_t global_step = 0;  // 0-based index of this step
  std::int64_t total_steps = 0;
};

struct StepOutput {
  double loss = 0.0;  // this rank's mean loss over its local batch
  std::int64_t samples = 0;
};

// What a training step plugs into the loop.
class TrainTask {
 public:
  virtual ~TrainTask() = default;
  virtual std::int64_t dataset_size() const = 0;
  // Forward, backward, gradient synchronisation and optimiser update on this rank's share.
  virtual StepOutput train_step(const std::vector<std::int64_t>& local_indices,
                                const StepInfo& info) = 0;
  // Collective; metrics for the epoch log. Must contain the selection metric.
  virtual Json evaluate(std::int64_t epoch) = 0;
  virtual std::string selection_metric() const { return "val_accuracy"; }  // higher is better
  virtual CheckpointItems checkpoint_items() = 0;
  // Collective; called before evaluations and checkpoints (BatchNorm buffer broadcast).
  virtual void synchronize_buffers() {}
  // Collective; called after every committed checkpoint (sample grids and the like).
  virtual void on_checkpoint(std::int64_t /*global_step*/) {}
};

// Deliberate faults for the resilience tests (`--fault-*` options).
struct FaultInjection {
  int rank = -1;
  std::int64_t step = -1;
  std::string action;  // "sleep:<seconds>", "nan", "exit"
};

struct TrainerOptions {
  std::int64_t epochs = 1;
  std::int64_t global_batch = 128;
  std::uint64_t seed = 0;
  std::string checkpoint_dir;
  std::int64_t checkpoint_every_steps = 0;  // 0: only at epoch ends
  double checkpoint_every_seconds = 0;      // 0: off
  int keep = 3;
  std::string resume = "auto";  // auto, never, or a checkpoint directory
  bool allow_reshard = false;
  std::int64_t stop_at_step =
      -1;  // clean stop (checkpoint, exit code preempted) after this many steps
  std::int64_t progress_every = 50;
  std::string label = "train";
  FaultInjection fault;
};

struct TrainOutcome {
  bool preempted = false;
  std::int64_t steps_done = 0;
  double seconds = 0.0;  // this invocation's training time
  double images_per_second = 0.0;
  Json history = Json::array();  // per-epoch metrics over the whole run
  Json best;                     // metrics of the best epoch
};

TrainOutcome run_training(comm::Communicator& comm, TrainTask& task, const TrainerOptions& options,
                          CheckpointManager& checkpoints);

}  // namespace kr::train
