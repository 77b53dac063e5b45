// `kr mia`: membership inference against the recipe (Note [Leave-one-out LiRA]).
// M runs each replay the pipeline (teacher, generator, pool, student) on their
// keep-row half of a pool of real train images; whole runs are dealt to ranks
// (no all-reduce between them), each resumable; rank 0 then scores every run as
// the target of the others.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <numeric>

#include "kr/comm/communicator.hpp"
#include "kr/comm/deal.hpp"
#include "kr/comm/self_communicator.hpp"
#include "kr/core/clock.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/core/sha256.hpp"
#include "kr/core/strings.hpp"
#include "kr/gen/sampler.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/io/h5.hpp"
#include "kr/privacy/membership.hpp"
#include "kr/privacy/memorisation.hpp"
#include "kr/privacy/tckr.hpp"
#include "kr/report/results.hpp"
#include "kr/steps/artifacts.hpp"
#include "kr/steps/memorisation.hpp"
#include "kr/steps/pipeline.hpp"
#include "kr/steps/root_only.hpp"
#include "kr/steps/run_record.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

struct MiaOptions {
  std::string data;
  std::string out;
  std::int64_t runs = 8;
  std::int64_t pool_size = 10000;
  std::string pipeline;
  std::int64_t shadow_epochs = 0;
  std::int64_t shadow_batch = 0;
  double shadow_warmup = -1;
  std::int64_t shadow_generator_epochs = 0;
  std::int64_t shadow_generator_batch = 0;
  bool hard_control = false;
  std::int64_t population = 1000;
  std::int64_t query_shift = 1;
  std::int64_t run_test = 2000;
  std::int64_t generator_samples = 10000;
  std::int64_t train_run = -1;
  double rmia_a = -1;
  int bootstrap = 200;
  std::string protocol;
  std::int64_t tckr_members = 1000;
  std::string teacher;
  std::string student;
  std::string student_hard;
};

void add_mia_options(OptionTable& table, MiaOptions& options) {
  // clang-format off
  table
      ("data", &options.data, "", "prepared data set (default: <workdir>/data/data.h5)").operational()
      ("out", &options.out, "", "directory of the runs (default: <workdir>/mia)").operational()
      ("runs", &options.runs, 8, "M: runs of the recipe, each on a random half of the pool (even)").at_least(2)
      ("pool-size", &options.pool_size, 10000, "real train images in the membership pool (a keyed random subset)").at_least(2)
      ("pipeline", &options.pipeline, "kr", "pipeline each run replays (jobs/<name>.pipeline or a file): its training steps (train-teacher, train-generator, generate, distill), in its order and run directories")
      ("shadow-epochs", &options.shadow_epochs, 0, "cost control: --epochs of every replayed training step, and --pool-epochs of its generate step to match (0: as configured)").at_least(0)
      ("shadow-batch", &options.shadow_batch, 0, "cost control: --batch of the replayed classifier steps (teacher, regularised teacher, student); a run's members are half the pool, and a small member set needs more steps than the shipped batch gives it (0: as configured)").at_least(0)
      ("shadow-warmup-epochs", &options.shadow_warmup, -1.0, "cost control: --warmup-epochs of the replayed classifier steps (-1: as configured)").at_least(-1)
      ("shadow-generator-epochs", &options.shadow_generator_epochs, 0, "cost control: --epochs of the replayed train-generator step, in place of --shadow-epochs (a GAN needs a few hundred steps on a small member set before its samples are their class; 0: as --shadow-epochs)").at_least(0)
      ("shadow-generator-batch", &options.shadow_generator_batch, 0, "cost control: --batch of the replayed train-generator step (0: as configured)").at_least(0)
      ("hard-control", &options.hard_control, "also train a hard-label student per run (the control of Jagielski et al. 2023)")
      ("population", &options.population, 1000, "RMIA's population: a random, class-stratified sample of the train images outside the pool (no run trained on them; val when train has too few)").at_least(1)
      ("train-run", &options.train_run, -1, "train membership run J only and stop (no scoring): one run per Slurm array task (slurm/submit --mia-array); a later kr mia without it scores the complete runs").at_least(-1)
      ("generator-samples", &options.generator_samples, 10000, "n: images sampled (class-balanced) from each generator a run trains, for GAN-Leaks' black-box membership score of a real image, its distance to the nearest sample of its class (Note [Generator membership]); 0: generators not attacked").at_least(0)
      ("run-test", &options.run_test, 2000, "test images (random, stratified by class) each membership run is evaluated on: the accuracy shown beside its attack figures; the full split costs more than the audit at small sizes").at_least(1)
      ("query-shift", &options.query_shift, 1, "queries: every crop shift of up to this many pixels (as the training crop moves images), each also mirrored where the data allows flips: (2s+1)^2 x 2 queries, averaged per attack as LiRA does; 0: identity and mirror").range(0, 8)
      ("rmia-a", &options.rmia_a, -1.0, "RMIA's offline correction a in [0, 1]; -1: chosen for each target run from its reference runs as ML Privacy Meter does (Note [RMIA's a])").range(-1, 1)
      ("bootstrap", &options.bootstrap, 200, "bootstrap resamples for the 95 % intervals").at_least(0)
      ("protocol", &options.protocol, "lira", "lira: leave-one-out over the recipe's runs; tckr: TCKR's published protocol as its notebook computes it, flaws included (shadow pairs trained on test, best of 12 variants; labelled so; Note [TCKR notebook])")
      ("tckr-members", &options.tckr_members, 1000, "tckr: train members and as many test non-members in the challenge set").at_least(1)
      ("teacher", &options.teacher, "", "tckr: the attacked teacher (default: <workdir>/teacher)")
      ("student", &options.student, "", "tckr: the attacked student (default: <workdir>/student)")
      ("student-hard", &options.student_hard, "", "tckr: a hard-label student to attack as well (default: <workdir>/student-hard if present)");
  // clang-format on
}

// The lines of a pipeline a membership run replays: its training steps.
std::vector<PipelineStep> replayed_steps(const std::string& pipeline) {
  const std::string path = pipeline_path(pipeline);
  std::vector<PipelineStep> steps;
  for (auto& step : read_pipeline(path))
    if (step.step == "train-teacher" || step.step == "train-generator" || step.step == "generate" ||
        step.step == "distill")
      steps.push_back(std::move(step));
  if (steps.empty())
    throw UsageError(path + ": no training step for the membership runs to replay");
  return steps;
}

privacy::LogitsOf logits_of(LoadedClassifier& model) {
  return [&model](const at::Tensor& x) { return model.logits(x); };
}

// What the runs took when they were trained (a rerun reuses complete runs).
double run_seconds_total(const std::vector<privacy::MembershipRun>& runs) {
  double total = 0;
  for (const auto& run : runs) total += run.seconds;
  return total;
}

// A run's test accuracy from its results file (NaN when it has none).
double test_accuracy(const std::string& workdir, const std::string& results) {
  const auto json = report::read_results(workdir, results);
  return json.is_null() ? std::nan("") : json.value("test_accuracy", std::nan(""));
}

struct Target {
  std::string name;       // teacher, teacher_reg, student, student_hard
  std::string directory;  // run-relative
  std::string results;    // its results file, results/<results>.json, with test_accuracy
};

