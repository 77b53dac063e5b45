// `kr train-generator`: the class-conditional GAN or DDPM on the real train
// split, data-parallel on the shared training loop.
#include <torch/torch.h>

#include <filesystem>
#include <optional>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/core/sha256.hpp"
#include "kr/data/augment.hpp"
#include "kr/gen/quality.hpp"
#include "kr/gen/sampler.hpp"
#include "kr/gen/update.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/io/png.hpp"
#include "kr/io/shard.hpp"
#include "kr/nn/resnet.hpp"
#include "kr/nn/serialize.hpp"
#include "kr/report/results.hpp"
#include "kr/steps/artifacts.hpp"
#include "kr/steps/run_record.hpp"
#include "kr/steps/step.hpp"
#include "kr/steps/training_options.hpp"
#include "kr/train/trainer.hpp"

namespace kr::steps {

namespace {

constexpr std::uint64_t kGridSeed = 20240601;  // fixed: successive grids show the same latents

struct GeneratorOptions {
  std::string data;
  std::string data_pool;
  std::int64_t data_pool_size = 0;
  std::string teacher;
  std::string out;
  std::string model;
  double lr = 2e-4;
  double beta1 = -1.0;
  double beta2 = 0.999;
  double ema = 0.999;
  std::int64_t latent = 64;
  std::int64_t g_width = 32;
  std::int64_t d_width = 32;
  std::int64_t d_steps = 2;
  double mode_seeking = 0.0;
  double z_scale = 1.0;
  std::int64_t unet_width = 32;
  std::string schedule;
  double cfg_drop = 0.1;
  std::int64_t steps = 50;
  double guidance = 2.0;
  bool guidance_batched = true;
  std::int64_t eval_samples = 1000;
  std::int64_t final_samples = 0;
  std::int64_t sample_batch = 250;
  std::int64_t grid_per_class = 10;
  TrainingOptions training;
};

void add_generator_options(OptionTable& table, GeneratorOptions& options) {
  // clang-format off
  table
      ("data", &options.data, "", "prepared data set (default: <workdir>/data/data.h5)").operational()
      ("data-pool", &options.data_pool, "", "train on this synthetic pool's images and labels instead of the real train split (Privacy Distillation's generator 2); val, the teacher and the shape still come from --data")
      ("data-pool-size", &options.data_pool_size, 0, "--data-pool rows trained on, its first (0: one regeneration of it)").at_least(0)
      ("teacher", &options.teacher, "", "trained teacher run for quality measures (default: <workdir>/teacher; 'none' to skip)")
      ("out", &options.out, "", "run directory (default: <workdir>/generator)").operational()
      ("model", &options.model, "gan", "gan or ddpm")
      ("lr", &options.lr, 2e-4, "Adam learning rate (generator and discriminator)").at_least(0)
      ("beta1", &options.beta1, -1.0, "Adam beta1 (-1: 0.5 for gan, 0.9 for ddpm)")
      ("beta2", &options.beta2, 0.999, "Adam beta2")
      ("ema", &options.ema, 0.999, "EMA decay of the sampling weights (warm-up: min(ema, (1+s)/(10+s)) at step s)").range(0, 1)
      ("latent", &options.latent, 64, "gan: latent size").at_least(1)
      ("g-width", &options.g_width, 32, "gan: generator base width").at_least(1)
      ("d-width", &options.d_width, 32, "gan: discriminator base width").at_least(1)
      ("d-steps", &options.d_steps, 2, "gan: discriminator steps per generator step").at_least(1)
      ("mode-seeking", &options.mode_seeking, 0.0, "gan: weight of MSGAN's mode-seeking term in the generator loss (Note [Mode seeking]; 0: off)").at_least(0)
      ("z-scale", &options.z_scale, 1.0, "gan: latent scale s at sampling time, z ~ N(0, s^2 I)").at_least(1e-6)
      ("unet-width", &options.unet_width, 32, "ddpm: UNet base width c").at_least(1)
      ("schedule", &options.schedule, "linear", "ddpm: noise schedule, linear or cosine")
      ("cfg-drop", &options.cfg_drop, 0.1, "ddpm: probability of dropping the label in training").range(0, 1)
      ("steps", &options.steps, 50, "ddpm: DDIM sampling steps").at_least(1)
      ("guidance", &options.guidance, 2.0, "ddpm: classifier-free guidance scale w").at_least(0)
      ("guidance-batched", &options.guidance_batched, true, "ddpm: one forward over [cond; null] per step (else two)")
      ("eval-samples", &options.eval_samples, 1000, "samples scored against the teacher each epoch and at the end").at_least(0)
      ("final-samples", &options.final_samples, 0, "samples scored at the end (0: --eval-samples)").at_least(0)
      ("sample-batch", &options.sample_batch, 250, "sampling batch size (fixed; see `kr generate`)").at_least(1)
      ("grid-per-class", &options.grid_per_class, 10, "columns of the per-class sample grid written at each checkpoint").at_least(0);
  // clang-format on
  add_training_options(table, options.training, 20, 128);
}

gen::GeneratorSpec spec_from(const GeneratorOptions& options, const data::DatasetInfo& info) {
  gen::GeneratorSpec spec;
  spec.model = options.model;
  spec.channels = info.channels;
  spec.classes = info.classes;
  spec.height = info.height;
  spec.width = info.width;
  spec.latent = options.latent;
  spec.g_width = options.g_width;
  spec.d_width = options.d_width;
  spec.z_scale = options.z_scale;
  spec.unet_width = options.unet_width;
  spec.schedule = options.schedule;
  spec.sample_steps = options.steps;
  spec.guidance = options.guidance;
  spec.guidance_batched = options.guidance_batched;
  if (spec.model != "gan" && spec.model != "ddpm")
    throw UsageError("--model must be gan or ddpm, got '" + spec.model + "'");
  return spec;
}

gen::GeneratorHyper hyper_from(const Context& context, const GeneratorOptions& options) {
  gen::GeneratorHyper hyper;
  hyper.lr = options.lr;
  hyper.beta1 = options.beta1;
  hyper.beta2 = options.beta2;
  hyper.ema = options.ema;
  hyper.cfg_drop = options.cfg_drop;
  hyper.d_steps = options.d_steps;
  hyper.mode_seeking = options.mode_seeking;
  hyper.bucket_mb = options.training.bucket_mb;
  hyper.seed = context.get<std::uint64_t>("seed");
  return hyper;
}

class GeneratorTask final : public train::TrainTask {
 public:
  GeneratorTask(Context& context, const GeneratorOptions& options, data::Dataset& dataset,
                const gen::GeneratorSpec& spec, std::optional<LoadedClassifier>& teacher,
                const std::string& run_dir)
      : context_(context),
        options_(options),
        dataset_(dataset),
        spec_(spec),
        teacher_(teacher),
        run_dir_(run_dir),
        seed_(context.get<std::uint64_t>("seed")),
        update_(context.comm, spec, hyper_from(context, options)) {
    if (teacher_) {
      real_ = gen::real_reference(context.comm, teacher_->view(), dataset.val, 500);
    }
  }

