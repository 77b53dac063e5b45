// `kr train-teacher`: resnet20 on the real train split, data-parallel.
#include <torch/torch.h>

#include <fstream>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/data/augment.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/nn/resnet.hpp"
#include "kr/nn/serialize.hpp"
#include "kr/steps/run_record.hpp"
#include "kr/steps/step.hpp"
#include "kr/steps/training_options.hpp"
#include "kr/train/data_parallel.hpp"
#include "kr/train/evaluate.hpp"
#include "kr/train/trainer.hpp"

namespace kr::steps {

namespace {

void add_teacher_options(po::options_description& options) {
  // clang-format off
  options.add_options()
      ("data", po::value<std::string>()->default_value(""), "prepared data set (default: <workdir>/data/data.h5)")
      ("out", po::value<std::string>()->default_value(""), "run directory (default: <workdir>/teacher)")
      ("width", po::value<std::int64_t>()->default_value(16), "resnet20 base width w")
      ("lr", po::value<double>()->default_value(0.1), "peak learning rate (SGD, Nesterov momentum, cosine)")
      ("momentum", po::value<double>()->default_value(0.9), "SGD momentum")
      ("weight-decay", po::value<double>()->default_value(5e-4), "L2 weight decay")
      ("warmup-epochs", po::value<double>()->default_value(1.0), "linear learning-rate warm-up (epochs)")
      ("label-smoothing", po::value<double>()->default_value(0.0), "label smoothing of the cross-entropy")
      ("crop-padding", po::value<int>()->default_value(2), "random-crop zero padding (pixels per side)")
      ("hflip", po::value<std::string>()->default_value("auto"), "random horizontal flips: auto (per data set), yes, no")
      ("channels-last", po::value<bool>()->default_value(true), "NHWC memory format for convolutions (3x faster here; widths not divisible by 8 stay NCHW)")
      ("eval-batch", po::value<std::int64_t>()->default_value(500), "batch size for evaluation");
  // clang-format on
  add_training_options(options, 30, 128);
}

// LibTorch 1.13's oneDNN path crashes on channels-last convolutions whose widths
// are not multiples of 8 (seen with w=4), so such widths stay NCHW.
bool use_channels_last(const Context& context) {
  return context.get<bool>("channels-last") && context.get<std::int64_t>("width") % 8 == 0;
}

class TeacherTask final : public train::TrainTask {
 public:
  TeacherTask(Context& context, data::Dataset& dataset, nn::ResNet20 model,
              std::int64_t steps_per_epoch)
      : context_(context),
        dataset_(dataset),
        model_(std::move(model)),
        optimizer_(model_->parameters(), torch::optim::SGDOptions(context.get<double>("lr"))
                                             .momentum(context.get<double>("momentum"))
                                             .nesterov(true)
                                             .weight_decay(context.get<double>("weight-decay"))),
        parallel_(context.comm, *model_, context.get<double>("bucket-mb")) {
    augment_.crop_padding = context.get<int>("crop-padding");
    const auto hflip = context.get<std::string>("hflip");
    if (hflip != "auto" && hflip != "yes" && hflip != "no")
      throw UsageError("--hflip must be auto, yes or no");
    augment_.hflip = hflip == "auto" ? dataset.info.hflip : hflip == "yes";
    warmup_steps_ =
        static_cast<std::int64_t>(context.get<double>("warmup-epochs") * steps_per_epoch);
    channels_last_ = use_channels_last(context);
    label_smoothing_ = context.get<double>("label-smoothing");
    seed_ = context.get<std::uint64_t>("seed");
  }

  std::int64_t dataset_size() const override { return dataset_.train.size(); }

  train::StepOutput train_step(const std::vector<std::int64_t>& local,
                               const train::StepInfo& info) override {
    model_->train();
    auto images = data::assemble_batch(dataset_.train, local, augment_, seed_,
                                       static_cast<std::uint64_t>(info.epoch));
    if (channels_last_) images = images.contiguous(at::MemoryFormat::ChannelsLast);
    auto labels = data::gather_labels(dataset_.train, local);
    const double lr = cosine_learning_rate(context_.get<double>("lr"), info.global_step,
                                           info.total_steps, warmup_steps_);
    for (auto& group : optimizer_.param_groups())
      static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
    optimizer_.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(
        model_->forward(images), labels,
        torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(label_smoothing_));
    loss.backward();
    parallel_.synchronize_gradients();
    optimizer_.step();
    return train::StepOutput{loss.item<double>(), static_cast<std::int64_t>(local.size())};
  }

  Json evaluate(std::int64_t) override {
    auto result = evaluate_on(dataset_.val);
    return Json{{"val_accuracy", result.accuracy()}, {"val_loss", result.mean_loss()}};
  }

  train::EvalResult evaluate_on(const data::ImageSet& set) {
    model_->eval();
    return train::evaluate_classifier(
        context_.comm,
        [&](const at::Tensor& images) {
          return model_->forward(channels_last_ ? images.contiguous(at::MemoryFormat::ChannelsLast)
                                                : images);
        },
        set, context_.get<std::int64_t>("eval-batch"));
  }

  train::CheckpointItems checkpoint_items() override {
    return train::CheckpointItems{{{"model", model_.ptr().get()}}, {{"optimizer", &optimizer_}}};
  }

  void synchronize_buffers() override { parallel_.broadcast_buffers(); }