const std::vector<Target>& all_targets() {
  static const std::vector<Target> targets = {
      {"teacher", "teacher", "teacher"},
      {"teacher_reg", "teacher-reg", "teacher-reg"},
      {"student", "student", "distill"},
      {"student_hard", "student-hard", "distill-hard"},
      {"student2", "student2", "distill-generator2"},  // jobs/privacy-distillation.pipeline
      {"student_dp", "student-dp", "distill-dp"}};     // jobs/dp.pipeline
  return targets;
}

// The generators a run may train (Note [Generator membership]), each beside the student
// trained on its pool (whose accuracy stands beside its attack figures).
struct GeneratorTarget {
  std::string name;       // generator, generator2
  std::string directory;  // run-relative
  std::string student;    // a Target name
};

const std::vector<GeneratorTarget>& generator_targets() {
  static const std::vector<GeneratorTarget> targets = {
      {"generator", "generator", "student"},
      {"generator2", "generator2", "student2"},         // jobs/privacy-distillation.pipeline
      {"generator_dp", "generator-dp", "student_dp"}};  // jobs/dp.pipeline
  return targets;
}

// A generator attacked: "<name>_distance" in a run's logits.h5, (P) float32, each pool
// point's distance to the nearest of n class-balanced samples of the generator of its
// class (pixels, L2); and the sha256 of the weights that sampled them.
struct GeneratorDistances {
  at::Tensor distances;
  std::string weights_sha256;
};
GeneratorDistances generator_distances(const std::string& directory, const data::ImageSet& pool,
                                       std::int64_t samples, std::uint64_t seed) {
  auto loaded = gen::load_generator(directory);
  constexpr std::int64_t kBatch = 250;
  const auto images = gen::sample_range(*loaded.sampler, 0, samples,
                                        seed ^ 0x67616e6c65616b73ull /* "ganleaks" */, kBatch);
  const auto labels = gen::classes_of_range(0, samples, loaded.spec.classes);
  return {privacy::nearest_same_class(pixel_rows(pool.images), pool.labels, pixel_rows(images),
                                      labels, privacy::Distance::l2)
              .to(torch::kFloat32),
          loaded.weights_sha256};
}

// Writes <run_dir>/data/data.h5 once: train = `rows` of `source`, val as the data set's,
// test = `test`; a rerun keeps the file already there.
void write_run_data(const std::string& run_dir, const data::Dataset& dataset,
                    const data::ImageSet& source, const std::vector<std::int64_t>& rows,
                    const data::ImageSet& test, const std::string& name) {
  const std::string path = run_dir + "/data/data.h5";
  if (path_exists(path)) return;
  make_dirs(run_dir + "/data");
  data::Dataset subset;
  subset.info = dataset.info;
  subset.info.name = name;
  subset.train = data::take(source, rows);
  subset.val = dataset.val;
  subset.test = test;
  io::write_dataset(subset, path);
}

// Replays `steps` in <run_dir> (its data in <run_dir>/data) through the pipeline
// runner on a single-rank communicator (whole runs are dealt to ranks), skipping steps
// already complete. Returns false when a step was preempted.
std::vector<std::string> replay_common(const Context& context, const std::string& run_dir,
                                       std::uint64_t seed) {
  const auto config = context.get<std::string>("config");
  std::vector<std::string> common = {"--workdir", run_dir, "--seed", std::to_string(seed)};
  if (!config.empty()) common.insert(common.begin(), {"--config", config});
  return common;
}

bool replay_run(Context& context, const MiaOptions& options, const std::string& run_dir,
                std::vector<PipelineStep> steps, std::uint64_t seed) {
  const auto common = replay_common(context, run_dir, seed);
  // --shadow-epochs cuts every training step (the generator's own epochs and batch may be
  // set apart); the pool then holds as many parts as the student's epochs need (enough
  // at any --regen-every).
  for (auto& step : steps) {
    const bool generator = step.step == "train-generator";
    const auto epochs = generator && options.shadow_generator_epochs > 0
                            ? options.shadow_generator_epochs
                            : options.shadow_epochs;
    // A generate line that sets its own --pool-epochs keeps it (a pool made to train a
    // generator on, not for the student's epochs).
    const char* const epochs_option = step.step == "generate" ? "--pool-epochs" : "--epochs";
    const bool own = step.step == "generate" && std::find(step.options.begin(), step.options.end(),
                                                          epochs_option) != step.options.end();
    if (epochs > 0 && !own)
      step.options.insert(step.options.end(), {epochs_option, std::to_string(epochs)});
    if (generator && options.shadow_generator_batch > 0)
      step.options.insert(step.options.end(),
                          {"--batch", std::to_string(options.shadow_generator_batch)});
    if (step.step != "train-teacher" && step.step != "distill") continue;
    if (options.shadow_batch > 0)
      step.options.insert(step.options.end(), {"--batch", std::to_string(options.shadow_batch)});
    if (options.shadow_warmup >= 0)
      step.options.insert(step.options.end(),
                          {"--warmup-epochs", number_text(options.shadow_warmup)});
  }
  comm::SelfCommunicator self;
  const int code = run_pipeline(context, self, steps, run_dir, common);
  if (code == exit_code::preempted) return false;
  if (code != exit_code::ok)
    throw Error(run_dir + ": a replayed step failed with exit code " + std::to_string(code));
  return true;
}

// A run is done when its logits and a complete run.json are there.
bool membership_run_done(const std::string& run_dir) {
  return path_exists(run_dir + "/logits.h5") && run_complete(run_dir);
}

// The scaffold both protocols share: the settings claimed (a rerun must bring the same
// ones), the record opened, rank 0's keep file, the runs dealt and resumed
// (comm::deal_jobs), then rank 0's scoring.
struct AuditSteps {
  std::string out;     // directory of the runs
  std::string prefix;  // run directory prefix: <out>/<prefix>_<j>
  std::string data_path;
  std::int64_t runs = 0;
  Json settings;
  std::function<void()> write_keep;             // rank 0
  std::function<bool(std::int64_t)> train_run;  // false: preempted
  std::function<void()> score;                  // rank 0, after every run is done
  std::int64_t train_only = -1;                 // >= 0: train this run only (--train-run)
};

// One run of an audit as one job (a Slurm array task): the settings claimed and the keep
// file written as a whole audit would (same content from every task), the run trained
// unless complete; the audit's own record is left to the scoring job.
int train_one_run(Context& context, const AuditSteps& audit) {
  if (audit.train_only >= audit.runs)
    throw UsageError("--train-run " + std::to_string(audit.train_only) + ": the audit has " +
                     std::to_string(audit.runs) + " runs (0 to " + std::to_string(audit.runs - 1) +
                     ")");
  if (context.comm.size() != 1)
    throw UsageError("--train-run trains one run on one rank: launch it with one task");
  claim_settings(audit.out, audit.settings, "runs");
  audit.write_keep();
  const auto dir = privacy::run_directory(audit.out, audit.prefix, audit.train_only);
  if (membership_run_done(dir)) {
    log::info("mia: run " + std::to_string(audit.train_only) + " already complete in " + dir);
    return exit_code::ok;
  }
  return audit.train_run(audit.train_only) ? exit_code::ok : exit_code::preempted;
}

int run_audit(Context& context, const AuditSteps& audit) {
  if (audit.train_only >= 0) return train_one_run(context, audit);
  // Checked before the run record: a refused rerun leaves a complete record as it was.
  run_on_root(context.comm, [&] { claim_settings(audit.out, audit.settings, "runs"); });
  RunRecord& record = open_record(context, audit.out);
  record.add_input("data", audit.data_path);
  run_on_root(context.comm, audit.write_keep);
  const bool preempted = comm::deal_jobs(
      context.comm, audit.runs,
      [&](std::int64_t j) {
        return membership_run_done(privacy::run_directory(audit.out, audit.prefix, j));
      },
      audit.train_run);
  if (preempted) {
    record.finish("preempted");
    return exit_code::preempted;
  }
  run_on_root(context.comm, audit.score);
  record.finish("complete");
  return exit_code::ok;
}

