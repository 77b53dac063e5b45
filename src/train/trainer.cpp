#include "kr/train/trainer.hpp"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <limits>
#include <thread>

#include "kr/core/clock.hpp"
#include "kr/core/error.hpp"
#include "kr/core/log.hpp"
#include "kr/train/sampler.hpp"
#include "kr/train/signals.hpp"

namespace kr::train {

namespace {

std::string format_duration(double seconds) {
  const auto total = static_cast<long long>(seconds);
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof text, "%lldh%02lldm", total / 3600, (total / 60) % 60);
  } else {
    std::snprintf(text, sizeof text, "%lldm%02llds", total / 60, total % 60);
  }
  return text;
}

// Applies an injected fault before the step runs; returns true when the loss must be NaN.
bool inject_fault(const FaultInjection& fault, int rank, std::int64_t step) {
  if (fault.rank != rank || fault.step != step || fault.action.empty()) return false;
  if (fault.action.rfind("sleep:", 0) == 0) {
    const double seconds = std::stod(fault.action.substr(6));
    log::warn("fault injection: sleeping " + fault.action.substr(6) + " s at step " +
              std::to_string(step));
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    return false;
  }
  if (fault.action == "nan") return true;
  if (fault.action == "kill") {
    log::warn("fault injection: SIGKILL at step " + std::to_string(step));
    std::raise(SIGKILL);
  }
  throw UsageError("unknown --fault-action '" + fault.action + "' (sleep:<s>, nan, kill)");
}

struct Position {
  std::int64_t epoch = 0;
  std::int64_t step_in_epoch = 0;
  std::int64_t global_step = 0;
  double best_metric = -std::numeric_limits<double>::infinity();
  Json best;
  Json history = Json::array();

  Json to_json() const {
    return Json{{"epoch", epoch},
                {"step_in_epoch", step_in_epoch},
                {"global_step", global_step},
                {"best_metric", std::isfinite(best_metric) ? best_metric : -1e300},
                {"best", best},
                {"history", history}};
  }
  static Position from_json(const Json& state) {
    Position position;
    position.epoch = state.at("epoch");
    position.step_in_epoch = state.at("step_in_epoch");
    position.global_step = state.at("global_step");
    position.best_metric = state.at("best_metric");
    position.best = state.at("best");
    position.history = state.at("history");
    return position;
  }
};

}  // namespace

