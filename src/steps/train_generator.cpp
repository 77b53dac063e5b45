// `kr train-generator`: the class-conditional GAN or DDPM on the real train
// split, data-parallel on the shared training loop.
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "kr/comm/communicator.hpp"
#include "kr/comm/dp_sgd.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/core/sha256.hpp"
#include "kr/data/augment.hpp"
#include "kr/data/image_set.hpp"
#include "kr/gen/quality.hpp"
#include "kr/gen/sampler.hpp"
#include "kr/gen/update.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/io/png.hpp"
#include "kr/io/shard.hpp"
#include "kr/nn/resnet.hpp"
#include "kr/nn/serialize.hpp"
#include "kr/privacy/accountant.hpp"
#include "kr/privacy/semantic.hpp"
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
  double dp_epsilon = 0.0;
  double dp_delta = 0.0;
  double dp_clip = 1.0;
  std::string dp_noise;
  std::int64_t dp_physical_batch = 64;
  std::string public_data;
  std::string selection;
  std::string init;
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
      ("grid-per-class", &options.grid_per_class, 10, "columns of the per-class sample grid written at each checkpoint").at_least(0)
      ("dp-epsilon", &options.dp_epsilon, 0.0, "gan: train the discriminator with DP-SGD to this (epsilon, delta) over the whole run (Note [DP GAN]; 0: not private)").at_least(0)
      ("dp-delta", &options.dp_delta, 0.0, "delta of --dp-epsilon (0: 1 / (N ln N), N the train images, as DPImageBench)").range(0, 1)
      ("dp-clip", &options.dp_clip, 1.0, "DP-SGD: per-sample gradient norm bound C").at_least(1e-12)
      ("dp-noise", &options.dp_noise, "secure", "DP-SGD noise source: secure (the OS CSPRNG, a formal guarantee) or keyed (reproducible, not a formal guarantee)")
      ("dp-physical-batch", &options.dp_physical_batch, 64, "DP-SGD: samples whose per-sample gradients one rank holds at once").at_least(1)
      ("public-data", &options.public_data, "", "PrivImage pre-training (Note [Semantic query]): train on this prepared public data set's train images of the classes --selection chose, labelled with the private class that chose them; the private data is not read but for its shape (no selection on its val: the last epoch is kept)")
      ("selection", &options.selection, "", "--public-data: a kr semantic-query run (its selection.json); its epsilon becomes the generator's")
      ("init", &options.init, "", "start from this generator run's weights (generator, EMA and discriminator; fresh optimisers), and compose the privacy it spent (its dp.json) with --dp-epsilon's");
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

// What --dp-epsilon asks for (Note [DP GAN]): the expected batch is the global batch B,
// q = B / N, one accountant step per discriminator step, sigma by Opacus' search.
struct DpPlan {
  comm::DpSettings settings;
  double epsilon = 0.0, delta = 0.0;
  std::int64_t steps = 0;
  Json prior;  // what was spent before on the same private data (--init's dp.json), or null
  Json describe() const;
};

privacy::RdpAccountant prior_accountant(const Json& prior) {
  return prior.is_null() ? privacy::RdpAccountant()
                         : privacy::RdpAccountant::from_history(prior.at("history"), "dp.json");
}

std::optional<DpPlan> dp_plan(const Context& context, const GeneratorOptions& options,
                              std::int64_t records, const Json& prior) {
  if (options.dp_epsilon <= 0.0) return std::nullopt;
  if (!options.public_data.empty())
    throw UsageError(
        "--dp-epsilon with --public-data: pre-training on public images needs no "
        "DP-SGD; fine-tune with --init and --dp-epsilon");
  if (options.model != "gan")
    throw UsageError("--dp-epsilon: DP-SGD is implemented for the GAN's discriminator only, not " +
                     options.model + " (the DDPM's whole network would need it)");
  if (!options.data_pool.empty())
    throw UsageError("--dp-epsilon with --data-pool: the guarantee is about the real train split");
  const std::int64_t batch = options.training.batch;
  if (records < 2 || batch > records)
    throw UsageError("--dp-epsilon: the batch " + std::to_string(batch) +
                     " must be below the train images " + std::to_string(records));
  DpPlan plan;
  plan.epsilon = options.dp_epsilon;
  const double n = static_cast<double>(records);
  plan.delta = options.dp_delta > 0.0 ? options.dp_delta : 1.0 / (n * std::log(n));
  plan.steps = options.training.epochs * (records / batch) * options.d_steps;
  plan.settings.clip = options.dp_clip;
  plan.settings.sample_rate = static_cast<double>(batch) / n;
  plan.settings.records = records;
  plan.settings.noise = comm::noise_source(options.dp_noise);
  plan.settings.seed = context.get<std::uint64_t>("seed");
  plan.prior = prior;
  // The whole budget: what the prior spent and these steps, composed (Note [RDP accountant]).
  plan.settings.noise_multiplier =
      privacy::noise_multiplier_for(plan.epsilon, plan.settings.sample_rate, plan.steps, plan.delta,
                                    0.01, prior_accountant(prior));
  return plan;
}

