// `kr distill`: Generative Knowledge Distillation. The student trains on
// synthetic images only; its targets are the teacher's soft predictions on the
// same augmented batch (METHOD.md "GKD").
#include <torch/torch.h>

#include <optional>

#include <chrono>
#include <cmath>

#include "kr/comm/communicator.hpp"
#include "kr/comm/shard_range.hpp"
#include "kr/core/clock.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/data/augment.hpp"
#include "kr/gen/regenerate.hpp"
#include "kr/gen/sampler.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/io/shard.hpp"
#include "kr/privacy/accountant.hpp"
#include "kr/report/results.hpp"
#include "kr/steps/artifacts.hpp"
#include "kr/steps/classifier_options.hpp"
#include "kr/steps/run_record.hpp"
#include "kr/steps/step.hpp"
#include "kr/steps/training_options.hpp"
#include "kr/train/distillation.hpp"
#include "kr/train/sampler.hpp"

namespace kr::steps {

namespace {

struct DistillOptions {
  std::string data;
  std::string teacher;
  std::string pool;
  std::string generator;
  std::string out;
  std::string targets;
  double temperature = 1.0;
  double hard_weight = 0.0;
  double mixup = 0.0;
  std::int64_t regen_every = 1;
  std::int64_t epoch_size = 0;
  bool generate_online = false;
  std::int64_t sample_batch = 0;
  std::string results_name;
  std::string teacher_precision;
  std::string select;
  ClassifierOptions classifier;
};

void add_distill_options(OptionTable& table, DistillOptions& options) {
  // clang-format off
  table
      ("data", &options.data, "", "prepared data set: only val (model selection) and test (reported once) are read (default: <workdir>/data/data.h5)").operational()
      ("teacher", &options.teacher, "", "teacher run (default: <workdir>/teacher)")
      ("pool", &options.pool, "", "synthetic pool from `kr generate` (default: <workdir>/pool)")
      ("generator", &options.generator, "", "generator for --generate-online (default: <workdir>/generator)")
      ("out", &options.out, "", "run directory (default: <workdir>/student)").operational()
      ("targets", &options.targets, "soft", "soft (teacher on the augmented batch), stored (logits in the shards, no augmentation) or hard (conditioning labels)")
      ("temperature", &options.temperature, 1.0, "distillation temperature T (student logits divided by T too, loss scaled by T^2)").at_least(1e-3)
      ("hard-weight", &options.hard_weight, 0.0, "alpha: weight of the conditioning-label cross-entropy mixed into soft or stored targets").range(0, 1)
      ("mixup", &options.mixup, 0.0, "mix neighbouring synthetic images with lambda ~ Beta(a, a) before the teacher labels them (function matching; 0: off)").at_least(0)
      ("regen-every", &options.regen_every, 1, "move to the next unseen part of the pool every k epochs (0: one fixed synthetic set)").at_least(0)
      ("epoch-size", &options.epoch_size, 0, "synthetic images per epoch (0: the real train size)").at_least(0)
      ("generate-online", &options.generate_online, "when the pool runs out, sample new parts in-process (seeded by global index as `kr generate`)")
      ("teacher-precision", &options.teacher_precision, "auto", "arithmetic of the teacher's labelling forward (Note [Inference precision]): fp32, bf16 (CPUs with AVX512_BF16 or AMX) or auto (bf16 where native); the agreement metric, evaluation and the audit's scores stay fp32")
      ("sample-batch", &options.sample_batch, 0, "online sampling batch (0: the pool's)").at_least(0)
      ("select", &options.select, "val", "the epoch kept: val (best val accuracy) or last (no selection on the private val split, as a DP-covered student needs: Note [What DP covers])")
      ("results-name", &options.results_name, "distill", "results file stem: <workdir>/results/<name>.json (for ablation runs beside the main one)");
  // clang-format on
  add_classifier_options(table, options.classifier, 0.1, 30);
}

class StudentTask final : public train::ClassifierTask {
 public:
  StudentTask(Context& context, const DistillOptions& options, const data::Dataset& dataset,
              LoadedClassifier& teacher, const io::SyntheticPool& pool, gen::Sampler* online,
              std::int64_t epoch_size, std::int64_t steps_per_epoch)
      : ClassifierTask(context.comm, classifier_settings(context, options.classifier, dataset.info),
                       dataset.info, dataset.val, steps_per_epoch),
        dataset_(dataset),
        teacher_(teacher),
        labeller_(teacher.fast.with_precision(
            nn::parse_precision(options.teacher_precision, "--teacher-precision"))),
        pool_(pool),
        online_(online),
        epoch_size_(epoch_size) {
    settings_.kind = train::parse_target_kind(options.targets);
    if (settings_.kind == train::TargetKind::stored && !pool.has_logits())
      throw UsageError(pool.directory() +
                       ": --targets stored needs teacher logits in the shards "
                       "(generate with a teacher)");
    settings_.temperature = options.temperature;
    settings_.hard_weight = options.hard_weight;
    settings_.mixup = options.mixup;
    settings_.smoothing = label_smoothing();
    settings_.augment = augment();
    settings_.seed = seed();
    settings_.classes = dataset.info.classes;
    regen_every_ = options.regen_every;
    if (options.select != "val" && options.select != "last")
      throw UsageError("--select must be val or last, not '" + options.select + "'");
    select_last_ = options.select == "last";
    if (settings_.temperature <= 0) throw UsageError("--temperature must be positive");
    if (settings_.hard_weight < 0 || settings_.hard_weight > 1)
      throw UsageError("--hard-weight must be in [0, 1]");
    if (settings_.mixup < 0) throw UsageError("--mixup must be 0 (off) or positive");
    if (settings_.mixup > 0 && settings_.kind == train::TargetKind::stored)
      throw UsageError(
          "--mixup needs targets computed on the mixed batch: use --targets soft "
          "or hard");
    sample_batch_ = options.sample_batch;
    if (sample_batch_ <= 0) sample_batch_ = pool.manifest().at("settings").at("sample_batch");
    pool_seed_ = pool.manifest().at("settings").at("seed").get<std::uint64_t>();
    // The teacher's val predictions, for the agreement metric (this rank's slice).
    const auto range =
        comm::shard_range(dataset.val.size(), context.comm.rank(), context.comm.size());
    std::vector<at::Tensor> predictions;
    for (std::int64_t i = range.begin; i < range.end; i += 500) {
      const auto n = std::min<std::int64_t>(500, range.end - i);
      predictions.push_back(
          teacher_.logits(data::to_float(dataset.val.images.narrow(0, i, n))).argmax(1));
    }
    teacher_val_ = predictions.empty() ? torch::empty({0}, torch::kInt64) : torch::cat(predictions);
  }

