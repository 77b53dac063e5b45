#include "kr/steps/classifier_options.hpp"

#include <torch/torch.h>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/nn/serialize.hpp"
#include "kr/steps/artifacts.hpp"
#include "kr/steps/training_options.hpp"

namespace kr::steps {

void add_classifier_options(po::options_description& options, double default_label_smoothing,
                            std::int64_t default_epochs) {
  // clang-format off
  options.add_options()
      ("width", po::value<std::int64_t>()->default_value(16), "resnet20 base width w")
      ("lr", po::value<double>()->default_value(0.1), "peak learning rate (SGD, Nesterov momentum, cosine)")
      ("momentum", po::value<double>()->default_value(0.9), "SGD momentum")
      ("weight-decay", po::value<double>()->default_value(5e-4), "L2 weight decay")
      ("warmup-epochs", po::value<double>()->default_value(1.0), "linear learning-rate warm-up (epochs)")
      ("label-smoothing", po::value<double>()->default_value(default_label_smoothing), "label smoothing of the cross-entropy")
      ("crop-padding", po::value<int>()->default_value(2), "random-crop zero padding (pixels per side)")
      ("hflip", po::value<std::string>()->default_value("auto"), "random horizontal flips: auto (per data set), yes, no")
      ("channels-last", po::value<bool>()->default_value(true), "NHWC memory format for convolutions (faster here; widths not divisible by 8 stay NCHW)")
      ("eval-batch", po::value<std::int64_t>()->default_value(500), "batch size for evaluation");
  // clang-format on
  add_training_options(options, default_epochs, 128);
}

train::ClassifierSettings classifier_settings(const Context& context,
                                              const data::DatasetInfo& info) {
  train::ClassifierSettings settings;
  settings.width = context.get<std::int64_t>("width");
  settings.lr = context.get<double>("lr");
  settings.momentum = context.get<double>("momentum");
  settings.weight_decay = context.get<double>("weight-decay");
  settings.warmup_epochs = context.get<double>("warmup-epochs");
  settings.label_smoothing = context.get<double>("label-smoothing");
  settings.crop_padding = context.get<int>("crop-padding");
  settings.channels_last = context.get<bool>("channels-last");
  settings.eval_batch = context.get<std::int64_t>("eval-batch");
  settings.bucket_mb = context.get<double>("bucket-mb");
  settings.seed = context.get<std::uint64_t>("seed");
  const auto hflip = context.get<std::string>("hflip");
  if (hflip != "auto" && hflip != "yes" && hflip != "no")
    throw UsageError("--hflip must be auto, yes or no");
  settings.hflip = hflip == "auto" ? info.hflip : hflip == "yes";
  if (settings.label_smoothing < 0 || settings.label_smoothing >= 1)
    throw UsageError("--label-smoothing must be in [0, 1)");
  return settings;
}

ClassifierResult finish_classifier(Context& context, train::ClassifierTask& task,
                                   train::CheckpointManager& checkpoints,
                                   const std::string& run_dir, const data::Dataset& dataset) {
  const auto best = checkpoints.find_best();
  if (!best) throw Error(run_dir + ": training finished without a best checkpoint");
  nn::load_module(*task.model(), *best + "/model.pt");
  ClassifierResult result;
  result.test = task.evaluate_on(dataset.test);
  result.val = task.evaluate_on(dataset.val);
  result.params_sha256 = nn::state_sha256(*task.model());
  if (context.comm.rank() == 0) {
    nn::save_module(*task.model(), run_dir + "/model.pt");
    write_file_atomic(
        run_dir + "/model.json",
        classifier_description(task.shape(), result.params_sha256, dataset.info.source_sha256)
                .dump(2) +
            "\n");
  }
  return result;
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