Json DpPlan::describe() const {
  auto accountant = prior_accountant(prior);
  accountant.add(settings.noise_multiplier, settings.sample_rate, steps);
  const auto spent = accountant.spent(delta);
  Json out = comm::describe(settings);
  out["target_epsilon"] = epsilon;
  out["epsilon"] = spent.epsilon;
  out["delta"] = delta;
  out["order"] = spent.order;
  out["steps"] = steps;
  out["accountant"] = "rdp (Note [RDP accountant])";
  out["history"] = accountant.history();
  out["covers"] =
      "the generator: DP-SGD on the discriminator's real-data term, the generator's update "
      "post-processing (Note [DP GAN]); no model selection on val (the last epoch is kept). "
      "Not the teacher, nor a student distilled from it";
  if (!prior.is_null()) {
    out["composed_with"] = prior;
    out["covers"] = out["covers"].get<std::string>() + "; composed with " +
                    prior.value("covers", std::string("the initial generator's"));
  }
  return out;
}

// PrivImage's pre-training set (Note [Semantic query]): --public-data's train images of
// the classes --selection chose, labelled with the private class that chose each. Returns
// the selection's DP record (its epsilon is the generator's) and sets `identity`.
Json use_public_data(const GeneratorOptions& options, data::Dataset& dataset,
                     std::string& identity) {
  if (options.public_data.empty()) {
    if (!options.selection.empty()) throw UsageError("--selection needs --public-data");
    return nullptr;
  }
  if (options.selection.empty())
    throw UsageError("--public-data needs --selection (a kr semantic-query run)");
  if (!options.data_pool.empty() || !options.init.empty())
    throw UsageError("--public-data cannot be combined with --data-pool or --init");
  const auto path = options.selection + "/selection.json";
  if (!path_exists(path)) throw Error(path + ": missing (run kr semantic-query first)");
  Json selection;
  try {
    selection = Json::parse(read_file(path));
  } catch (const std::exception& error) {
    throw Error(path + ": cannot parse: " + error.what());
  }
  const data::Dataset open = io::read_dataset(options.public_data);
  const auto& info = dataset.info;
  if (open.info.channels != info.channels || open.info.height != info.height ||
      open.info.width != info.width)
    throw UsageError(options.public_data + ": images of " + std::to_string(open.info.channels) +
                     "x" + std::to_string(open.info.height) + "x" +
                     std::to_string(open.info.width) + " beside the private " +
                     std::to_string(info.channels) + "x" + std::to_string(info.height) + "x" +
                     std::to_string(info.width));
  std::vector<std::vector<std::int64_t>> chosen;
  try {
    if (selection.at("private_classes").get<std::int64_t>() != info.classes ||
        selection.at("public_classes").get<std::int64_t>() != open.info.classes)
      throw UsageError(path + ": made for " + selection.at("private_classes").dump() +
                       " private and " + selection.at("public_classes").dump() +
                       " public classes, not " + std::to_string(info.classes) + " and " +
                       std::to_string(open.info.classes));
    chosen = selection.at("chosen").get<std::vector<std::vector<std::int64_t>>>();
  } catch (const Json::exception& error) {
    throw Error(path + ": " + error.what());
  }
  const auto [rows, labels] = privacy::pretraining_rows(open.train.labels, chosen);
  if (rows.empty()) throw UsageError(path + ": the chosen public classes hold no image");
  dataset.train = data::take(open.train, rows);
  dataset.train.labels =
      torch::tensor(labels, torch::kInt64).to(dataset.train.labels.scalar_type());
  identity = "-public-" + open.info.source_sha256.substr(0, 8) + "-" +
             sha256_string(selection.at("chosen").dump()).substr(0, 8);
  Json dp = selection.at("dp");
  dp["covers"] = dp.value("covers", std::string("the semantic query")) +
                 "; the generator trained on public images only (Note [Semantic query])";
  return dp;
}

