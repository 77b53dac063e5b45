// `kr mia`: membership inference against the recipe (Note [Leave-one-out LiRA]).
// M runs each replay the pipeline (teacher, generator, pool, student) on their
// keep-row half of a pool of real train images; whole runs are dealt to ranks
// (no all-reduce between them), each resumable; rank 0 then scores every run as
// the target of the others.
#include <torch/torch.h>

#include <chrono>

#include "kr/comm/communicator.hpp"
#include "kr/comm/self_communicator.hpp"
#include "kr/core/clock.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/keyed_rng.hpp"
#include "kr/core/log.hpp"
#include "kr/core/sha256.hpp"
#include "kr/core/strings.hpp"
#include "kr/data/augment.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/io/h5.hpp"
#include "kr/privacy/attacks.hpp"
#include "kr/steps/artifacts.hpp"
#include "kr/steps/pipeline.hpp"
#include "kr/steps/root_only.hpp"
#include "kr/steps/run_record.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

void add_mia_options(po::options_description& options) {
  // clang-format off
  options.add_options()
      ("data", po::value<std::string>()->default_value(""), "prepared data set (default: <workdir>/data/data.h5)")
      ("out", po::value<std::string>()->default_value(""), "directory of the runs (default: <workdir>/mia)")
      ("runs", po::value<std::int64_t>()->default_value(8), "M: runs of the recipe, each on a random half of the pool (even)")
      ("pool-size", po::value<std::int64_t>()->default_value(10000), "real train images in the membership pool (a keyed random subset)")
      ("pipeline", po::value<std::string>()->default_value("kr"), "pipeline each run replays (jobs/<name>.pipeline or a file): its training steps (train-teacher, train-generator, generate, distill), in its order and run directories")
      ("shadow-epochs", po::value<std::int64_t>()->default_value(0), "cost control: --epochs of every replayed training step (0: as configured)")
      ("hard-control", po::bool_switch(), "also train a hard-label student per run (the control of Jagielski et al. 2023)")
      ("population", po::value<std::int64_t>()->default_value(1000), "val images used as RMIA's population (never trained on)")
      ("rmia-a", po::value<double>()->default_value(0.3), "RMIA's offline correction a")
      ("bootstrap", po::value<int>()->default_value(200), "bootstrap resamples for the 95 % intervals")
      ("protocol", po::value<std::string>()->default_value("lira"), "lira: leave-one-out over the recipe's runs; tckr: TCKR's published protocol (shadows on test halves, best of 12 variants; uses test, labelled so)")
      ("tckr-members", po::value<std::int64_t>()->default_value(1000), "tckr: train members and as many test non-members in the challenge set")
      ("teacher", po::value<std::string>()->default_value(""), "tckr: the attacked teacher (default: <workdir>/teacher)")
      ("student", po::value<std::string>()->default_value(""), "tckr: the attacked student (default: <workdir>/student)")
      ("student-hard", po::value<std::string>()->default_value(""), "tckr: a hard-label student to attack as well (default: <workdir>/student-hard if present)");
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

// Logits (A, N, K) of a classifier on real images under the query augmentations.
at::Tensor query_logits(LoadedClassifier& model, const at::Tensor& images, bool mirror) {
  std::vector<at::Tensor> per_augmentation;
  for (int flip = 0; flip < (mirror ? 2 : 1); ++flip) {
    std::vector<at::Tensor> chunks;
    for (std::int64_t i = 0; i < images.size(0); i += 500) {
      auto x = data::to_float(images.narrow(0, i, std::min<std::int64_t>(500, images.size(0) - i)));
      if (flip) x = x.flip({3});
      chunks.push_back(model.logits(x).to(torch::kFloat32));
    }
    per_augmentation.push_back(torch::cat(chunks));
  }
  return torch::stack(per_augmentation).contiguous();
}

// What the runs took when they were trained (a rerun reuses complete runs).
double run_seconds_total(const std::vector<Json>& infos) {
  double total = 0;
  for (const auto& info : infos) total += info.value("seconds", 0.0);
  return total;
}

double json_number(const std::string& path, const std::string& key) {
  if (!path_exists(path)) return std::nan("");
  return Json::parse(read_file(path)).value(key, std::nan(""));
}

struct Target {
  std::string name;       // teacher, student, student_hard
  std::string directory;  // run-relative
  std::string results;    // run-relative results file with test_accuracy
};

const std::vector<Target>& all_targets() {
  static const std::vector<Target> targets = {
      {"teacher", "teacher", "results/teacher.json"},
      {"student", "student", "results/distill.json"},
      {"student_hard", "student-hard", "results/distill-hard.json"}};
  return targets;
}

// The first n of a keyed random permutation of 0..total-1.
std::vector<std::int64_t> keyed_subset(std::int64_t total, std::int64_t n, std::uint64_t seed,
                                       std::uint64_t tag) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(total));
  std::iota(order.begin(), order.end(), 0);
  KeyedRng rng(stream_key(seed, Purpose::split, tag, 0));
  for (std::int64_t i = total - 1; i > 0; --i)
    std::swap(order[i], order[rng.below(static_cast<std::uint64_t>(i + 1))]);
  order.resize(static_cast<std::size_t>(std::min(n, total)));
  return order;
}