  std::int64_t dataset_size() const override { return dataset_.train.size(); }

  train::StepOutput train_step(const std::vector<std::int64_t>& local,
                               const train::StepInfo& info) override {
    auto real = data::assemble_batch(dataset_.train, local, data::Augment{}, seed_,
                                     static_cast<std::uint64_t>(info.epoch));
    auto labels = data::gather_labels(dataset_.train, local);
    const auto losses =
        update_.step(real, labels, local, static_cast<std::uint64_t>(info.global_step));
    g_loss_sum_ += losses.g_loss;
    ++steps_since_eval_;
    return train::StepOutput{losses.loss, static_cast<std::int64_t>(local.size())};
  }

  Json evaluate(std::int64_t epoch) override {
    Json metrics = Json::object();
    auto g =
        torch::tensor({steps_since_eval_ ? g_loss_sum_ / steps_since_eval_ : 0.0}, torch::kFloat64);
    context_.comm.allreduce(g, comm::ReduceOp::avg);
    if (spec_.model == "gan") metrics["g_loss"] = g.item<double>();
    g_loss_sum_ = 0.0;
    steps_since_eval_ = 0;
    metrics["epoch_index"] = epoch + 1;
    if (teacher_) {
      measure(options_.eval_samples);
      metrics["teacher_agreement"] = last_quality_.agreement;
      metrics["frechet_teacher_features"] = last_quality_.frechet;
      metrics["precision"] = last_quality_.precision;
      metrics["recall"] = last_quality_.recall;
      metrics["neg_frechet"] = -last_quality_.frechet;
    }
    return metrics;
  }