// ---- LiRA, leave-one-out over the recipe's runs (Note [Leave-one-out LiRA]) ----

struct LiraAudit {
  std::string out;
  std::int64_t runs = 0;
  std::uint64_t seed = 0;
  data::Dataset dataset;
  std::vector<PipelineStep> replay;
  std::vector<std::string> replay_names;
  at::Tensor keep;                         // (M, P) uint8
  std::vector<std::int64_t> pool_indices;  // train rows of the pool's points
  data::ImageSet pool, population;
  data::ImageSet run_test;                    // what each run is evaluated on
  std::vector<std::int64_t> population_rows;  // rows of population_split
  std::string population_split;               // train or val
  bool mirror = false;
  int query_shift = 0;
  Json regularised;  // the regularised teacher's settings (null: none)
};

// 0, 1, ..., size - 1: every row of `set`.
std::vector<std::int64_t> every_row(const data::ImageSet& set) {
  std::vector<std::int64_t> rows(static_cast<std::size_t>(set.size()));
  std::iota(rows.begin(), rows.end(), 0);
  return rows;
}

// Note [Regularised teacher]
// The student trains with label smoothing and mixup, the teacher with neither: a student
// that leaks less might owe it to its regularisers, not to synthetic data. Each run also
// trains a teacher on its real members with the distill step's smoothing, mixup and
// epochs (`teacher-reg`), so the audit separates "synthetic data" from "regularisation".
void add_regularised_teacher(const Context& context, const MiaOptions& options, LiraAudit& audit) {
  const auto distill =
      std::find_if(audit.replay.begin(), audit.replay.end(),
                   [](const PipelineStep& step) { return step.step == "distill"; });
  const bool teacher = std::any_of(audit.replay.begin(), audit.replay.end(),
                                   [](const PipelineStep& s) { return s.step == "train-teacher"; });
  if (distill == audit.replay.end() || !teacher) return;
  const auto resolved =
      resolve_step_options(context, *distill, audit.out, replay_common(context, audit.out, 0));
  const double smoothing = resolved.values["label-smoothing"].as<double>();
  const double mixup = resolved.values["mixup"].as<double>();
  const auto epochs = options.shadow_epochs > 0 ? options.shadow_epochs
                                                : resolved.values["epochs"].as<std::int64_t>();
  std::vector<std::string> args = {"--out",       "{workdir}/teacher-reg", "--results-name",
                                   "teacher-reg", "--label-smoothing",     number_text(smoothing),
                                   "--mixup",     number_text(mixup)};
  if (options.shadow_epochs == 0) args.insert(args.end(), {"--epochs", std::to_string(epochs)});
  audit.replay.push_back(PipelineStep{"train-teacher", "teacher-reg", args});
  audit.regularised = Json{{"label_smoothing", smoothing},
                           {"mixup", mixup},
                           {"epochs", epochs},
                           {"what",
                            "a teacher on the run's real members with the student's "
                            "label smoothing, mixup and epochs (Note [Regularised teacher])"}};
}

// RMIA's population: train images outside the pool (no run trained on them), random and
// stratified by class; val, which the runs only select on, when train has too few.
void choose_population(const MiaOptions& options, LiraAudit& audit) {
  const auto& dataset = audit.dataset;
  std::vector<char> in_pool(static_cast<std::size_t>(dataset.train.size()), 0);
  for (auto row : audit.pool_indices) in_pool[static_cast<std::size_t>(row)] = 1;
  std::vector<std::int64_t> unused;
  for (std::int64_t row = 0; row < dataset.train.size(); ++row)
    if (!in_pool[static_cast<std::size_t>(row)]) unused.push_back(row);
  const data::ImageSet* source = &dataset.train;
  audit.population_split = "train";
  if (static_cast<std::int64_t>(unused.size()) < options.population) {
    unused = every_row(dataset.val);
    source = &dataset.val;
    audit.population_split = "val";
  }
  audit.population_rows = privacy::stratified_subset(source->labels, unused, options.population,
                                                     audit.seed, 0x706f7075 /* "popu" */);
  audit.population = data::take(*source, audit.population_rows);
}

LiraAudit plan_lira(const Context& context, const MiaOptions& options,
                    const std::string& data_path) {
  LiraAudit audit;
  audit.out = context.under_workdir(options.out, "mia");
  audit.runs = options.runs;
  audit.seed = context.get<std::uint64_t>("seed");
  if (audit.runs < 4)
    throw UsageError(
        "--runs must be at least 4: with leave-one-out each point then has IN and OUT "
        "shadows (M = 2 leaves every point with one kind only)");
  audit.replay = replayed_steps(options.pipeline);
  add_regularised_teacher(context, options, audit);
  for (const auto& step : audit.replay)
    audit.replay_names.push_back(step.step +
                                 (step.directory == "teacher-reg" ? " (regularised)" : ""));
  if (options.hard_control)
    audit.replay.push_back(PipelineStep{"distill",
                                        "student-hard",
                                        {"--targets", "hard", "--out", "{workdir}/student-hard",
                                         "--results-name", "distill-hard"}});
  audit.dataset = io::read_dataset(data_path);
  const auto& dataset = audit.dataset;
  const std::int64_t pool_size = std::min(options.pool_size, dataset.train.size());
  if (pool_size < 2) throw UsageError("--pool-size must be at least 2");
  audit.keep = privacy::balanced_keep_matrix(audit.runs, pool_size, audit.seed);
  // The pool: a keyed random subset of train.
  audit.pool_indices =
      privacy::keyed_subset(dataset.train.size(), pool_size, audit.seed, 0x706f6f6c /* "pool" */);
  audit.pool = data::take(dataset.train, audit.pool_indices);
  choose_population(options, audit);
  audit.run_test =
      data::take(dataset.test,
                 privacy::stratified_subset(dataset.test.labels, every_row(dataset.test),
                                            options.run_test, audit.seed, 0x72746573 /* "rtes" */));
  audit.mirror = dataset.info.hflip;
  audit.query_shift = static_cast<int>(options.query_shift);
  // Checked before any run trains.
  if (options.generator_samples > 0 && options.generator_samples < dataset.info.classes)
    throw UsageError("--generator-samples must be 0 or at least one per class (" +
                     std::to_string(dataset.info.classes) + ")");
  return audit;
}