  std::int64_t dataset_size() const override { return epoch_size_; }
  std::string selection_metric() const override {
    return select_last_ ? "epoch_index" : "val_accuracy";
  }

  // Loads the part of the pool epoch `epoch` reads (all ranks hold it in memory).
  void load_part(std::int64_t epoch) {
    const std::int64_t part = train::pool_part(epoch, regen_every_);
    if (part == current_part_) return;
    const auto start = Clock::now();
    const std::int64_t first = part * epoch_size_;
    if (first + epoch_size_ <= pool_.size()) {
      current_ =
          pool_.read(first, epoch_size_,
                     settings_.kind == train::TargetKind::stored ? &stored_logits_ : nullptr);
    } else {
      if (!online_)
        throw Error(pool_.directory() + ": the pool is exhausted at epoch " +
                    std::to_string(epoch + 1) + " (it holds " + std::to_string(pool_.size()) +
                    " images, this epoch needs [" + std::to_string(first) + ", " +
                    std::to_string(first + epoch_size_) +
                    ")); generate more --pool-epochs or pass --generate-online");
      current_ = sample_online(first, epoch_size_);
    }
    current_part_ = part;
    part_first_ = first;
    parts_.push_back(Json{{"epoch", epoch + 1},
                          {"part", part},
                          {"first", first},
                          {"count", epoch_size_},
                          {"online", first + epoch_size_ > pool_.size()}});
    log::record(Json{
        {"event", "pool_part"}, {"epoch", epoch + 1}, {"first", first}, {"count", epoch_size_}});
    data_seconds_ += seconds_since(start);
  }

