// `kr train-teacher`: resnet20 on the real train split, data-parallel.
#include <torch/torch.h>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/data/augment.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/nn/resnet.hpp"
#include "kr/report/results.hpp"
#include "kr/steps/classifier_options.hpp"
#include "kr/steps/run_record.hpp"
#include "kr/steps/step.hpp"
#include "kr/steps/training_options.hpp"
#include "kr/train/distillation.hpp"

namespace kr::steps {

namespace {

struct TeacherOptions {
  std::string data;
  std::string out;
  std::string results_name;
  double mixup = 0.0;
  ClassifierOptions classifier;
};

void add_teacher_options(OptionTable& table, TeacherOptions& options) {
  // clang-format off
  table
      ("data", &options.data, "", "prepared data set (default: <workdir>/data/data.h5)").operational()
      ("out", &options.out, "", "run directory (default: <workdir>/teacher)").operational()
      ("results-name", &options.results_name, "teacher", "results/<name>.json|csv of this run (the audit's regularised teacher: teacher-reg)")
      ("mixup", &options.mixup, 0.0, "mixup of neighbouring images and their (smoothed) labels, lambda ~ Beta(a, a) (0: off; the audit's regularised teacher uses the student's)").at_least(0);
  // clang-format on
  add_classifier_options(table, options.classifier, 0.0, 30);
}

// Cross-entropy on the real train split with keyed crop and flip.
class TeacherTask final : public train::ClassifierTask {
 public:
  TeacherTask(Context& context, const TeacherOptions& options, data::Dataset& dataset,
              std::int64_t steps_per_epoch)
      : ClassifierTask(context.comm, classifier_settings(context, options.classifier, dataset.info),
                       dataset.info, dataset.val, steps_per_epoch),
        dataset_(dataset),
        mixup_(options.mixup) {}

  std::int64_t dataset_size() const override { return dataset_.train.size(); }

  at::Tensor batch_loss(const std::vector<std::int64_t>& local,
                        const train::StepInfo& info) override {
    auto images = data::assemble_batch(dataset_.train, local, augment(), seed(),
                                       static_cast<std::uint64_t>(info.epoch));
    auto labels = data::gather_labels(dataset_.train, local);
    if (mixup_ > 0) {
      // Rows are global train indices: the same pairs and lambdas at any rank count.
      const auto mix =
          data::mix_pairs(images, local, mixup_, seed(), static_cast<std::uint64_t>(info.epoch));
      return train::distillation_loss(
          forward(images),
          train::label_targets(labels, dataset_.info.classes, label_smoothing(), &mix), 1.0);
    }
    return torch::nn::functional::cross_entropy(
        forward(images), labels,
        torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(label_smoothing()));
  }

 private:
  data::Dataset& dataset_;
  double mixup_;
};

int run_train_teacher(Context& context, const TeacherOptions& options) {
  const std::string data_path = context.under_workdir(options.data, "data/data.h5");
  const std::string run_dir = context.under_workdir(options.out, "teacher");
  data::Dataset dataset = io::read_dataset(data_path);
  RunRecord& record = open_record(context, run_dir);
  record.add_input("data", data_path);
  log::open_jsonl(run_dir);

  const std::int64_t steps_per_epoch = dataset.train.size() / options.classifier.training.batch;
  TeacherTask task(context, options, dataset, steps_per_epoch);
  const auto trainer =
      trainer_options(context, options.classifier.training, run_dir, "train-teacher");
  const std::string hash = config_hash(context) + "-" + dataset.info.source_sha256.substr(0, 8);
  train::CheckpointManager checkpoints(context.comm, trainer.checkpoint_dir, trainer.keep,
                                       run_identity(context, hash), context.config);
  log::info("train-teacher: resnet20 w=" + std::to_string(task.shape().width) + " (" +
            std::to_string(nn::parameter_count(*task.model())) + " parameters) on " +
            std::to_string(dataset.train.size()) + " images, " +
            std::to_string(context.comm.size()) + " rank(s) x " +
            std::to_string(context.threads.intra_op) + " thread(s), batch " +
            std::to_string(trainer.global_batch));
  const auto outcome = train::run_training(context.comm, task, trainer, checkpoints);
  if (outcome.preempted) {
    record.finish("preempted");
    return exit_code::preempted;
  }

  // The best-on-val weights are the teacher; test accuracy is measured once, here.
  const auto result = finish_classifier(context, task, checkpoints, run_dir, dataset, outcome);
  Json results{{"step", "train-teacher"},
               {"model", "resnet20"},
               {"width", task.shape().width},
               {"parameters", nn::parameter_count(*task.model())},
               {"dataset", dataset.info.name},
               {"train_images", dataset.train.size()},
               {"epochs", trainer.epochs},
               {"label_smoothing", options.classifier.label_smoothing},
               {"mixup", options.mixup},
               {"best_epoch", outcome.best.value("epoch", 0)},
               {"val_accuracy", result.val_accuracy},
               {"test_accuracy", result.test.accuracy()},
               {"test_images", result.test.count},
               {"world_size", context.comm.size()},
               {"threads_per_rank", context.threads.intra_op},
               {"train_seconds_this_run", outcome.seconds},
               {"images_per_second", outcome.images_per_second},
               {"params_sha256", result.params_sha256},
               {"history", outcome.history}};
  if (context.comm.rank() == 0) {
    make_dirs(context.workdir() + "/results");
    write_history_csv(
        report::results_path(context.workdir(), options.results_name + "_epochs", "csv"),
        outcome.history,
        {"epoch", "train_loss", "val_accuracy", "val_loss", "seconds", "images_per_second"});
    results["cost_split"] = record.cost_split();
    report::write_results(context.workdir(), options.results_name, results);
  }
  char line[160];
  std::snprintf(
      line, sizeof line, "train-teacher: test accuracy %.2f %% (best epoch %lld, val %.2f %%)",
      100.0 * result.test.accuracy(), static_cast<long long>(outcome.best.value("epoch", 0)),
      100.0 * result.val_accuracy);
  log::info(line);
  record.set("results", Json{{"test_accuracy", result.test.accuracy()},
                             {"val_accuracy", result.val_accuracy},
                             {"params_sha256", result.params_sha256}});
  record.finish("complete");
  return exit_code::ok;
}

}  // namespace

Step train_teacher_step() {
  return typed_step<TeacherOptions>(
      "train-teacher", "train the resnet20 teacher on the real train split (data-parallel)",
      add_teacher_options, run_train_teacher);
}

}  // namespace kr::steps