// Trains membership run j and leaves its logits; false when preempted.
bool train_lira_run(Context& context, const MiaOptions& options, const LiraAudit& audit,
                    std::int64_t j) {
  const std::string run_dir = privacy::run_directory(audit.out, "run", j);
  const auto run_start = Clock::now();
  std::vector<std::int64_t> members;
  for (auto x : privacy::kept_positions(audit.keep[j])) members.push_back(audit.pool_indices[x]);
  const auto& dataset = audit.dataset;
  write_run_data(run_dir, dataset, dataset.train, members, audit.run_test,
                 dataset.info.name + "-mia-run-" + std::to_string(j));
  if (!replay_run(context, options, run_dir, audit.replay,
                  audit.seed + 1 + static_cast<std::uint64_t>(j)))
    return false;

  // Logits of every target this run trained, on the pool and the population.
  privacy::MembershipRun record;
  record.run = j;
  record.keep_row_sha256 = privacy::keep_row_sha256(audit.keep[j]);
  record.members = members.size();
  record.seed = audit.seed + 1 + static_cast<std::uint64_t>(j);
  std::vector<privacy::NamedTensor> logits;
  for (const auto& target : all_targets()) {
    if (!path_exists(run_dir + "/" + target.directory + "/model.json")) continue;
    auto model = load_classifier(run_dir + "/" + target.directory, dataset.info.channels,
                                 dataset.info.classes);
    logits.push_back({target.name, privacy::query_logits(logits_of(model), audit.pool.images,
                                                         audit.mirror, audit.query_shift)});
    logits.push_back({target.name + "_population",
                      privacy::query_logits(logits_of(model), audit.population.images, audit.mirror,
                                            audit.query_shift)});
    record.targets.emplace_back(
        target.name,
        privacy::RunTarget{model.weights_sha256, test_accuracy(run_dir, target.results)});
  }
  // Every generator it trained, attacked black-box from n of its samples; its record's
  // accuracy is that of the student trained on its pool.
  for (const auto& target : generator_targets()) {
    const auto directory = run_dir + "/" + target.directory;
    if (options.generator_samples == 0 || !path_exists(directory + "/model.json")) continue;
    auto attacked =
        generator_distances(directory, audit.pool, options.generator_samples, record.seed);
    logits.push_back({target.name + "_distance", attacked.distances});
    const auto* student = record.target(target.student);
    record.targets.emplace_back(
        target.name, privacy::RunTarget{attacked.weights_sha256,
                                        student ? student->test_accuracy : std::nan("")});
  }
  privacy::write_tensors(run_dir + "/logits.h5", logits);
  if (path_exists(run_dir + "/generator/ema.pt"))
    record.generator_sha256 = sha256_file(run_dir + "/generator/ema.pt");
  if (path_exists(run_dir + "/pool/manifest.json"))
    record.pool_manifest_sha256 = sha256_file(run_dir + "/pool/manifest.json");
  record.seconds = seconds_since(run_start);
  record.status = "complete";
  record.write(run_dir + "/run.json");
  log::rank_info("mia: run " + std::to_string(j) + " complete on rank " +
                 std::to_string(context.comm.rank()) + " in " +
                 std::to_string(static_cast<long long>(record.seconds)) + " s");
  return true;
}

// What a third party needs to recompute every LiRA figure without kr (Note [Audit
// export]): written beside scores.h5 with a README of its layout.
struct Export {
  std::vector<privacy::NamedTensor> tensors;
  void add_target(const std::string& name, const privacy::AttackInputs& inputs,
                  const privacy::TargetAudit& result) {
    tensors.push_back({name + "/logits", torch::stack(inputs.logits).contiguous()});
    tensors.push_back(
        {name + "/population_logits", torch::stack(inputs.population_logits).contiguous()});
    tensors.push_back({name + "/online_shadows", result.online_shadows});
  }
};

// Note [Audit export]
// <out>/export.h5: keep (M, P) uint8, labels (P) int64, population_labels (Z) int64, and
// per target (teacher, teacher_reg, student, student_hard) a group with logits
// (M, A, P, K) float32 (run j's logits of every pool point under every query),
// population_logits (M, A, Z, K), and online_shadows (M, M, P) uint8: for target run j,
// shadow run i and point x, 1 when i served as an IN shadow of x in online LiRA, 2 as OUT,
// 0 not used (the balanced subset, Note [Balanced leave-one-out shadows]). Offline LiRA
// uses every OUT shadow. tools/mia-recompute recomputes the LiRA rows from this file alone.
const char* const kExportReadme =
    R"(# export.h5: a kr membership audit, for recomputing it without kr

Root datasets:
- `keep` (M, P) uint8: keep[j][x] = 1 when run j trained on pool point x.
- `labels` (P) int64: the label of each pool point.
- `population_labels` (Z) int64: labels of RMIA's population (points no run trained on).

One group per attacked model kind (`teacher`, `teacher_reg`, `student`, `student_hard`):
- `logits` (M, A, P, K) float32: run j's logits for pool point x under query a
  (queries: crop shifts, each also mirrored; identity first; results/mia.json `queries`
  says how many and which).
- `population_logits` (M, A, Z, K) float32: the same for the population.
- `online_shadows` (M, M, P) uint8: for target run j, shadow run i and point x: 1 when run i
  was one of x's IN shadows in online LiRA, 2 an OUT shadow, 0 not used (equal numbers of IN
  and OUT shadows per point). Offline LiRA uses every OUT shadow i != j.

One group per attacked generator (`generator`, and `generator2` for Privacy Distillation):
- `distance` (M, P) float32: the L2 distance (pixels in [0, 1]) of pool point x to the
  nearest of n class-balanced samples of run j's generator of x's class (results/mia.json
  `targets.<generator>.samples` gives n). GAN-Leaks' score is -distance; the calibrated one
  the mean distance under the OUT runs i != j minus run j's; LiRA fits -log max(d, 1e-6)
  (one query).
- `online_shadows` (M, M, P) uint8: as for the classifiers.

Scores (Carlini et al. 2022): phi = z_y - logsumexp_{k != y} z_k in float64 per query;
Gaussian fits per query; a score is the mean over queries of the per-query log-likelihood
ratio (online) or log Phi((phi - mean_out) / std_out) (offline). Global variance: squared
deviations pooled over points and shadows, one degree of freedom per point mean; when the
balanced online fit has no degree of freedom, the variance pools every leave-one-out
shadow of the kind. Standard deviations are floored at 1e-3 (variance 1e-6). Every run is
the target of the other M - 1; the M x P scores are pooled for the ROC. TPR at FPR f is the
largest TPR over thresholds whose FPR <= f. tools/mia-recompute does all of this.
)";

// Every target's figures as score_lira gathers them.
struct Scored {
  Json targets = Json::object();
  std::map<std::string, std::vector<std::pair<std::string, at::Tensor>>> raw;
  std::vector<privacy::NamedTensor> scores;
  Export exported;
  std::string* csv = nullptr;

  // A target's audit added: its scores, raw scores, CSV rows, refusals logged.
  void add(const std::string& name, const privacy::TargetAudit& result) {
    scores.insert(scores.end(), result.scores.begin(), result.scores.end());
    raw[name] = result.raw;
    *csv += result.csv;
    for (const auto& item : result.refused.items())
      log::warn("mia: " + name + ": " + item.key() +
                " not computed: " + item.value().get<std::string>());
  }
};

// The test accuracy run j recorded for `name` (an Error naming its run.json when absent).
double recorded_accuracy(const LiraAudit& audit, const std::vector<privacy::MembershipRun>& records,
                         std::int64_t j, const std::string& name) {
  const auto* recorded = records[static_cast<std::size_t>(j)].target(name);
  if (!recorded)
    throw Error(privacy::run_directory(audit.out, "run", j) + "/run.json: no record of the run's " +
                name);
  return recorded->test_accuracy;
}