 private:
  Context& context_;
  data::Dataset& dataset_;
  nn::ResNet20 model_;
  torch::optim::SGD optimizer_;
  train::DataParallel parallel_;
  data::Augment augment_;
  std::int64_t warmup_steps_ = 0;
  bool channels_last_ = true;
  double label_smoothing_ = 0.0;
  std::uint64_t seed_ = 0;
};

void write_epochs_csv(const std::string& path, const Json& history) {
  std::string csv = "epoch,train_loss,val_accuracy,val_loss,seconds,images_per_second\n";
  for (const auto& epoch : history) {
    csv += std::to_string(epoch.value("epoch", 0)) + "," +
           std::to_string(epoch.value("train_loss", 0.0)) + "," +
           std::to_string(epoch.value("val_accuracy", 0.0)) + "," +
           std::to_string(epoch.value("val_loss", 0.0)) + "," +
           std::to_string(epoch.value("seconds", 0.0)) + "," +
           std::to_string(epoch.value("images_per_second", 0.0)) + "\n";
  }
  write_file_atomic(path, csv);
}

int run_train_teacher(Context& context) {
  const std::string data_path = context.path_option("data", "data/data.h5");
  const std::string run_dir = context.path_option("out", "teacher");
  const std::string results_dir = context.workdir() + "/results";
  data::Dataset dataset = io::read_dataset(data_path);
  RunRecord record(context, run_dir);
  record.add_input("data", data_path);
  log::open_jsonl(run_dir);

  nn::ResNetShape shape{dataset.info.channels, dataset.info.classes,
                        context.get<std::int64_t>("width"), dataset.info.height,
                        dataset.info.width};
  torch::manual_seed(context.get<std::uint64_t>("seed"));
  nn::ResNet20 model(shape);
  if (use_channels_last(context)) nn::to_channels_last(*model);
  const std::int64_t steps_per_epoch = dataset.train.size() / context.get<std::int64_t>("batch");
  TeacherTask task(context, dataset, model, steps_per_epoch);

  auto options = trainer_options(context, run_dir, "train-teacher");
  const std::string hash =
      config_hash(context.config) + "-" + dataset.info.source_sha256.substr(0, 8);
  train::CheckpointManager checkpoints(context.comm, options.checkpoint_dir, options.keep,
                                       run_identity(context, hash), context.config);
  log::info("train-teacher: resnet20 w=" + std::to_string(shape.width) + " (" +
            std::to_string(nn::parameter_count(*model)) + " parameters) on " +
            std::to_string(dataset.train.size()) + " images, " +
            std::to_string(context.comm.size()) + " rank(s) x " +
            std::to_string(context.threads.intra_op) + " thread(s), batch " +
            std::to_string(options.global_batch));
  const auto outcome = train::run_training(context.comm, task, options, checkpoints);
  if (outcome.preempted) {
    record.finish("preempted");
    return exit_code::preempted;
  }

  // The best-on-val weights are the teacher; test accuracy is measured once, here.
  const auto best = checkpoints.find_best();
  if (!best) throw Error(run_dir + ": training finished without a best checkpoint");
  nn::load_module(*model, *best + "/model.pt");
  const auto test = task.evaluate_on(dataset.test);
  const auto val = task.evaluate_on(dataset.val);
  const std::string params_sha = nn::state_sha256(*model);

  Json results{{"step", "train-teacher"},
               {"model", "resnet20"},
               {"width", shape.width},
               {"parameters", nn::parameter_count(*model)},
               {"dataset", dataset.info.name},
               {"train_images", dataset.train.size()},
               {"epochs", options.epochs},
               {"best_epoch", outcome.best.value("epoch", 0)},
               {"val_accuracy", val.accuracy()},
               {"test_accuracy", test.accuracy()},
               {"test_images", test.count},
               {"world_size", context.comm.size()},
               {"threads_per_rank", context.threads.intra_op},
               {"train_seconds_this_run", outcome.seconds},
               {"images_per_second", outcome.images_per_second},
               {"params_sha256", params_sha},
               {"history", outcome.history}};
  if (context.comm.rank() == 0) {
    make_dirs(results_dir);
    nn::save_module(*model, run_dir + "/model.pt");
    write_file_atomic(run_dir + "/model.json", Json{{"arch", "resnet20"},
                                                    {"width", shape.width},
                                                    {"channels", shape.channels},
                                                    {"classes", shape.classes},
                                                    {"height", shape.height},
                                                    {"width_pixels", shape.image_width},
                                                    {"params_sha256", params_sha},
                                                    {"data_sha256", dataset.info.source_sha256}}
                                                   .dump(2));
    write_epochs_csv(results_dir + "/teacher_epochs.csv", outcome.history);
    write_file_atomic(results_dir + "/teacher.json", results.dump(2) + "\n");
  }
  char line[160];
  std::snprintf(line, sizeof line,
                "train-teacher: test accuracy %.2f %% (best epoch %lld, val %.2f %%)",
                100.0 * test.accuracy(), static_cast<long long>(outcome.best.value("epoch", 0)),
                100.0 * val.accuracy());
  log::info(line);
  record.set("results", Json{{"test_accuracy", test.accuracy()},
                             {"val_accuracy", val.accuracy()},
                             {"params_sha256", params_sha}});
  record.finish("complete");
  return exit_code::ok;
}

}  // namespace

Step train_teacher_step() {
  return Step{"train-teacher", "train the resnet20 teacher on the real train split (data-parallel)",
              add_teacher_options, run_train_teacher};
}

}  // namespace kr::steps