  // Samples [first, first + count) with the generator, sample batches dealt to ranks.
  data::ImageSet sample_online(std::int64_t first, std::int64_t count) {
    if (settings_.kind == train::TargetKind::stored)
      throw UsageError("--targets stored cannot use --generate-online");
    data::ImageSet set;
    set.images = gen::sample_range_dealt(comm(), *online_, first, count, pool_seed_, sample_batch_);
    set.labels = gen::classes_of_range(first, count, online_->spec().classes);
    return set;
  }

  at::Tensor batch_loss(const std::vector<std::int64_t>& local,
                        const train::StepInfo& info) override {
    load_part(info.epoch);
    const auto start = Clock::now();
    const double teacher_before = teacher_seconds_;
    auto teacher = [&](const at::Tensor& images) {
      const auto begin = Clock::now();
      auto logits = labeller_.forward(images);
      teacher_seconds_ += seconds_since(begin);
      return logits;
    };
    const auto batch =
        train::make_distill_batch(settings_, current_, part_first_, local,
                                  static_cast<std::uint64_t>(info.epoch), teacher, stored_logits_);
    data_seconds_ += seconds_since(start) - (teacher_seconds_ - teacher_before);
    return train::distill_loss(settings_, forward(batch.images), batch);
  }

  train::StepOutput train_step(const std::vector<std::int64_t>& local,
                               const train::StepInfo& info) override {
    const auto start = Clock::now();
    const double before = data_seconds_ + teacher_seconds_;
    auto out = ClassifierTask::train_step(local, info);
    student_seconds_ += seconds_since(start) - (data_seconds_ + teacher_seconds_ - before);
    return out;
  }

  Json evaluate(std::int64_t epoch) override {
    // Accuracy, loss and agreement with the teacher in one pass over val.
    const auto val = evaluate_on(dataset_.val, teacher_val_);
    Json metrics{{"val_accuracy", val.accuracy()},
                 {"val_loss", val.mean_loss()},
                 {"val_teacher_agreement", val.agreement()}};
    auto seconds =
        torch::tensor({data_seconds_, teacher_seconds_, student_seconds_}, torch::kFloat64);
    comm().allreduce(seconds, comm::ReduceOp::avg);
    metrics["data_seconds"] = seconds[0].item<double>();
    metrics["teacher_seconds"] = seconds[1].item<double>();
    metrics["student_seconds"] = seconds[2].item<double>();
    metrics["pool_part"] = current_part_;
    metrics["epoch_index"] = epoch + 1;
    data_seconds_ = teacher_seconds_ = student_seconds_ = 0.0;
    return metrics;
  }

  const Json& parts() const { return parts_; }
  nn::Precision labeller_precision() const { return labeller_.precision(); }