// The classifiers, from their runs' logits.
void score_classifiers(const MiaOptions& options, const LiraAudit& audit,
                       const std::vector<privacy::MembershipRun>& records, Scored& scored) {
  for (const auto& target : all_targets()) {
    privacy::AttackInputs inputs;
    double accuracy_sum = 0;
    for (std::int64_t j = 0; j < audit.runs; ++j) {
      auto file =
          io::h5::File::open_read(privacy::run_directory(audit.out, "run", j) + "/logits.h5");
      if (!io::h5::exists(file, target.name)) break;
      inputs.logits.push_back(io::h5::read_tensor(file, target.name, torch::kFloat32, 3));
      inputs.population_logits.push_back(
          io::h5::read_tensor(file, target.name + "_population", torch::kFloat32, 3));
      accuracy_sum += recorded_accuracy(audit, records, j, target.name);
    }
    if (static_cast<std::int64_t>(inputs.logits.size()) != audit.runs) continue;
    inputs.labels = audit.pool.labels;
    inputs.keep = audit.keep;
    inputs.population_labels = audit.population.labels;
    inputs.rmia_a = options.rmia_a;
    const double accuracy = accuracy_sum / audit.runs;
    auto result =
        privacy::audit_target(target.name, inputs, accuracy, options.bootstrap, audit.seed);
    scored.add(target.name, result);
    scored.exported.add_target(target.name, inputs, result);
    scored.targets[target.name] = Json{{"mean_test_accuracy", accuracy},
                                       {"attacks", result.attacks},
                                       {"refused_attacks", result.refused},
                                       {"attack_notes", result.notes},
                                       {"rmia_a", result.rmia_a}};
  }
}

// The generators, from their runs' distances (Note [Generator membership]).
void score_generators(const MiaOptions& options, const LiraAudit& audit,
                      const std::vector<privacy::MembershipRun>& records, Scored& scored) {
  for (const auto& target : generator_targets()) {
    std::vector<at::Tensor> distances;
    double accuracy_sum = 0;
    const auto name = target.name + "_distance";
    for (std::int64_t j = 0; j < audit.runs; ++j) {
      const auto path = privacy::run_directory(audit.out, "run", j) + "/logits.h5";
      auto file = io::h5::File::open_read(path);
      if (!io::h5::exists(file, name)) break;
      distances.push_back(io::h5::read_tensor(file, name, torch::kFloat32, 1));
      if (distances.back().size(0) != audit.pool.size())
        throw Error(path + ": " + name + " holds " + std::to_string(distances.back().size(0)) +
                    " distances for a pool of " + std::to_string(audit.pool.size()));
      accuracy_sum += recorded_accuracy(audit, records, j, target.name);
    }
    if (static_cast<std::int64_t>(distances.size()) != audit.runs) continue;
    const double accuracy = accuracy_sum / audit.runs;
    const auto stored = torch::stack(distances).contiguous();
    auto result =
        privacy::audit_generator_target(target.name, stored.to(torch::kFloat64), audit.keep,
                                        accuracy, options.bootstrap, audit.seed);
    scored.add(target.name, result);
    scored.exported.tensors.push_back({target.name + "/distance", stored});
    scored.exported.tensors.push_back({target.name + "/online_shadows", result.online_shadows});
    scored.targets[target.name] = Json{{"kind", "generator"},
                                       {"student", target.student},
                                       {"mean_test_accuracy", accuracy},
                                       {"samples", options.generator_samples},
                                       {"attacks", result.attacks},
                                       {"refused_attacks", result.refused},
                                       {"attack_notes", result.notes}};
  }
}

// Rank 0: every attack on every target the runs trained; writes scores.h5 and export.h5
// and returns the targets' figures (and their CSV rows in `csv`).
Json score_lira(const MiaOptions& options, const LiraAudit& audit,
                const std::vector<privacy::MembershipRun>& records, std::string& csv,
                Json& paired) {
  Scored scored;
  scored.csv = &csv;
  scored.scores.push_back({"keep", audit.keep});
  score_classifiers(options, audit, records, scored);
  score_generators(options, audit, records, scored);
  auto& scores = scored.scores;
  auto& exported = scored.exported;
  auto& raw = scored.raw;
  privacy::write_tensors(audit.out + "/scores.h5", scores);
  exported.tensors.insert(exported.tensors.begin(),
                          {{"keep", audit.keep},
                           {"labels", audit.pool.labels.to(torch::kInt64)},
                           {"population_labels", audit.population.labels.to(torch::kInt64)}});
  privacy::write_tensors(audit.out + "/export.h5", exported.tensors,
                         "kr membership audit export: see export-README.md beside this file");
  write_file_atomic(audit.out + "/export-README.md", kExportReadme);
  // "A leaks less than B": A minus B on the same resampled points (Note [Point
  // bootstrap]); the claim holds where an interval excludes 0.
  paired = Json::object();
  for (const auto& [a, b] :
       std::vector<std::pair<std::string, std::string>>{{"teacher", "student"},
                                                        {"teacher", "student_hard"},
                                                        {"teacher_reg", "student"},
                                                        {"student", "student2"},
                                                        {"teacher", "student_dp"},
                                                        {"student", "student_dp"},
                                                        {"generator", "generator2"},
                                                        {"generator", "generator_dp"}}) {
    if (!raw.count(a) || !raw.count(b)) continue;
    Json by_attack = Json::object();
    for (const auto& [attack, a_scores] : raw[a])
      for (const auto& [b_attack, b_scores] : raw[b])
        if (attack == b_attack)
          by_attack[attack] = privacy::paired_difference(a_scores, audit.keep, b_scores, audit.keep,
                                                         options.bootstrap, audit.seed);
    paired[a + "-" + b] = by_attack;
  }
  return scored.targets;
}

// "[lo, hi]" of a 95 % interval, or "" when none was computed.
std::string range_text(const Json& range, const char* format = "[%.4f, %.4f]") {
  if (!range.is_array() || range.size() != 2) return "";
  char text[64];
  std::snprintf(text, sizeof text, format, range[0].get<double>(), range[1].get<double>());
  return text;
}

// The printed table: TPR at 0.1 % and 1 % FPR first, then AUC (Carlini et al.: the
// average case hides the worst-case points), each with its point-bootstrap interval,
// beside the accuracy of the audited runs themselves.
void log_lira(const Json& targets, const Json& paired, const std::string& recipe) {
  log::info("mia: audited recipe: " + recipe);
  for (const auto& item : targets.items()) {
    const auto& lira = item.value().at("attacks").at("lira_online_global");
    const auto& ci = lira.at("bootstrap_95");
    char line[400];
    std::snprintf(
        line, sizeof line,
        "mia: %-12s audited runs' acc %.2f %%  LiRA online: TPR@0.1%% %.4f %s  "
        "TPR@1%% %.4f %s  AUC %.4f %s",
        item.key().c_str(), 100.0 * item.value().at("mean_test_accuracy").get<double>(),
        lira.at("tpr_at_0.1%").get<double>(), range_text(ci.value("tpr_at_0.1%", Json())).c_str(),
        lira.at("tpr_at_1%").get<double>(), range_text(ci.value("tpr_at_1%", Json())).c_str(),
        lira.at("auc").get<double>(), range_text(ci.value("auc", Json())).c_str());
    log::info(line);
    if (item.value().value("kind", "") != "generator" ||
        !item.value().at("attacks").contains("gan_leaks_calibrated"))
      continue;
    const auto& leaks = item.value().at("attacks").at("gan_leaks_calibrated");
    const auto& leaks_ci = leaks.at("bootstrap_95");
    std::snprintf(line, sizeof line,
                  "mia: %-12s GAN-Leaks calibrated (%lld samples): TPR@0.1%% %.4f %s  "
                  "TPR@1%% %.4f %s  AUC %.4f %s",
                  item.key().c_str(),
                  static_cast<long long>(item.value().at("samples").get<std::int64_t>()),
                  leaks.at("tpr_at_0.1%").get<double>(),
                  range_text(leaks_ci.value("tpr_at_0.1%", Json())).c_str(),
                  leaks.at("tpr_at_1%").get<double>(),
                  range_text(leaks_ci.value("tpr_at_1%", Json())).c_str(),
                  leaks.at("auc").get<double>(), range_text(leaks_ci.value("auc", Json())).c_str());
    log::info(line);
  }
  for (const auto& pair : paired.items())
    for (const auto& [attack, label] :
         {std::pair<const char*, const char*>{"lira_online_global", "LiRA online"},
          {"gan_leaks_calibrated", "GAN-Leaks calibrated"}}) {
      if (!pair.value().contains(attack)) continue;
      const auto& d = pair.value().at(attack);
      const char* f = "[%+.4f, %+.4f]";
      char line[320];
      std::snprintf(line, sizeof line,
                    "mia: %s (%s, paired point bootstrap): TPR@0.1%% %+.4f %s  TPR@1%% "
                    "%+.4f %s  AUC %+.4f %s",
                    pair.key().c_str(), label, d.at("tpr_at_0.1%").get<double>(),
                    range_text(d.at("tpr_at_0.1%_95"), f).c_str(), d.at("tpr_at_1%").get<double>(),
                    range_text(d.at("tpr_at_1%_95"), f).c_str(), d.at("auc").get<double>(),
                    range_text(d.at("auc_95"), f).c_str());
      log::info(line);
    }
}