// --init: the starting generator run's privacy record (its dp.json), or null.
Json init_dp(const GeneratorOptions& options) {
  if (options.init.empty()) return nullptr;
  const auto path = options.init + "/dp.json";
  if (!path_exists(path)) return nullptr;
  try {
    return Json::parse(read_file(path));
  } catch (const std::exception& error) {
    throw Error(path + ": cannot parse: " + error.what());
  }
}

gen::GeneratorHyper hyper_from(const Context& context, const GeneratorOptions& options,
                               const std::optional<DpPlan>& dp) {
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
  if (dp) {
    hyper.dp = dp->settings;
    hyper.dp_fake_batch = options.training.batch;
    hyper.dp_physical_batch = options.dp_physical_batch;
  }
  return hyper;
}

class GeneratorTask final : public train::TrainTask {
 public:
  GeneratorTask(Context& context, const GeneratorOptions& options, data::Dataset& dataset,
                const gen::GeneratorSpec& spec, std::optional<LoadedClassifier>& teacher,
                const std::string& run_dir, const std::optional<DpPlan>& dp)
      : context_(context),
        options_(options),
        dataset_(dataset),
        spec_(spec),
        teacher_(teacher),
        run_dir_(run_dir),
        seed_(context.get<std::uint64_t>("seed")),
        private_(dp.has_value()),
        select_last_(dp.has_value() || !options.public_data.empty()),
        update_(context.comm, spec, hyper_from(context, options, dp)) {
    if (teacher_) {
      real_ = gen::real_reference(context.comm, teacher_->view(), dataset.val, 500);
    }
  }

  std::int64_t dataset_size() const override { return dataset_.train.size(); }

