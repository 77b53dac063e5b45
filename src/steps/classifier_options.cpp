#include "kr/steps/classifier_options.hpp"

#include <torch/torch.h>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/sha256.hpp"
#include "kr/nn/serialize.hpp"
#include "kr/steps/artifacts.hpp"
#include "kr/steps/training_options.hpp"

namespace kr::steps {

void add_classifier_options(OptionTable& table, ClassifierOptions& options,
                            double default_label_smoothing, std::int64_t default_epochs) {
  // clang-format off
  table
      ("width", &options.width, 16, "resnet20 base width w").at_least(1)
      ("lr", &options.lr, 0.1, "peak learning rate (SGD, Nesterov momentum, cosine)").at_least(0)
      ("momentum", &options.momentum, 0.9, "SGD momentum").range(0, 1)
      ("weight-decay", &options.weight_decay, 5e-4, "L2 weight decay").at_least(0)
      ("warmup-epochs", &options.warmup_epochs, 1.0, "linear learning-rate warm-up (epochs)").at_least(0)
      ("label-smoothing", &options.label_smoothing, default_label_smoothing, "label smoothing of the cross-entropy").range(0, 0.999)
      ("crop-padding", &options.crop_padding, 2, "random-crop zero padding (pixels per side)").at_least(0)
      ("hflip", &options.hflip, "auto", "random horizontal flips: auto (per data set), yes, no")
      ("channels-last", &options.channels_last, true, "NHWC memory format for convolutions (faster here; widths not divisible by 8 stay NCHW)")
      ("eval-batch", &options.eval_batch, 500, "batch size for evaluation").at_least(1);
  // clang-format on
  add_training_options(table, options.training, default_epochs, 128);
}

train::ClassifierSettings classifier_settings(const Context& context,
                                              const ClassifierOptions& options,
                                              const data::DatasetInfo& info) {
  train::ClassifierSettings settings;
  settings.width = options.width;
  settings.lr = options.lr;
  settings.momentum = options.momentum;
  settings.weight_decay = options.weight_decay;
  settings.warmup_epochs = options.warmup_epochs;
  settings.label_smoothing = options.label_smoothing;
  settings.crop_padding = options.crop_padding;
  settings.channels_last = options.channels_last;
  settings.eval_batch = options.eval_batch;
  settings.bucket_mb = options.training.bucket_mb;
  settings.seed = context.get<std::uint64_t>("seed");
  const auto hflip = options.hflip;
  if (hflip != "auto" && hflip != "yes" && hflip != "no")
    throw UsageError("--hflip must be auto, yes or no");
  settings.hflip = hflip == "auto" ? info.hflip : hflip == "yes";
  if (settings.label_smoothing < 0 || settings.label_smoothing >= 1)
    throw UsageError("--label-smoothing must be in [0, 1)");
  return settings;
}

ClassifierResult finish_classifier(Context& context, train::ClassifierTask& task,
                                   train::CheckpointManager& checkpoints,
                                   const std::string& run_dir, const data::Dataset& dataset,
                                   const train::TrainOutcome& outcome) {
  const auto best = checkpoints.find_best();
  if (!best) throw Error(run_dir + ": training finished without a best checkpoint");
  nn::load_module(*task.model(), *best + "/model.pt");
  ClassifierResult result;
  result.test = task.evaluate_on(dataset.test);
  result.val_accuracy = outcome.best.at("val_accuracy").get<double>();
  result.params_sha256 = nn::state_sha256(*task.model());
  result.test_sha256 = split_sha256(dataset.test);
  if (context.comm.rank() == 0) {
    nn::save_module(*task.model(), run_dir + "/model.pt");
    Json description =
        classifier_description(task.shape(), result.params_sha256, dataset.info.source_sha256);
    // null for a data file without a test split (kr tune's candidates)
    description["test_accuracy"] =
        result.test.count > 0 ? Json(result.test.accuracy()) : Json(nullptr);
    description["val_accuracy"] = result.val_accuracy;
    description["test_sha256"] = result.test_sha256;
    write_file_atomic(run_dir + "/model.json", description.dump(2) + "\n");
  }
  return result;
}

std::string split_sha256(const data::ImageSet& set) {
  Sha256 hash;
  const auto images = set.images.contiguous();
  const auto labels = set.labels.contiguous();
  hash.update(images.data_ptr(), images.nbytes());
  hash.update(labels.data_ptr(), labels.nbytes());
  return hash.hex_digest();
}

void write_history_csv(const std::string& path, const Json& history,
                       const std::vector<std::string>& columns) {
  std::string csv;
  for (std::size_t i = 0; i < columns.size(); ++i) csv += (i ? "," : "") + columns[i];
  csv += "\n";
  for (const auto& epoch : history) {
    for (std::size_t i = 0; i < columns.size(); ++i) {
      const auto& value = epoch.contains(columns[i]) ? epoch.at(columns[i]) : Json(nullptr);
      csv += (i ? "," : "") + (value.is_null() ? std::string() : value.dump());
    }
    csv += "\n";
  }
  write_file_atomic(path, csv);
}

}  // namespace kr::steps