// The audited recipe in words: runs, members, pool, epochs per step, queries.
std::string recipe_text(const MiaOptions& options, const LiraAudit& audit) {
  std::string steps;
  for (const auto& name : audit.replay_names) steps += (steps.empty() ? "" : ", ") + name;
  return "M = " + std::to_string(audit.runs) + " runs of " + steps + " on " +
         std::to_string(audit.pool.size() / 2) + " members each (half of a " +
         std::to_string(audit.pool.size()) + "-image pool), " +
         (options.shadow_epochs > 0 ? std::to_string(options.shadow_epochs) + " epochs per step"
                                    : std::string("epochs as configured")) +
         (options.shadow_batch > 0
              ? ", classifiers at batch " + std::to_string(options.shadow_batch)
              : std::string()) +
         (options.shadow_warmup >= 0
              ? " with " + number_text(options.shadow_warmup) + " warm-up epochs"
              : std::string()) +
         (options.shadow_generator_epochs > 0
              ? ", the generator " + std::to_string(options.shadow_generator_epochs) + " epochs"
              : std::string()) +
         (options.shadow_generator_batch > 0
              ? std::string(options.shadow_generator_epochs > 0 ? " at" : ", the generator at") +
                    " batch " + std::to_string(options.shadow_generator_batch)
              : std::string()) +
         ", " + std::to_string(privacy::query_count(audit.mirror, audit.query_shift)) +
         " queries per point; each run's accuracy on " + std::to_string(audit.run_test.size()) +
         " test images";
}

Json queries_json(const LiraAudit& audit) {
  return Json{{"count", privacy::query_count(audit.mirror, audit.query_shift)},
              {"shift", audit.query_shift},
              {"mirror", audit.mirror},
              {"what",
               "every crop shift (dy, dx) in [-shift, shift]^2 (zero fill, as the "
               "training crop)" +
                   std::string(audit.mirror ? ", each also mirrored" : "") +
                   "; scores averaged over queries per attack"}};
}

// Rank 0: scores the runs and writes results/mia.{json,csv}.
void write_lira_results(const Context& context, const MiaOptions& options, const LiraAudit& audit,
                        Clock::time_point start) {
  std::vector<privacy::MembershipRun> records;
  Json details = Json::array();
  for (std::int64_t j = 0; j < audit.runs; ++j) {
    records.push_back(
        privacy::MembershipRun::read(privacy::run_directory(audit.out, "run", j) + "/run.json"));
    details.push_back(records.back().to_json());
  }
  std::string csv = privacy::attack_csv_header();
  Json paired;
  const Json targets = score_lira(options, audit, records, csv, paired);
  const auto shipped = [&](const std::string& file) {
    return test_accuracy(context.workdir(), file);
  };
  Json results{
      {"step", "mia"},
      {"protocol", "LiRA, leave-one-out over the recipe's runs (Carlini et al. 2022)"},
      {"runs", audit.runs},
      {"pool_size", audit.pool.size()},
      {"members_per_run", audit.pool.size() / 2},
      {"replay", audit.replay_names},
      {"shadow_epochs", options.shadow_epochs},
      {"shadow_batch", options.shadow_batch},
      {"shadow_warmup_epochs", options.shadow_warmup},
      {"shadow_generator_epochs", options.shadow_generator_epochs},
      {"shadow_generator_batch", options.shadow_generator_batch},
      {"queries", queries_json(audit)},
      {"headline", Json::array({"tpr_at_0.1%", "tpr_at_1%", "auc"})},
      {"recipe", Json{{"audited", recipe_text(options, audit)},
                      {"note",
                       "every AUC and TPR here is of the audited recipe's runs (their own "
                       "accuracy is mean_test_accuracy per target); the shipped models "
                       "below are not what was attacked"}}},
      {"regularised_teacher", audit.regularised},
      {"rmia",
       Json{{"a", options.rmia_a >= 0 ? Json(options.rmia_a)
                                      : Json("per target run, from its reference runs "
                                             "(Note [RMIA's a]): targets.*.rmia_a")},
            {"gamma", 1.0},
            {"population", std::to_string(audit.population.size()) + " " + audit.population_split +
                               (audit.population_split == "train"
                                    ? " images outside the pool (no run trained on them)"
                                    : " images (train is all in the pool; runs select on val)") +
                               ", random, stratified by class"}}},
      {"variance_note",
       "online LiRA scores each point with equal numbers of IN and OUT shadows (M/2 - 1 "
       "each, the majority kind dropped at random; unbiased without signal); offline "
       "LiRA uses every OUT shadow; no attack row comes from a fit with one shadow of a "
       "kind per point (refused_attacks and attack_notes per target say which and why); "
       "per-example variances from so few shadows are noisy at small M, so the "
       "global-variance attacks are the headline"},
      {"shipped", Json{{"teacher_test_accuracy", shipped("teacher")},
                       {"student_test_accuracy", shipped("distill")},
                       {"note", "the shipped models' accuracy, for reference: not audited"}}},
      {"export", Json{{"file", audit.out + "/export.h5"},
                      {"readme", audit.out + "/export-README.md"},
                      {"recompute", "tools/mia-recompute " + audit.out + "/export.h5"}}},
      {"targets", targets},
      {"paired", paired},
      {"bootstrap", Json{{"rounds", options.bootstrap},
                         {"resampled", "pool points, each with all its runs' scores"},
                         {"points", audit.pool.size()},
                         {"scores_per_target", audit.runs * audit.pool.size()}}},
      {"runs_detail", details},
      {"run_seconds", run_seconds_total(records)},
      {"seconds", seconds_since(start)},
      {"world_size", context.comm.size()}};
  if (context.record) results["cost_split"] = context.record->cost_split();
  report::write_results_csv(context.workdir(), "mia", csv);
  report::write_results(context.workdir(), "mia", results);
  log_lira(targets, paired, recipe_text(options, audit));
}

int run_tckr(Context& context, const MiaOptions& options);