  gen::QualityReport measure(std::int64_t samples) {
    last_quality_ = gen::measure_quality(context_.comm, update_.sampler(), seed_ + 1, samples,
                                         options_.sample_batch, teacher_->view(), real_);
    return last_quality_;
  }

  std::string selection_metric() const override { return teacher_ ? "neg_frechet" : "epoch_index"; }

  train::CheckpointItems checkpoint_items() override { return update_.checkpoint_items(); }

  void on_checkpoint(std::int64_t global_step) override {
    const auto grid =
        gen::class_grid(context_.comm, update_.sampler(), options_.grid_per_class, kGridSeed);
    if (context_.comm.rank() != 0) return;
    make_dirs(run_dir_ + "/samples");
    io::write_png(run_dir_ + "/samples/step_" + std::to_string(global_step) + ".png", grid);
    io::write_png(run_dir_ + "/samples/latest.png", grid);
  }

  gen::GeneratorUpdate& update() { return update_; }

 private:
  Context& context_;
  const GeneratorOptions& options_;
  data::Dataset& dataset_;
  gen::GeneratorSpec spec_;
  std::optional<LoadedClassifier>& teacher_;
  std::string run_dir_;
  std::uint64_t seed_ = 0;
  gen::GeneratorUpdate update_;
  gen::RealReference real_;
  gen::QualityReport last_quality_;
  double g_loss_sum_ = 0.0;
  std::int64_t steps_since_eval_ = 0;
};

std::int64_t discriminator_parameters(GeneratorTask& task) {
  auto* discriminator = task.update().discriminator();
  return discriminator ? nn::parameter_count(*discriminator) : 0;
}

// results/generator.json
Json generator_results(const Context& context, const gen::GeneratorSpec& spec, GeneratorTask& task,
                       const data::Dataset& dataset, const train::TrainerOptions& trainer,
                       const train::TrainOutcome& outcome, const Json& quality,
                       const std::string& run_dir, const std::string& trained_on) {
  return Json{{"step", "train-generator"},
              {"model", spec.model},
              {"spec", spec.to_json()},
              {"sampling_parameters", nn::parameter_count(task.update().ema())},
              {"discriminator_parameters", discriminator_parameters(task)},
              {"dataset", dataset.info.name},
              {"train_images", dataset.train.size()},
              {"trained_on", trained_on},
              {"epochs", trainer.epochs},
              {"best_epoch", outcome.best.value("epoch", 0)},
              {"quality", quality},
              {"world_size", context.comm.size()},
              {"threads_per_rank", context.threads.intra_op},
              {"train_seconds_this_run", outcome.seconds},
              {"images_per_second", outcome.images_per_second},
              {"ema_sha256", sha256_file(run_dir + "/ema.pt")},
              {"sample_grid", run_dir + "/samples.png"},
              {"history", outcome.history}};
}

// --data-pool: the pool's first rows in place of the real train split (every rank reads
// them, as it reads the real split); "" when training on real data, else the pool's
// settings hash (part of the run's identity).
std::string use_data_pool(const GeneratorOptions& options, data::Dataset& dataset,
                          const std::string& data_path) {
  if (options.data_pool.empty()) return "";
  const auto pool = open_matching_pool(options.data_pool, dataset.info, data_path);
  const std::int64_t rows =
      options.data_pool_size > 0 ? options.data_pool_size : regeneration_rows(pool);
  if (rows > pool.size())
    throw UsageError("--data-pool-size " + std::to_string(rows) + " is more than the " +
                     std::to_string(pool.size()) + " rows of " + options.data_pool);
  dataset.train = pool.read(0, rows);
  return pool.manifest().value("settings_hash", std::string("unhashed"));
}

int run_train_generator(Context& context, const GeneratorOptions& options) {
  const std::string data_path = context.under_workdir(options.data, "data/data.h5");
  const std::string run_dir = context.under_workdir(options.out, "generator");
  data::Dataset dataset = io::read_dataset(data_path);
  const std::string pool_hash = use_data_pool(options, dataset, data_path);
  const auto spec = spec_from(options, dataset.info);
  RunRecord& record = open_record(context, run_dir);
  record.add_input("data", data_path);
  if (!pool_hash.empty()) record.add_input("data_pool", options.data_pool + "/manifest.json");
  log::open_jsonl(run_dir);

  std::optional<LoadedClassifier> teacher;
  const std::string teacher_option = options.teacher;
  if (teacher_option != "none") {
    const std::string teacher_dir = context.under_workdir(options.teacher, "teacher");
    teacher = load_classifier(teacher_dir, dataset.info.channels, dataset.info.classes);
    record.add_input("teacher", teacher->weights);
  }
  if (context.comm.rank() == 0) {
    make_dirs(run_dir);
    write_file_atomic(run_dir + "/model.json", spec.to_json().dump(2) + "\n");
  }

  GeneratorTask task(context, options, dataset, spec, teacher, run_dir);
  const auto trainer = trainer_options(context, options.training, run_dir, "train-generator");
  const std::string hash =
      config_hash(context, {"teacher", "eval-samples", "final-samples", "grid-per-class"}) + "-" +
      dataset.info.source_sha256.substr(0, 8) + (pool_hash.empty() ? "" : "-pool-" + pool_hash);
  train::CheckpointManager checkpoints(context.comm, trainer.checkpoint_dir, trainer.keep,
                                       run_identity(context, hash), context.config);
  const std::int64_t g_params = nn::parameter_count(task.update().ema());
  const std::int64_t d_params = discriminator_parameters(task);
  log::info("train-generator: " + spec.model + " (" + std::to_string(g_params) +
            " sampling parameters" +
            (spec.model == "gan" ? ", discriminator " + std::to_string(d_params) : std::string()) +
            ") on " + std::to_string(dataset.train.size()) +
            (pool_hash.empty() ? " real" : " synthetic (" + options.data_pool + ")") + " images, " +
            std::to_string(context.comm.size()) + " rank(s) x " +
            std::to_string(context.threads.intra_op) + " thread(s), batch " +
            std::to_string(trainer.global_batch));
  const auto outcome = train::run_training(context.comm, task, trainer, checkpoints);
  if (outcome.preempted) {
    record.finish("preempted");
    return exit_code::preempted;
  }

  // The best checkpoint's EMA weights (by teacher-space Frechet distance on val, or the
  // last epoch without a teacher) are the generator.
  const auto best = checkpoints.find_best();
  if (!best) throw Error(run_dir + ": training finished without a best checkpoint");
  nn::load_module(task.update().ema(), *best + "/ema.pt");
  Json quality = nullptr;
  if (teacher) {
    std::int64_t samples = options.final_samples;
    if (samples <= 0) samples = options.eval_samples;
    quality = task.measure(samples).to_json();
  }
  const auto grid =
      gen::class_grid(context.comm, task.update().sampler(), options.grid_per_class, kGridSeed);
  if (context.comm.rank() == 0) {
    nn::save_module(task.update().ema(), run_dir + "/ema.pt");
    io::write_png(run_dir + "/samples.png", grid);
    Json results =
        generator_results(context, spec, task, dataset, trainer, outcome, quality, run_dir,
                          options.data_pool.empty() ? "real train" : options.data_pool);
    // results/generator.json for the default run directory; results/<name>.json for another.
    const std::string name = std::filesystem::path(run_dir).filename().string();
    results["cost_split"] = record.cost_split();
    report::write_results(context.workdir(), name.empty() ? "generator" : name, results);
  }
  if (teacher) {
    char line[200];
    std::snprintf(
        line, sizeof line,
        "train-generator: teacher agreement %.1f %%, teacher-space Frechet distance %.3f, "
        "precision %.3f, recall %.3f (%lld samples, best epoch %lld)",
        100.0 * quality.at("teacher_agreement").get<double>(),
        quality.at("frechet_teacher_features").get<double>(), quality.at("precision").get<double>(),
        quality.at("recall").get<double>(),
        static_cast<long long>(quality.at("samples").get<std::int64_t>()),
        static_cast<long long>(outcome.best.value("epoch", 0)));
    log::info(line);
  }
  record.set("results", Json{{"quality", quality}});
  record.finish("complete");
  return exit_code::ok;
}

}  // namespace

Step train_generator_step() {
  return typed_step<GeneratorOptions>(
      "train-generator",
      "train the class-conditional GAN or DDPM on the real train split (data-parallel)",
      add_generator_options, run_train_generator);
}

}  // namespace kr::steps