  train::StepOutput train_step(const std::vector<std::int64_t>& local,
                               const train::StepInfo& info) override {
    const auto epoch = static_cast<std::uint64_t>(info.epoch);
    const auto step = static_cast<std::uint64_t>(info.global_step);
    if (private_) {
      // The trainer's batch positions only pace the run: the DP step draws its own
      // Poisson batches (Note [DP GAN]).
      const auto rows = [&](const std::vector<std::int64_t>& indices) {
        return std::make_pair(
            data::assemble_batch(dataset_.train, indices, data::Augment{}, seed_, epoch),
            data::gather_labels(dataset_.train, indices));
      };
      const auto losses = update_.dp_step(rows, step);
      g_loss_sum_ += losses.g_loss;
      dp_samples_ += update_.dp_last_samples();
      dp_clipped_ += update_.dp_last_clipped();
      ++steps_since_eval_;
      return train::StepOutput{losses.loss, static_cast<std::int64_t>(local.size())};
    }
    auto real = data::assemble_batch(dataset_.train, local, data::Augment{}, seed_, epoch);
    auto labels = data::gather_labels(dataset_.train, local);
    const auto losses = update_.step(real, labels, local, step);
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
    if (private_) {
      auto counts = torch::tensor(
          {static_cast<double>(dp_samples_), static_cast<double>(dp_clipped_)}, torch::kFloat64);
      context_.comm.allreduce(counts, comm::ReduceOp::sum);
      metrics["dp_samples"] = counts[0].item<double>();
      metrics["dp_clipped_share"] =
          counts[0].item<double>() > 0 ? counts[1].item<double>() / counts[0].item<double>() : 0.0;
      dp_samples_ = dp_clipped_ = 0;
    }
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

  // DP or public pre-training: no selection on (private) val, the last epoch is the
  // generator.
  std::string selection_metric() const override {
    return teacher_ && !select_last_ ? "neg_frechet" : "epoch_index";
  }

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
  bool private_ = false;
  bool select_last_ = false;
  gen::GeneratorUpdate update_;
  std::int64_t dp_samples_ = 0, dp_clipped_ = 0;
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
  std::string public_identity;
  const Json public_dp = use_public_data(options, dataset, public_identity);
  const auto spec = spec_from(options, dataset.info);
  // Refused before any file: a bad DP request, a missing or foreign --init.
  const Json prior = init_dp(options);
  const auto dp = dp_plan(context, options, dataset.train.size(), prior);
  if (!options.init.empty() && !path_exists(options.init + "/ema.pt"))
    throw Error(options.init + "/ema.pt: missing (--init needs a finished generator run)");
  // What this generator spent of the private data: DP-SGD (with its prior), or the
  // semantic query alone for public pre-training; none for a non-private run.
  const Json spent = dp ? dp->describe() : public_dp;
  if (!dp && !prior.is_null())
    log::warn("train-generator: --init " + options.init +
              " was private, but this run trains without --dp-epsilon: no epsilon holds");
  RunRecord& record = open_record(context, run_dir);
  record.add_input("data", data_path);
  if (!pool_hash.empty()) record.add_input("data_pool", options.data_pool + "/manifest.json");
  if (!options.public_data.empty()) {
    record.add_input("public_data", options.public_data);
    record.add_input("selection", options.selection + "/selection.json");
  }
  if (!options.init.empty()) record.add_input("init", options.init + "/ema.pt");
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

  if (dp) {
    const auto& settings = dp->settings;
    char line[300];
    std::snprintf(line, sizeof line,
                  "train-generator: DP-SGD on the discriminator, epsilon %.3g delta %.3g over %lld "
                  "steps at q %.5f: noise multiplier %.4f, clip %.3g, noise %s",
                  dp->epsilon, dp->delta, static_cast<long long>(dp->steps), settings.sample_rate,
                  settings.noise_multiplier, settings.clip,
                  comm::noise_source_name(settings.noise));
    log::info(line);
  }
  if (!spent.is_null()) record.set("dp", spent);
  // dp.json beside model.json says how the generator was trained (read by load_generator
  // and carried into pools, Note [What DP covers]); a reused non-private run drops it.
  if (context.comm.rank() == 0) {
    if (!spent.is_null())
      write_file_atomic(run_dir + "/dp.json", spent.dump(2) + "\n");
    else
      std::filesystem::remove(run_dir + "/dp.json");
  }
  GeneratorTask task(context, options, dataset, spec, teacher, run_dir, dp);
  if (!options.init.empty())
    task.update().initialise_from(options.init + "/ema.pt", options.init + "/discriminator.pt");
  const auto trainer = trainer_options(context, options.training, run_dir, "train-generator");
  const std::string hash =
      config_hash(context, {"teacher", "eval-samples", "final-samples", "grid-per-class"}) + "-" +
      dataset.info.source_sha256.substr(0, 8) + (pool_hash.empty() ? "" : "-pool-" + pool_hash) +
      public_identity;
  train::CheckpointManager checkpoints(context.comm, trainer.checkpoint_dir, trainer.keep,
                                       run_identity(context, hash), context.config);
  const std::int64_t g_params = nn::parameter_count(task.update().ema());
  const std::int64_t d_params = discriminator_parameters(task);
  log::info("train-generator: " + spec.model + " (" + std::to_string(g_params) +
            " sampling parameters" +
            (spec.model == "gan" ? ", discriminator " + std::to_string(d_params) : std::string()) +
            ") on " + std::to_string(dataset.train.size()) +
            (!options.public_data.empty() ? " public (" + options.public_data + ")"
             : pool_hash.empty()          ? " real"
                                          : " synthetic (" + options.data_pool + ")") +
            " images, " + std::to_string(context.comm.size()) + " rank(s) x " +
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
  auto* discriminator = task.update().discriminator();
  if (discriminator) nn::load_module(*discriminator, *best + "/discriminator.pt");
  Json quality = nullptr;
  if (teacher) {
    std::int64_t samples = options.final_samples;
    if (samples <= 0) samples = options.eval_samples;
    quality = task.measure(samples).to_json();
  }
  const auto grid =
      gen::class_grid(context.comm, task.update().sampler(), options.grid_per_class, kGridSeed);
  if (context.comm.rank() == 0) {
    // The discriminator of the same checkpoint, for a run that starts from this one (--init).
    if (discriminator) nn::save_module(*discriminator, run_dir + "/discriminator.pt");
    nn::save_module(task.update().ema(), run_dir + "/ema.pt");
    io::write_png(run_dir + "/samples.png", grid);
    Json results = generator_results(
        context, spec, task, dataset, trainer, outcome, quality, run_dir,
        !options.public_data.empty()
            ? "public " + options.public_data + " (the classes of " + options.selection + ")"
        : options.data_pool.empty() ? "real train"
                                    : options.data_pool);
    // results/generator.json for the default run directory; results/<name>.json for another.
    const std::string name = std::filesystem::path(run_dir).filename().string();
    results["cost_split"] = record.cost_split();
    if (!spent.is_null()) results["dp"] = spent;
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