int run_mia(Context& context, const MiaOptions& options) {
  if (options.protocol == "tckr") return run_tckr(context, options);
  if (options.protocol != "lira")
    throw UsageError("--protocol must be lira or tckr, not '" + options.protocol + "'");
  const auto start = Clock::now();
  const std::string data_path = context.under_workdir(options.data, "data/data.h5");
  const std::string config = context.get<std::string>("config");
  const auto audit = plan_lira(context, options, data_path);
  Json settings{
      {"data_sha256", audit.dataset.info.source_sha256},
      {"runs", audit.runs},
      {"pool_size", audit.pool.size()},
      {"seed", audit.seed},
      {"replay", audit.replay_names},
      {"shadow_epochs", options.shadow_epochs},
      {"hard_control", options.hard_control},
      {"query_shift", audit.query_shift},
      {"run_test", audit.run_test.size()},
      {"population", std::to_string(audit.population.size()) + " " + audit.population_split},
      // The configuration's content, not its path: the same file named relative or
      // absolute, or copied elsewhere, resumes the same runs.
      {"config_sha256", config.empty() ? std::string() : sha256_file(config)}};
  // Only when set: audits started before these options resume unchanged.
  if (options.shadow_batch > 0) settings["shadow_batch"] = options.shadow_batch;
  if (options.shadow_warmup >= 0) settings["shadow_warmup_epochs"] = options.shadow_warmup;
  if (options.shadow_generator_epochs > 0)
    settings["shadow_generator_epochs"] = options.shadow_generator_epochs;
  if (options.shadow_generator_batch > 0)
    settings["shadow_generator_batch"] = options.shadow_generator_batch;
  if (options.generator_samples != 10000) settings["generator_samples"] = options.generator_samples;
  return run_audit(
      context,
      AuditSteps{audit.out, "run", data_path, audit.runs, settings,
                 [&] {
                   privacy::write_tensors(
                       audit.out + "/keep.h5",
                       {{"keep", audit.keep},
                        {"pool_indices", torch::tensor(audit.pool_indices, torch::kInt64)},
                        {"labels", audit.pool.labels},
                        {"population_rows", torch::tensor(audit.population_rows, torch::kInt64)}},
                       "keep[j][x] = 1: run j trained on pool point x, which is train row "
                       "pool_indices[x] of the data set; RMIA's population: rows "
                       "population_rows of " +
                           audit.population_split);
                 },
                 [&](std::int64_t j) { return train_lira_run(context, options, audit, j); },
                 [&] { write_lira_results(context, options, audit, start); }, options.train_run});
}

// ---- TCKR's protocol ----

// Note [TCKR protocol]
// TCKR (the text-conditioned KR paper) audits its shipped models with shadow pairs trained
// on the *test* split and reports the best of 12 LiRA variants. kr runs it as a separate,
// labelled mode that computes what TCKR's notebook computes (Note [TCKR notebook]), so its
// numbers can be set beside the paper's; it is the one place kr trains on test, and only
// shadows do. Challenge set: n random train rows (members of the shipped models) and n
// random test rows (non-members). Run 2p is pair p's IN shadow (a teacher on a stratified
// half of test), run 2p + 1 its OUT shadow (on a stratified half of the IN shadow's rows).
// The protocol's flaws (model-level IN/OUT, raw outputs as probabilities, a two-sided
// "offline" test, TPR read past the FPR asked for, the best variant picked on the challenge
// set itself) are kept and listed in the results; kr's standard LiRA (leave-one-out over
// the recipe's runs, Note [Leave-one-out LiRA]) is the headline.
struct TckrAudit {
  std::string out;
  std::int64_t runs = 0;
  std::int64_t members = 0;
  std::uint64_t seed = 0;
  data::Dataset dataset;
  std::vector<std::int64_t> member_rows, outsider_rows;
  data::ImageSet challenge;  // members then outsiders
  at::Tensor truth;          // (2n) uint8: 1 for members
  at::Tensor keep;           // (M, test size) uint8: run 2p IN, run 2p + 1 OUT shadow of pair p
};

const char* const kTckrFlaws[] = {
    "IN and OUT label whole shadow models, not points: every challenge point is scored "
    "against all IN and all OUT shadows, and no shadow ever trained on the train members",
    "the scores take the models' raw outputs (logits) as probabilities, clipped to "
    "[1e-10, 1 - 1e-10], with no softmax",
    "the offline score -(x - mu_out)^2 / (2 sigma^2) is two-sided: a point far above the OUT "
    "mean scores as low as one far below",
    "the global variant uses one scalar mean over all points and shadows",
    "TPR at FPR f is read at the first ROC point whose FPR is >= f (it may exceed f)",
    "the reported attack is the best of 12 chosen by AUC on the challenge set itself "
    "(optimistic for the attacker)",
    "one query per point (no augmentation)"};

TckrAudit plan_tckr(const Context& context, const MiaOptions& options,
                    const std::string& data_path) {
  TckrAudit audit;
  audit.out = context.under_workdir(options.out, "mia-tckr");
  audit.runs = options.runs;
  audit.seed = context.get<std::uint64_t>("seed");
  if (audit.runs < 2 || audit.runs % 2 != 0)
    throw UsageError("--runs must be even and at least 2 (pairs of IN and OUT shadows)");
  audit.dataset = io::read_dataset(data_path);
  const auto& dataset = audit.dataset;
  const auto n = audit.members = options.tckr_members;
  if (n < 1 || n > dataset.train.size() || n > dataset.test.size())
    throw UsageError("--tckr-members must be between 1 and the sizes of train and test");
  audit.member_rows =
      privacy::keyed_subset(dataset.train.size(), n, audit.seed, 0x74636b72 /* "tckr" */);
  audit.outsider_rows =
      privacy::keyed_subset(dataset.test.size(), n, audit.seed, 0x74657374 /* "test" */);
  audit.challenge = data::take(dataset.train, audit.member_rows);
  const auto outsiders = data::take(dataset.test, audit.outsider_rows);
  audit.challenge.images = torch::cat({audit.challenge.images, outsiders.images});
  audit.challenge.labels = torch::cat({audit.challenge.labels, outsiders.labels});
  audit.truth = torch::cat({torch::ones({n}, torch::kUInt8), torch::zeros({n}, torch::kUInt8)});
  audit.keep = torch::zeros({audit.runs, dataset.test.size()}, torch::kUInt8);
  const auto all = every_row(dataset.test);
  for (std::int64_t p = 0; p < audit.runs / 2; ++p) {
    const auto pair_key = 0x70616972ull /* "pair" */ + static_cast<std::uint64_t>(p);
    const auto in =
        privacy::stratified_fraction(dataset.test.labels, all, 0.5, audit.seed, pair_key << 1);
    const auto out =
        privacy::stratified_fraction(dataset.test.labels, in, 0.5, audit.seed, (pair_key << 1) | 1);
    audit.keep[2 * p].index_fill_(0, torch::tensor(in, torch::kInt64), 1);
    audit.keep[2 * p + 1].index_fill_(0, torch::tensor(out, torch::kInt64), 1);
  }
  return audit;
}