// The positions where keep row `row` (uint8, one per point) is set.
std::vector<std::int64_t> kept_positions(const at::Tensor& row) {
  const auto contiguous = row.contiguous();
  const auto* data = contiguous.data_ptr<std::uint8_t>();
  std::vector<std::int64_t> kept;
  for (std::int64_t x = 0; x < contiguous.numel(); ++x)
    if (data[x]) kept.push_back(x);
  return kept;
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

// Every rank learns whether any rank's runs were preempted.
bool any_rank_preempted(comm::Communicator& comm, bool preempted) {
  auto flag = torch::tensor({preempted ? 1 : 0}, torch::kInt64);
  comm.allreduce(flag, comm::ReduceOp::max);
  return flag.item<std::int64_t>() != 0;
}

// One attack's figures: ROC summary, 95 % bootstrap intervals, AOP = acc * (0.5 / AUC)^2.
Json summarize_attack(const at::Tensor& scores, const at::Tensor& members, double accuracy,
                      int bootstrap, std::uint64_t seed) {
  const auto summary = privacy::roc(scores, members);
  const double aop = accuracy * std::pow(0.5 / std::max(summary.auc, 0.5), 2.0);
  return Json{{"auc", summary.auc},
              {"balanced_accuracy", summary.balanced_accuracy},
              {"tpr_at_0.1%", summary.tpr_at_0_1},
              {"tpr_at_1%", summary.tpr_at_1},
              {"tpr_at_10%", summary.tpr_at_10},
              {"members", summary.members},
              {"non_members", summary.non_members},
              {"aop", aop},
              {"bootstrap_95", privacy::bootstrap_intervals(scores, members, bootstrap, seed)},
              {"roc", Json{{"fpr", summary.fpr}, {"tpr", summary.tpr}}}};
}

std::string csv_header() {
  return "target,attack,auc,auc_low,auc_high,balanced_accuracy,tpr_at_0.1%,tpr_at_1%,"
         "tpr_at_10%,members,non_members,mean_test_accuracy,aop\n";
}

std::string csv_row(const std::string& target, const std::string& attack, const Json& figures,
                    double accuracy) {
  const auto& auc_interval = figures.at("bootstrap_95").at("auc");
  const double auc = figures.at("auc").get<double>();
  char row[400];
  std::snprintf(row, sizeof row, "%s,%s,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%lld,%lld,%.6f,%.6f\n",
                target.c_str(), attack.c_str(), auc,
                auc_interval.empty() ? auc : auc_interval[0].get<double>(),
                auc_interval.empty() ? auc : auc_interval[1].get<double>(),
                figures.at("balanced_accuracy").get<double>(),
                figures.at("tpr_at_0.1%").get<double>(), figures.at("tpr_at_1%").get<double>(),
                figures.at("tpr_at_10%").get<double>(),
                static_cast<long long>(figures.at("members").get<std::int64_t>()),
                static_cast<long long>(figures.at("non_members").get<std::int64_t>()), accuracy,
                figures.at("aop").get<double>());
  return row;
}

// Replays `steps` in <run_dir> (its data in <run_dir>/data) through the pipeline
// runner on a single-rank communicator (whole runs are dealt to ranks), skipping steps
// already complete. Returns false when a step was preempted.
bool replay_run(Context& context, const std::string& run_dir, std::vector<PipelineStep> steps,
                std::uint64_t seed) {
  const std::string config =
      context.options.count("config") ? context.get<std::string>("config") : "";
  std::vector<std::string> common = {"--workdir", run_dir, "--seed", std::to_string(seed)};
  if (!config.empty()) common.insert(common.begin(), {"--config", config});
  const auto shadow_epochs = context.get<std::int64_t>("shadow-epochs");
  if (shadow_epochs > 0)
    for (auto& step : steps)
      if (step.step != "generate")
        step.options.insert(step.options.end(), {"--epochs", std::to_string(shadow_epochs)});
  comm::SelfCommunicator self;
  const int code = run_pipeline(context, self, steps, run_dir, common);
  if (code == exit_code::preempted) return false;
  if (code != exit_code::ok)
    throw Error(run_dir + ": a replayed step failed with exit code " + std::to_string(code));
  return true;
}

int run_tckr(Context& context);

int run_mia(Context& context) {
  const auto protocol = context.get<std::string>("protocol");
  if (protocol == "tckr") return run_tckr(context);
  if (protocol != "lira")
    throw UsageError("--protocol must be lira or tckr, not '" + protocol + "'");
  const auto start = Clock::now();
  const std::string data_path = context.path_option("data", "data/data.h5");
  const std::string out = context.path_option("out", "mia");
  const std::string config =
      context.options.count("config") ? context.get<std::string>("config") : "";
  const auto runs = context.get<std::int64_t>("runs");
  const auto seed = context.get<std::uint64_t>("seed");
  if (runs < 4)
    throw UsageError(
        "--runs must be at least 4: with leave-one-out each point then has IN and OUT "
        "shadows (M = 2 leaves every point with one kind only)");
  auto replay = replayed_steps(context.get<std::string>("pipeline"));
  std::vector<std::string> replay_names;
  for (const auto& step : replay) replay_names.push_back(step.step);
  if (context.get<bool>("hard-control"))
    replay.push_back(PipelineStep{"distill",
                                  "student-hard",
                                  {"--targets", "hard", "--out", "{workdir}/student-hard",
                                   "--results-name", "distill-hard"}});
  data::Dataset dataset = io::read_dataset(data_path);
  const std::int64_t pool_size =
      std::min(context.get<std::int64_t>("pool-size"), dataset.train.size());
  if (pool_size < 2) throw UsageError("--pool-size must be at least 2");
  auto keep = privacy::balanced_keep_matrix(runs, pool_size, seed);

  // The pool: a keyed random subset of train.
  const auto pool_indices =
      keyed_subset(dataset.train.size(), pool_size, seed, 0x706f6f6c /* "pool" */);
  const auto pool = data::take(dataset.train, pool_indices);
  const std::int64_t population_size =
      std::min(context.get<std::int64_t>("population"), dataset.val.size());
  const auto population = data::take(dataset.val, [&] {
    std::vector<std::int64_t> v(static_cast<std::size_t>(population_size));
    std::iota(v.begin(), v.end(), 0);
    return v;
  }());
  const bool mirror = dataset.info.hflip;

  Json settings{{"data_sha256", dataset.info.source_sha256},
                {"runs", runs},
                {"pool_size", pool_size},
                {"seed", seed},
                {"replay", replay_names},
                {"shadow_epochs", context.get<std::int64_t>("shadow-epochs")},
                {"hard_control", context.get<bool>("hard-control")},
                // The configuration's content, not its path: the same file named relative or
                // absolute, or copied elsewhere, resumes the same runs.
                {"config_sha256", config.empty() ? std::string() : sha256_file(config)}};
  // Checked before the run record: a refused rerun leaves a complete record as it was.
  run_on_root(context.comm, [&] { claim_settings(out, settings, "runs"); });
  RunRecord record(context, out);
  record.add_input("data", data_path);
  run_on_root(context.comm, [&] {
    auto file_path = out + "/keep.h5";
    PendingFile pending(file_path);
    {
      auto file = io::h5::File::create(pending.temp_path());
      io::h5::write_tensor(file, "keep", keep);
      io::h5::write_tensor(file, "pool_indices", torch::tensor(pool_indices, torch::kInt64));
      io::h5::write_tensor(file, "labels", pool.labels);
      io::h5::set_attr(file, "/", "note",
                       std::string("keep[j][x] = 1: run j trained on pool point x, "
                                   "which is train row pool_indices[x] of the data set"));
      file.close();
    }
    pending.commit();
  });

  // Whole runs dealt to ranks.
  bool preempted = false;
  for (std::int64_t j = context.comm.rank(); j < runs && !preempted; j += context.comm.size()) {
    const std::string run_dir = out + "/run_" + std::to_string(j);
    if (path_exists(run_dir + "/logits.h5") && run_complete(run_dir)) continue;
    const auto run_start = Clock::now();
    std::vector<std::int64_t> members;
    for (auto x : kept_positions(keep[j])) members.push_back(pool_indices[x]);
    const std::string keep_sha =
        sha256_bytes(keep[j].contiguous().data_ptr(), static_cast<std::size_t>(pool_size));
    write_run_data(run_dir, dataset, dataset.train, members, dataset.test,
                   dataset.info.name + "-mia-run-" + std::to_string(j));
    preempted = !replay_run(context, run_dir, replay, seed + 1 + static_cast<std::uint64_t>(j));
    if (preempted) break;

    // Logits of every target this run trained, on the pool and the population.
    Json run_info{{"run", j},
                  {"keep_row_sha256", keep_sha},
                  {"members", members.size()},
                  {"seed", seed + 1 + j}};
    PendingFile pending(run_dir + "/logits.h5");
    {
      auto file = io::h5::File::create(pending.temp_path());
      for (const auto& target : all_targets()) {
        if (!path_exists(run_dir + "/" + target.directory + "/model.json")) continue;
        auto model = load_classifier(run_dir + "/" + target.directory, dataset.info.channels,
                                     dataset.info.classes);
        io::h5::write_tensor(file, target.name, query_logits(model, pool.images, mirror));
        io::h5::write_tensor(file, target.name + "_population",
                             query_logits(model, population.images, mirror));
        run_info[target.name] =
            Json{{"weights_sha256", model.weights_sha256},
                 {"test_accuracy", json_number(run_dir + "/" + target.results, "test_accuracy")}};
      }
      file.close();
    }
    pending.commit();
    if (path_exists(run_dir + "/generator/ema.pt"))
      run_info["generator_sha256"] = sha256_file(run_dir + "/generator/ema.pt");
    if (path_exists(run_dir + "/pool/manifest.json"))
      run_info["pool_manifest_sha256"] = sha256_file(run_dir + "/pool/manifest.json");
    run_info["seconds"] = seconds_since(run_start);
    run_info["status"] = "complete";
    write_file_atomic(run_dir + "/run.json", run_info.dump(2) + "\n");
    log::rank_info("mia: run " + std::to_string(j) + " complete on rank " +
                   std::to_string(context.comm.rank()) + " in " +
                   std::to_string(static_cast<long long>(run_info["seconds"].get<double>())) +
                   " s");
  }

  if (any_rank_preempted(context.comm, preempted)) {
    record.finish("preempted");
    return exit_code::preempted;
  }

  Json results;
  run_on_root(context.comm, [&] {
    std::vector<Json> infos;
    for (std::int64_t j = 0; j < runs; ++j)
      infos.push_back(Json::parse(read_file(out + "/run_" + std::to_string(j) + "/run.json")));
    Json targets = Json::object();
    std::string csv = csv_header();
    auto score_file_path = out + "/scores.h5";
    PendingFile score_pending(score_file_path);
    auto score_file = io::h5::File::create(score_pending.temp_path());
    io::h5::write_tensor(score_file, "keep", keep);
    for (const auto& target : all_targets()) {
      privacy::AttackInputs inputs;
      bool present = true;
      double accuracy_sum = 0;
      for (std::int64_t j = 0; j < runs && present; ++j) {
        auto file = io::h5::File::open_read(out + "/run_" + std::to_string(j) + "/logits.h5");
        if (!io::h5::exists(file, target.name)) {
          present = false;
          break;
        }
        inputs.logits.push_back(io::h5::read_tensor(file, target.name, torch::kFloat32, 3));
        inputs.population_logits.push_back(
            io::h5::read_tensor(file, target.name + "_population", torch::kFloat32, 3));
        accuracy_sum += infos[j].at(target.name).value("test_accuracy", 0.0);
      }
      if (!present) continue;
      inputs.labels = pool.labels;
      inputs.keep = keep;
      inputs.population_labels = population.labels;
      inputs.rmia_a = context.get<double>("rmia-a");
      const double accuracy = accuracy_sum / runs;
      Json attacks = Json::object();
      io::h5::create_group(score_file, target.name);
      for (const auto& [attack, scores] : privacy::attack_scores(inputs)) {
        attacks[attack] =
            summarize_attack(scores, keep, accuracy, context.get<int>("bootstrap"), seed);
        io::h5::write_tensor(score_file, target.name + "/" + attack,
                             scores.to(torch::kFloat32).contiguous());
        csv += csv_row(target.name, attack, attacks[attack], accuracy);
      }
      targets[target.name] = Json{{"mean_test_accuracy", accuracy}, {"attacks", attacks}};
    }
    score_file.close();
    score_pending.commit();
    const auto shipped = [&](const std::string& file) {
      return json_number(context.workdir() + "/results/" + file, "test_accuracy");
    };
    results = Json{{"step", "mia"},
                   {"protocol", "LiRA, leave-one-out over the recipe's runs (Carlini et al. 2022)"},
                   {"runs", runs},
                   {"pool_size", pool_size},
                   {"members_per_run", pool_size / 2},
                   {"replay", replay_names},
                   {"shadow_epochs", context.get<std::int64_t>("shadow-epochs")},
                   {"query_augmentations", mirror ? "identity, mirror" : "identity"},
                   {"rmia", Json{{"a", context.get<double>("rmia-a")},
                                 {"gamma", 1.0},
                                 {"population", std::to_string(population_size) +
                                                    " val images (never trained on)"}}},
                   {"variance_note",
                    "each point is scored with equal numbers of IN and OUT shadows (M/2 - 1 "
                    "each, the majority kind dropped at random; unbiased without signal); "
                    "per-example variances from so few shadows are noisy at small M, so the "
                    "global-variance attacks are the headline"},
                   {"shipped", Json{{"teacher_test_accuracy", shipped("teacher.json")},
                                    {"student_test_accuracy", shipped("distill.json")}}},
                   {"targets", targets},
                   {"runs_detail", infos},
                   {"run_seconds", run_seconds_total(infos)},
                   {"seconds", seconds_since(start)},
                   {"world_size", context.comm.size()}};
    make_dirs(context.workdir() + "/results");
    write_file_atomic(context.workdir() + "/results/mia.csv", csv);
    write_file_atomic(context.workdir() + "/results/mia.json", results.dump(2) + "\n");
    for (const auto& item : targets.items()) {
      const auto& lira = item.value().at("attacks").at("lira_online_global");
      char line[240];
      std::snprintf(line, sizeof line,
                    "mia: %-12s acc %.2f %%  LiRA online AUC %.4f  TPR@0.1%% %.4f  TPR@1%% %.4f  "
                    "(%lld OUT scores)",
                    item.key().c_str(), 100.0 * item.value().at("mean_test_accuracy").get<double>(),
                    lira.at("auc").get<double>(), lira.at("tpr_at_0.1%").get<double>(),
                    lira.at("tpr_at_1%").get<double>(),
                    static_cast<long long>(lira.at("non_members").get<std::int64_t>()));
      log::info(line);
    }
  });
  record.finish("complete");
  return exit_code::ok;
}

// Note [TCKR protocol]
// TCKR (the text-conditioned KR paper) audits its shipped models with shadows trained
// on halves of the *test* split and reports the best of 12 LiRA variants. kr runs it
// as a separate, labelled mode so its numbers can be set beside the paper's; it is the
// one place kr trains on test, and only shadows do. Challenge set: n random train rows
// (members of the shipped models) and n random test rows (non-members). Shadow j is a
// teacher trained on its keep-row half of test, so each test challenge point has IN and
// OUT shadows and every train challenge point only OUT ones (privacy::lira gives those
// the mean IN - OUT shift). Picking the best variant by its AUC on the challenge set is
// TCKR's choice, and optimistic for the attacker; kr's standard LiRA (leave-one-out
// over the recipe's runs, Note [Leave-one-out LiRA]) is the headline.
int run_tckr(Context& context) {
  const auto start = Clock::now();
  const std::string data_path = context.path_option("data", "data/data.h5");
  const std::string out = context.path_option("out", "mia-tckr");
  const auto runs = context.get<std::int64_t>("runs");
  const auto seed = context.get<std::uint64_t>("seed");
  if (runs < 2 || runs % 2 != 0) throw UsageError("--runs must be even and at least 2");
  data::Dataset dataset = io::read_dataset(data_path);
  const auto n = context.get<std::int64_t>("tckr-members");
  if (n < 1 || n > dataset.train.size() || n > dataset.test.size())
    throw UsageError("--tckr-members must be between 1 and the sizes of train and test");
  const auto member_rows = keyed_subset(dataset.train.size(), n, seed, 0x74636b72 /* "tckr" */);
  const auto outsider_rows = keyed_subset(dataset.test.size(), n, seed, 0x74657374 /* "test" */);
  auto challenge = data::take(dataset.train, member_rows);
  {
    auto outsiders = data::take(dataset.test, outsider_rows);
    challenge.images = torch::cat({challenge.images, outsiders.images});
    challenge.labels = torch::cat({challenge.labels, outsiders.labels});
  }
  auto truth = torch::cat({torch::ones({n}, torch::kUInt8), torch::zeros({n}, torch::kUInt8)});
  auto keep = privacy::balanced_keep_matrix(runs, dataset.test.size(), seed);  // over test
  // in_mask (M, 2n): train members are OUT of every shadow; test points as keep says.
  auto in_mask = torch::cat({torch::zeros({runs, n}, torch::kUInt8),
                             keep.index_select(1, torch::tensor(outsider_rows, torch::kInt64))},
                            1);
  const bool mirror = dataset.info.hflip;

  Json settings{{"data_sha256", dataset.info.source_sha256},
                {"protocol", "tckr"},
                {"runs", runs},
                {"members", n},
                {"seed", seed},
                {"shadow_epochs", context.get<std::int64_t>("shadow-epochs")}};
  // Checked before the run record: a refused rerun leaves a complete record as it was.
  run_on_root(context.comm, [&] { claim_settings(out, settings, "runs"); });
  RunRecord record(context, out);
  record.add_input("data", data_path);
  run_on_root(context.comm, [&] {
    PendingFile pending(out + "/keep.h5");
    {
      auto file = io::h5::File::create(pending.temp_path());
      io::h5::write_tensor(file, "keep", keep);
      io::h5::write_tensor(file, "member_train_rows", torch::tensor(member_rows, torch::kInt64));
      io::h5::write_tensor(file, "non_member_test_rows",
                           torch::tensor(outsider_rows, torch::kInt64));
      io::h5::set_attr(file, "/", "note",
                       std::string("TCKR protocol: keep[j][t] = 1: shadow j trained on test row "
                                   "t; challenge = member_train_rows then non_member_test_rows"));
      file.close();
    }
    pending.commit();
  });

  bool preempted = false;
  for (std::int64_t j = context.comm.rank(); j < runs && !preempted; j += context.comm.size()) {
    const std::string run_dir = out + "/shadow_" + std::to_string(j);
    if (path_exists(run_dir + "/logits.h5") && run_complete(run_dir)) continue;
    const auto run_start = Clock::now();
    const auto rows = kept_positions(keep[j]);
    // A shadow's "test" is val: test rows are its training data.
    write_run_data(run_dir, dataset, dataset.test, rows, dataset.val,
                   dataset.info.name + "-tckr-shadow-" + std::to_string(j));
    preempted = !replay_run(context, run_dir, {PipelineStep{"train-teacher", "teacher", {}}},
                            seed + 1 + static_cast<std::uint64_t>(j));
    if (preempted) break;
    PendingFile pending(run_dir + "/logits.h5");
    {
      auto model =
          load_classifier(run_dir + "/teacher", dataset.info.channels, dataset.info.classes);
      auto file = io::h5::File::create(pending.temp_path());
      io::h5::write_tensor(file, "shadow", query_logits(model, challenge.images, mirror));
      file.close();
    }
    pending.commit();
    Json run_info{{"run", j},
                  {"keep_row_sha256", sha256_bytes(keep[j].contiguous().data_ptr(),
                                                   static_cast<std::size_t>(keep.size(1)))},
                  {"members", rows.size()},
                  {"seed", seed + 1 + static_cast<std::uint64_t>(j)},
                  {"seconds", seconds_since(run_start)},
                  {"status", "complete"}};
    write_file_atomic(run_dir + "/run.json", run_info.dump(2) + "\n");
    log::rank_info("mia tckr: shadow " + std::to_string(j) + " complete");
  }
  if (any_rank_preempted(context.comm, preempted)) {
    record.finish("preempted");
    return exit_code::preempted;
  }

  run_on_root(context.comm, [&] {
    std::vector<at::Tensor> shadow_logits;
    for (std::int64_t j = 0; j < runs; ++j) {
      auto file = io::h5::File::open_read(out + "/shadow_" + std::to_string(j) + "/logits.h5");
      shadow_logits.push_back(io::h5::read_tensor(file, "shadow", torch::kFloat32, 3));
    }
    const std::pair<std::string, std::string> targets[] = {
        {"teacher", context.path_option("teacher", "teacher")},
        {"student", context.path_option("student", "student")},
        {"student_hard", context.path_option("student-hard", "student-hard")}};
    Json results_targets = Json::object();
    std::string csv = csv_header();
    for (const auto& [name, dir] : targets) {
      if (!path_exists(dir + "/model.json")) {
        if (name != "student_hard")
          log::warn("mia tckr: no model at " + dir + "; " + name + " skipped");
        continue;
      }
      auto model = load_classifier(dir, dataset.info.channels, dataset.info.classes);
      auto test_logits = query_logits(model, dataset.test.images, false)[0];
      const double accuracy =
          test_logits.argmax(-1).eq(dataset.test.labels).to(torch::kFloat64).mean().item<double>();
      auto target_logits = query_logits(model, challenge.images, mirror);
      Json variants = Json::object();
      std::string best;
      double best_auc = -1;
      for (const auto& [variant, scores] :
           privacy::tckr_variants(shadow_logits, in_mask, target_logits, challenge.labels)) {
        variants[variant] =
            summarize_attack(scores, truth, accuracy, context.get<int>("bootstrap"), seed);
        csv += csv_row(name, "tckr_" + variant, variants[variant], accuracy);
        const double auc = variants[variant].at("auc").get<double>();
        if (auc > best_auc) {
          best_auc = auc;
          best = variant;
        }
      }
      results_targets[name] = Json{{"model", dir},
                                   {"weights_sha256", model.weights_sha256},
                                   {"test_accuracy", accuracy},
                                   {"best_variant", best},
                                   {"best", variants[best]},
                                   {"variants", variants}};
      const auto& b = variants[best];
      char line[260];
      std::snprintf(line, sizeof line,
                    "mia tckr: %-12s acc %.2f %%  best of 12 (%s) AUC %.4f  TPR@0.1%% %.4f  "
                    "TPR@1%% %.4f",
                    name.c_str(), 100.0 * accuracy, best.c_str(), b.at("auc").get<double>(),
                    b.at("tpr_at_0.1%").get<double>(), b.at("tpr_at_1%").get<double>());
      log::info(line);
    }
    Json results{{"step", "mia"},
                 {"protocol",
                  "TCKR (labelled exception: shadows trained on halves of the test split, "
                  "best of 12 LiRA variants chosen on the challenge set itself)"},
                 {"runs", runs},
                 {"challenge", Json{{"members", std::to_string(n) + " random train rows"},
                                    {"non_members", std::to_string(n) + " random test rows"}}},
                 {"shadow_epochs", context.get<std::int64_t>("shadow-epochs")},
                 {"query_augmentations", mirror ? "identity, mirror" : "identity"},
                 {"targets", results_targets},
                 {"seconds", seconds_since(start)},
                 {"world_size", context.comm.size()}};
    make_dirs(context.workdir() + "/results");
    write_file_atomic(context.workdir() + "/results/mia-tckr.csv", csv);
    write_file_atomic(context.workdir() + "/results/mia-tckr.json", results.dump(2) + "\n");
  });
  record.finish("complete");
  return exit_code::ok;
}

}  // namespace

Step mia_step() {
  return Step{
      "mia", "membership inference (LiRA and baselines) against the teacher and the student recipe",
      add_mia_options, run_mia};
}

}  // namespace kr::steps