TrainOutcome run_training(comm::Communicator& comm, TrainTask& task, const TrainerOptions& options,
                          CheckpointManager& checkpoints) {
  DistributedSampler sampler(task.dataset_size(), options.global_batch, comm.rank(), comm.size(),
                             options.seed);
  const std::int64_t steps_per_epoch = sampler.steps_per_epoch();
  const std::int64_t total_steps = steps_per_epoch * options.epochs;
  Position position;

  std::optional<std::string> resume_from;
  if (options.resume == "auto") {
    resume_from = checkpoints.find_latest(options.allow_reshard);
  } else if (options.resume != "never") {
    resume_from = options.resume;
  }
  if (resume_from) {
    position = Position::from_json(
        checkpoints.load(*resume_from, task.checkpoint_items(), options.allow_reshard));
    log::info(options.label + ": resumed from " + *resume_from + " at step " +
              std::to_string(position.global_step) + " (epoch " +
              std::to_string(position.epoch + 1) + ")");
  }

  auto checkpoint = [&](bool best) {
    task.synchronize_buffers();
    checkpoints.save(position.global_step, task.checkpoint_items(), position.to_json(), best);
    task.on_checkpoint(position.global_step);
  };

  TrainOutcome outcome;
  const auto start = Clock::now();
  auto last_checkpoint = Clock::now();
  auto window_start = Clock::now();
  std::int64_t window_steps = 0;
  double window_loss = 0.0;
  double epoch_loss = 0.0;
  std::int64_t epoch_loss_steps = 0;
  auto epoch_start = Clock::now();
  std::int64_t steps_this_run = 0;
  auto flags = torch::zeros({3}, torch::kInt64);

  while (position.epoch < options.epochs) {
    bool stop_now = false;
    while (position.step_in_epoch < steps_per_epoch) {
      comm.set_step(position.global_step);
      const bool force_nan = inject_fault(options.fault, comm.rank(), position.global_step);
      const StepInfo info{position.epoch, position.step_in_epoch, position.global_step,
                          total_steps};
      const auto local = sampler.local_indices(position.epoch, position.step_in_epoch);
      StepOutput out = task.train_step(local, info);
      if (force_nan) out.loss = std::numeric_limits<double>::quiet_NaN();
      ++position.step_in_epoch;
      ++position.global_step;
      ++steps_this_run;

      // Everything the ranks must decide together travels in one allreduce(max).
      auto* flag = flags.data_ptr<std::int64_t>();
      flag[0] = stop_requested() ? 1 : 0;
      flag[1] = std::isfinite(out.loss) ? 0 : comm.rank() + 1;
      flag[2] = comm.rank() == 0 && options.checkpoint_every_seconds > 0 &&
                seconds_since(last_checkpoint) >= options.checkpoint_every_seconds;
      comm.allreduce(flags, comm::ReduceOp::max);
      if (flag[1] > 0) {
        throw Error(options.label + ": non-finite loss at step " +
                    std::to_string(position.global_step - 1) + " (epoch " +
                    std::to_string(position.epoch + 1) + ") on rank " +
                    std::to_string(flag[1] - 1) + "; every rank stops here");
      }
      window_loss += out.loss;
      epoch_loss += out.loss;
      ++epoch_loss_steps;
      ++window_steps;
      if (options.progress_every > 0 && position.global_step % options.progress_every == 0) {
        auto mean = torch::tensor({window_loss / window_steps}, torch::kFloat64);
        comm.allreduce(mean, comm::ReduceOp::avg);
        const double elapsed = seconds_since(window_start);
        const double images_per_second =
            elapsed > 0 ? window_steps * options.global_batch / elapsed : 0.0;
        const double eta = elapsed / window_steps * (total_steps - position.global_step);
        char line[256];
        std::snprintf(
            line, sizeof line, "%s: epoch %lld/%lld step %lld/%lld loss %.4f  %.0f img/s  ETA %s",
            options.label.c_str(), static_cast<long long>(position.epoch + 1),
            static_cast<long long>(options.epochs), static_cast<long long>(position.global_step),
            static_cast<long long>(total_steps), mean.item<double>(), images_per_second,
            format_duration(eta).c_str());
        log::info(line);
        log::record(Json{{"event", "progress"},
                         {"step", position.global_step},
                         {"loss", out.loss},
                         {"window_mean_loss", mean.item<double>()},
                         {"images_per_second", images_per_second}});
        window_start = Clock::now();
        window_steps = 0;
        window_loss = 0.0;
      }
      stop_now = flag[0] != 0 ||
                 (options.stop_at_step >= 0 && position.global_step >= options.stop_at_step);
      if (position.step_in_epoch == steps_per_epoch) break;  // the epoch end checkpoints
      const bool due = flag[2] != 0 || (options.checkpoint_every_steps > 0 &&
                                        position.global_step % options.checkpoint_every_steps == 0);
      if (stop_now || due) {
        checkpoint(false);
        last_checkpoint = Clock::now();
      }
      if (stop_now) break;
    }

    if (position.step_in_epoch == steps_per_epoch) {
      task.synchronize_buffers();
      Json metrics = task.evaluate(position.epoch);
      auto loss =
          torch::tensor({epoch_loss_steps ? epoch_loss / epoch_loss_steps : 0.0}, torch::kFloat64);
      comm.allreduce(loss, comm::ReduceOp::avg);
      const double epoch_seconds = seconds_since(epoch_start);
      metrics["epoch"] = position.epoch + 1;
      metrics["train_loss"] = loss.item<double>();
      metrics["seconds"] = epoch_seconds;
      metrics["images_per_second"] =
          epoch_loss_steps > 0 ? epoch_loss_steps * options.global_batch / epoch_seconds : 0.0;
      const double score = metrics.at(task.selection_metric()).get<double>();
      const bool best = score > position.best_metric;
      if (best) {
        position.best_metric = score;
        position.best = metrics;
      }
      position.history.push_back(metrics);
      log::info(options.label + ": epoch " + std::to_string(position.epoch + 1) + "/" +
                std::to_string(options.epochs) + " " + metrics.dump() +
                (best ? "  (best so far)" : ""));
      log::record(Json{{"event", "epoch"}, {"metrics", metrics}});
      ++position.epoch;
      position.step_in_epoch = 0;
      checkpoint(best);
      last_checkpoint = Clock::now();
      epoch_loss = 0.0;
      epoch_loss_steps = 0;
      epoch_start = Clock::now();
    }
    if (stop_now) {
      outcome.preempted = true;
      log::info(options.label + ": stopped at step " + std::to_string(position.global_step) +
                " after writing a checkpoint; run the same command again to resume");
      break;
    }
  }

  outcome.steps_done = position.global_step;
  outcome.seconds = seconds_since(start);
  outcome.images_per_second =
      outcome.seconds > 0 ? steps_this_run * options.global_batch / outcome.seconds : 0.0;
  outcome.history = position.history;
  outcome.best = position.best;
  return outcome;
}

}  // namespace kr::train