// Trains shadow j (a teacher on its half of test) and leaves its challenge logits.
bool train_tckr_shadow(Context& context, const MiaOptions& options, const TckrAudit& audit,
                       std::int64_t j) {
  const std::string run_dir = privacy::run_directory(audit.out, "shadow", j);
  const auto run_start = Clock::now();
  const auto rows = privacy::kept_positions(audit.keep[j]);
  const auto& dataset = audit.dataset;
  // A shadow's "test" is val: test rows are its training data.
  write_run_data(run_dir, dataset, dataset.test, rows, dataset.val,
                 dataset.info.name + "-tckr-shadow-" + std::to_string(j));
  if (!replay_run(context, options, run_dir, {PipelineStep{"train-teacher", "teacher", {}}},
                  audit.seed + 1 + static_cast<std::uint64_t>(j)))
    return false;
  auto model = load_classifier(run_dir + "/teacher", dataset.info.channels, dataset.info.classes);
  privacy::write_tensors(
      run_dir + "/logits.h5",
      {{"shadow", privacy::query_logits(logits_of(model), audit.challenge.images, false)}});
  privacy::MembershipRun record;
  record.run = j;
  record.keep_row_sha256 = privacy::keep_row_sha256(audit.keep[j]);
  record.members = rows.size();
  record.seed = audit.seed + 1 + static_cast<std::uint64_t>(j);
  record.seconds = seconds_since(run_start);
  record.status = "complete";
  record.write(run_dir + "/run.json");
  log::rank_info("mia tckr: shadow " + std::to_string(j) + " complete");
  return true;
}

// Rank 0: TCKR's 12 variants on one shipped model; its figures, or null when absent.
Json score_tckr_target(const MiaOptions& options, const TckrAudit& audit,
                       const at::Tensor& shadow_in, const at::Tensor& shadow_out,
                       const std::string& name, const std::string& dir, std::string& csv) {
  if (!path_exists(dir + "/model.json")) {
    if (name != "student_hard")
      log::warn("mia tckr: no model at " + dir + "; " + name + " skipped");
    return nullptr;
  }
  const auto& dataset = audit.dataset;
  auto model = load_classifier(dir, dataset.info.channels, dataset.info.classes);
  auto test_logits = privacy::query_logits(logits_of(model), dataset.test.images, false)[0];
  const double accuracy =
      test_logits.argmax(-1).eq(dataset.test.labels).to(torch::kFloat64).mean().item<double>();
  const auto target = privacy::query_logits(logits_of(model), audit.challenge.images, false)[0];
  const auto result =
      privacy::audit_target_tckr(name, shadow_in, shadow_out, target, audit.challenge.labels,
                                 audit.truth, accuracy, options.bootstrap, audit.seed);
  csv += result.csv;
  const auto& b = result.variants.at(result.best);
  char line[260];
  std::snprintf(line, sizeof line,
                "mia tckr: %-12s acc %.2f %%  best of 12 (%s): TPR@0.1%% %.4f  TPR@1%% %.4f  "
                "AUC %.4f (TCKR's notebook protocol)",
                name.c_str(), 100.0 * accuracy, result.best.c_str(),
                b.at("tpr_at_0.1%").get<double>(), b.at("tpr_at_1%").get<double>(),
                b.at("auc").get<double>());
  log::info(line);
  return Json{{"model", dir},
              {"weights_sha256", model.weights_sha256},
              {"test_accuracy", accuracy},
              {"best_variant", result.best},
              {"best", b},
              {"variants", result.variants}};
}

void write_tckr_results(const Context& context, const MiaOptions& options, const TckrAudit& audit,
                        Clock::time_point start) {
  // The notebook drops a shadow pair whose outputs hold a NaN.
  std::vector<at::Tensor> ins, outs;
  std::int64_t dropped = 0;
  for (std::int64_t p = 0; p < audit.runs / 2; ++p) {
    const auto read = [&](std::int64_t j) {
      auto file =
          io::h5::File::open_read(privacy::run_directory(audit.out, "shadow", j) + "/logits.h5");
      return io::h5::read_tensor(file, "shadow", torch::kFloat32, 3)[0];
    };
    auto in = read(2 * p);
    auto out = read(2 * p + 1);
    if (in.isnan().any().item<bool>() || out.isnan().any().item<bool>()) {
      ++dropped;
      continue;
    }
    ins.push_back(in);
    outs.push_back(out);
  }
  if (ins.empty()) throw Error("mia tckr: every shadow pair has NaN outputs; nothing to score");
  const auto shadow_in = torch::stack(ins);
  const auto shadow_out = torch::stack(outs);
  const std::pair<std::string, std::string> targets[] = {
      {"teacher", context.under_workdir(options.teacher, "teacher")},
      {"student", context.under_workdir(options.student, "student")},
      {"student_hard", context.under_workdir(options.student_hard, "student-hard")}};
  Json results_targets = Json::object();
  std::string csv = privacy::attack_csv_header();
  for (const auto& [name, dir] : targets) {
    auto figures = score_tckr_target(options, audit, shadow_in, shadow_out, name, dir, csv);
    if (!figures.is_null()) results_targets[name] = std::move(figures);
  }
  const auto n = std::to_string(audit.members);
  Json flaws = Json::array();
  for (const char* flaw : kTckrFlaws) flaws.push_back(flaw);
  Json results{{"step", "mia"},
               {"protocol",
                "TCKR's published protocol, as its notebook (NicoloResmini/TCKR "
                "src/mia_lira.ipynb) computes it, flaws included (Note [TCKR notebook]): "
                "shadow pairs trained on the test split, best of 12 LiRA variants chosen on "
                "the challenge set itself"},
               {"flaws", flaws},
               {"runs", audit.runs},
               {"shadow_pairs", audit.runs / 2},
               {"shadow_pairs_dropped_for_nan", dropped},
               {"challenge", Json{{"members", n + " random train rows"},
                                  {"non_members", n + " random test rows"}}},
               {"shadow_epochs", options.shadow_epochs},
               {"queries", 1},
               {"figures",
                "auc and tpr_at_* as the notebook computes them; kr_roc: kr's own "
                "ROC of the same scores, with its point-bootstrap intervals"},
               {"targets", results_targets},
               {"seconds", seconds_since(start)},
               {"world_size", context.comm.size()}};
  if (context.record) results["cost_split"] = context.record->cost_split();
  report::write_results_csv(context.workdir(), "mia-tckr", csv);
  report::write_results(context.workdir(), "mia-tckr", results);
}

int run_tckr(Context& context, const MiaOptions& options) {
  const auto start = Clock::now();
  const std::string data_path = context.under_workdir(options.data, "data/data.h5");
  const auto audit = plan_tckr(context, options, data_path);
  Json settings{{"data_sha256", audit.dataset.info.source_sha256},
                {"protocol", "tckr"},
                {"runs", audit.runs},
                {"members", audit.members},
                {"seed", audit.seed},
                {"shadow_epochs", options.shadow_epochs}};
  return run_audit(
      context,
      AuditSteps{
          audit.out, "shadow", data_path, audit.runs, settings,
          [&] {
            privacy::write_tensors(
                audit.out + "/keep.h5",
                {{"keep", audit.keep},
                 {"member_train_rows", torch::tensor(audit.member_rows, torch::kInt64)},
                 {"non_member_test_rows", torch::tensor(audit.outsider_rows, torch::kInt64)}},
                "TCKR protocol: keep[j][t] = 1: shadow j trained on test row t (shadow 2p: "
                "pair p's IN model, 2p + 1 its OUT model); challenge = member_train_rows then "
                "non_member_test_rows");
          },
          [&](std::int64_t j) { return train_tckr_shadow(context, options, audit, j); },
          [&] { write_tckr_results(context, options, audit, start); }, options.train_run});
}

}  // namespace

Step mia_step() {
  return typed_step<MiaOptions>(
      "mia", "membership inference (LiRA and baselines) against the teacher and the student recipe",
      add_mia_options, run_mia);
}

}  // namespace kr::steps