 private:
  const data::Dataset& dataset_;
  LoadedClassifier& teacher_;
  nn::InferenceResNet labeller_;  // the teacher at --teacher-precision
  const io::SyntheticPool& pool_;
  gen::Sampler* online_;
  std::uint64_t pool_seed_ = 0;  // online parts continue the pool: its seed, not the run's
  std::int64_t epoch_size_;
  train::DistillSettings settings_;
  std::int64_t regen_every_ = 1;
  bool select_last_ = false;
  std::int64_t sample_batch_ = 250;
  std::int64_t current_part_ = -1;
  std::int64_t part_first_ = 0;
  data::ImageSet current_;
  at::Tensor stored_logits_;
  Json parts_ = Json::array();
  at::Tensor teacher_val_;
  double data_seconds_ = 0, teacher_seconds_ = 0, student_seconds_ = 0;
};

// How the run reads the pool: images per epoch, which parts, whether online sampling
// must extend it.
struct EpochPlan {
  std::int64_t epoch_size = 0;
  std::int64_t epochs = 0;
  std::int64_t regen_every = 0;
  std::int64_t parts_needed = 0;
  bool online = false;
};

EpochPlan plan_epochs(const DistillOptions& options, const io::SyntheticPool& pool,
                      std::int64_t real_train_size, const std::string& pool_dir) {
  EpochPlan plan;
  plan.epoch_size = options.epoch_size;
  if (plan.epoch_size <= 0) plan.epoch_size = real_train_size;
  plan.epochs = options.classifier.training.epochs;
  plan.regen_every = options.regen_every;
  if (plan.regen_every < 0) throw UsageError("--regen-every must be 0 (off) or positive");
  plan.parts_needed = train::pool_part(plan.epochs - 1, plan.regen_every) + 1;
  plan.online = options.generate_online;
  if (plan.parts_needed * plan.epoch_size > pool.size() && !plan.online)
    throw UsageError(pool_dir + " holds " + std::to_string(pool.size()) + " images; " +
                     std::to_string(plan.epochs) + " epochs of " + std::to_string(plan.epoch_size) +
                     " with --regen-every " + std::to_string(plan.regen_every) + " need " +
                     std::to_string(plan.parts_needed * plan.epoch_size) +
                     ". Generate with --pool-epochs " + std::to_string(plan.parts_needed) +
                     ", or pass --generate-online");
  return plan;
}

// The sampler that extends the pool in-process (--generate-online), when the pool is short.
std::unique_ptr<gen::Sampler> online_sampler(const Context& context, const DistillOptions& options,
                                             const io::SyntheticPool& pool,
                                             const std::string& pool_dir, const EpochPlan& plan,
                                             std::optional<gen::LoadedGenerator>& generator) {
  if (!plan.online || plan.parts_needed * plan.epoch_size <= pool.size()) return nullptr;
  const auto& settings = pool.manifest().at("settings");
  generator = gen::load_generator(context.under_workdir(options.generator, "generator"));
  if (generator->weights_sha256 != settings.at("generator_sha256"))
    throw UsageError("--generate-online: the generator differs from the one that made " + pool_dir);
  if (!settings.at("filter_tau").is_null())
    throw UsageError("--generate-online: " + pool_dir +
                     " was made with --filter-tau; online parts would not be filtered");
  // Sample as the pool was made (its z-scale, DDIM steps and guidance), not as trained.
  return gen::make_sampler(
      gen::GeneratorSpec::from_json(settings.at("generator_spec"), pool_dir + "/manifest.json"),
      generator->model);
}

// What the pool's DP generator's epsilon covers of this student (Note [What DP covers]).
Json student_dp(const DistillOptions& options, const io::SyntheticPool& pool) {
  const auto& settings = pool.manifest().at("settings");
  privacy::StudentCoverage student;
  student.generator_dp = settings.value("generator_dp", Json(nullptr));
  student.targets = options.targets;
  student.mixup = options.mixup;
  student.hard_weight = options.hard_weight;
  student.filtered_pool = !settings.at("filter_tau").is_null() || settings.contains("reid_filter");
  student.selects_on_val = options.select != "last";
  return privacy::student_dp(student);
}

// The student's line on what the generator's epsilon covers of it (Note [What DP covers]).
void log_dp(const Json& dp) {
  if (dp.is_null()) return;
  if (!dp.at("covered").get<bool>()) {
    log::info("distill: DP: no epsilon for this student: " + dp.at("reasons").dump());
    return;
  }
  char line[200];
  std::snprintf(
      line, sizeof line,
      "distill: DP: the student is covered by the generator's (epsilon %.4g, delta %.3g)%s",
      dp.at("epsilon").get<double>(), dp.at("delta").get<double>(),
      dp.at("formal_guarantee").get<bool>() ? "" : " (keyed noise: not a formal guarantee)");
  log::info(line);
}

// NaN (null in JSON) without a test split, not an accuracy of 0.
double test_accuracy(const ClassifierResult& result) {
  return result.test.count > 0 ? result.test.accuracy() : std::nan("");
}

Json distill_results(const Context& context, const DistillOptions& options, const EpochPlan& plan,
                     StudentTask& task, const io::SyntheticPool& pool, const std::string& pool_dir,
                     const train::TrainOutcome& outcome, const ClassifierResult& result,
                     double teacher_test, std::int64_t steps_per_epoch) {
  const std::int64_t seen = steps_per_epoch * options.classifier.training.batch * plan.epochs;
  const std::int64_t unique = std::min(plan.parts_needed * plan.epoch_size, seen);
  double data_s = 0, teacher_s = 0, student_s = 0;
  for (const auto& epoch : outcome.history) {
    data_s += epoch.value("data_seconds", 0.0);
    teacher_s += epoch.value("teacher_seconds", 0.0);
    student_s += epoch.value("student_seconds", 0.0);
  }
  return Json{{"step", "distill"},
              {"model", "resnet20"},
              {"width", task.shape().width},
              {"targets", options.targets},
              {"temperature", options.temperature},
              {"label_smoothing", options.classifier.label_smoothing},
              {"hard_weight", options.hard_weight},
              {"mixup", options.mixup},
              {"teacher_precision", nn::precision_name(task.labeller_precision())},
              {"regen_every", plan.regen_every},
              {"epoch_size", plan.epoch_size},
              {"epochs", plan.epochs},
              {"pool", pool_dir},
              {"pool_size", pool.size()},
              {"generator_model", pool.manifest().at("settings").at("generator_spec").at("model")},
              {"generate_online", plan.online},
              {"synthetic_images_seen", seen},
              {"unique_synthetic_images", unique},
              {"regenerations", plan.parts_needed},
              {"best_epoch", outcome.best.value("epoch", 0)},
              {"val_accuracy", result.val_accuracy},
              {"test_accuracy", test_accuracy(result)},
              {"teacher_test_accuracy", teacher_test},
              {"gap_points", 100.0 * (teacher_test - test_accuracy(result))},
              {"test_images", result.test.count},
              {"world_size", context.comm.size()},
              {"threads_per_rank", context.threads.intra_op},
              {"train_seconds_this_run", outcome.seconds},
              {"time_split_seconds",
               Json{{"data", data_s}, {"teacher", teacher_s}, {"student", student_s}}},
              {"images_per_second", outcome.images_per_second},
              {"params_sha256", result.params_sha256},
              {"select", options.select},
              {"dp", student_dp(options, pool)},
              {"parts", task.parts()},
              {"history", outcome.history}};
}

int run_distill(Context& context, const DistillOptions& options) {
  const std::string data_path = context.under_workdir(options.data, "data/data.h5");
  const std::string run_dir = context.under_workdir(options.out, "student");
  const std::string pool_dir = context.under_workdir(options.pool, "pool");
  const std::string teacher_dir = context.under_workdir(options.teacher, "teacher");
  data::Dataset dataset = io::read_dataset(data_path);
  const std::int64_t real_train_size = dataset.train.size();
  dataset.train = data::ImageSet{};  // the student never sees a real training image
  auto teacher = load_classifier(teacher_dir, dataset.info.channels, dataset.info.classes);
  auto pool = open_matching_pool(pool_dir, dataset.info, data_path);
  const auto plan = plan_epochs(options, pool, real_train_size, pool_dir);
  std::optional<gen::LoadedGenerator> generator;
  const auto sampler = online_sampler(context, options, pool, pool_dir, plan, generator);

  RunRecord& record = open_record(context, run_dir);
  record.add_input("data", data_path);
  record.add_input("teacher", teacher.weights);
  record.add_input("pool_manifest", pool_dir + "/manifest.json");
  log::open_jsonl(run_dir);

  const std::int64_t steps_per_epoch = plan.epoch_size / options.classifier.training.batch;
  StudentTask task(context, options, dataset, teacher, pool, sampler.get(), plan.epoch_size,
                   steps_per_epoch);
  const auto trainer = trainer_options(context, options.classifier.training, run_dir, "distill");
  const std::string hash = config_hash(context, {"teacher", "pool", "generator"}) + "-" +
                           teacher.weights_sha256.substr(0, 8) + "-" +
                           pool.manifest().at("settings_hash").get<std::string>().substr(0, 8);
  train::CheckpointManager checkpoints(context.comm, trainer.checkpoint_dir, trainer.keep,
                                       run_identity(context, hash), context.config);
  log::info("distill: student resnet20 w=" + std::to_string(task.shape().width) + ", targets " +
            options.targets + " (teacher in " + nn::precision_name(task.labeller_precision()) +
            "), " + std::to_string(plan.epoch_size) +
            " synthetic images per epoch, regenerate every " + std::to_string(plan.regen_every) +
            " epoch(s), pool of " + std::to_string(pool.size()) + ", " +
            std::to_string(context.comm.size()) + " rank(s) x " +
            std::to_string(context.threads.intra_op) + " thread(s)");
  const auto outcome = train::run_training(context.comm, task, trainer, checkpoints);
  if (outcome.preempted) {
    record.finish("preempted");
    return exit_code::preempted;
  }
  const auto result = finish_classifier(context, task, checkpoints, run_dir, dataset, outcome);
  // The teacher's test accuracy as its own step measured it on this test split, else
  // measured here (a teacher from other data, or one recorded before kr kept it). A data
  // file without a test split (kr tune's candidates: selection never sees test) has none.
  const auto& recorded = teacher.description;
  const bool has_test = dataset.test.size() > 0;
  const double teacher_test =
      !has_test ? std::nan("")
      : recorded.contains("test_accuracy") && recorded.at("test_accuracy").is_number() &&
              recorded.value("test_sha256", std::string()) == result.test_sha256
          ? recorded.at("test_accuracy").get<double>()
          : train::evaluate_classifier(
                context.comm, [&](const at::Tensor& images) { return teacher.logits(images); },
                dataset.test, options.classifier.eval_batch)
                .accuracy();
  Json results = distill_results(context, options, plan, task, pool, pool_dir, outcome, result,
                                 teacher_test, steps_per_epoch);
  if (context.comm.rank() == 0) {
    make_dirs(context.workdir() + "/results");
    const std::string& name = options.results_name;
    write_history_csv(
        report::results_path(context.workdir(), name + "_epochs", "csv"), outcome.history,
        {"epoch", "train_loss", "val_accuracy", "val_teacher_agreement", "val_loss", "pool_part",
         "data_seconds", "teacher_seconds", "student_seconds", "seconds"});
    results["cost_split"] = record.cost_split();
    report::write_results(context.workdir(), name, results);
  }
  char line[200];
  if (has_test)
    std::snprintf(line, sizeof line,
                  "distill: student test accuracy %.2f %%, teacher %.2f %%, gap %.2f points (best "
                  "epoch %lld)",
                  100.0 * result.test.accuracy(), 100.0 * teacher_test,
                  100.0 * (teacher_test - result.test.accuracy()),
                  static_cast<long long>(outcome.best.value("epoch", 0)));
  else
    std::snprintf(line, sizeof line,
                  "distill: student val accuracy %.2f %% (best epoch %lld); no test split here",
                  100.0 * result.val_accuracy,
                  static_cast<long long>(outcome.best.value("epoch", 0)));
  log::info(line);
  const auto& dp = results.at("dp");
  log_dp(dp);
  record.set("dp", dp);
  record.set("results", Json{{"test_accuracy", test_accuracy(result)},
                             {"teacher_test_accuracy", teacher_test},
                             {"params_sha256", result.params_sha256}});
  record.finish("complete");
  return exit_code::ok;
}

}  // namespace

Step distill_step() {
  return typed_step<DistillOptions>(
      "distill", "train the student on synthetic images only, by distillation from the teacher",
      add_distill_options, run_distill);
}

}  // namespace kr::steps
