// `kr generate`: regeneration spread over ranks into sharded HDF5 (Note [Synthetic pool]).
#include <torch/torch.h>

#include <memory>
#include <optional>

#include <chrono>
#include <filesystem>

#include "kr/comm/communicator.hpp"
#include "kr/core/clock.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/core/sha256.hpp"
#include "kr/core/strings.hpp"
#include "kr/data/augment.hpp"
#include "kr/gen/filter.hpp"
#include "kr/gen/quality.hpp"
#include "kr/gen/regenerate.hpp"
#include "kr/gen/sampler.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/io/shard.hpp"
#include "kr/report/results.hpp"
#include "kr/steps/artifacts.hpp"
#include "kr/steps/memorisation.hpp"
#include "kr/steps/root_only.hpp"
#include "kr/steps/run_record.hpp"
#include "kr/steps/sampling_options.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

struct GenerateOptions {
  std::string data;
  std::string generator;
  std::string teacher;
  std::string out;
  std::int64_t count = 0;
  std::int64_t per_class = 0;
  std::int64_t pool_epochs = 1;
  std::int64_t block = 2000;
  std::int64_t sample_batch = 250;
  double filter_tau = 0.0;
  double reid_filter = 0.0;
  std::string reid_space;
  std::int64_t quality_samples = 2000;
  SamplingOptions sampling;
};

void add_generate_options(OptionTable& table, GenerateOptions& options) {
  // clang-format off
  table
      ("data", &options.data, "", "prepared data set: the default count, the quality measures and --reid-filter's train and val images (default: <workdir>/data/data.h5)").operational()
      ("generator", &options.generator, "", "generator run or checkpoint (default: <workdir>/generator)")
      ("teacher", &options.teacher, "", "teacher run whose logits are stored (default: <workdir>/teacher if present; 'none' for none)")
      ("out", &options.out, "", "pool directory (default: <workdir>/pool)").operational()
      ("count", &options.count, 0, "images per regeneration (0: the real train size; with a filter, rounded up to a multiple of the classes)").at_least(0)
      ("per-class", &options.per_class, 0, "images per class per regeneration (overrides --count)").at_least(0)
      ("pool-epochs", &options.pool_epochs, 1, "disjoint regenerations held in the pool").at_least(1)
      ("block", &options.block, 2000, "global indices per shard (a multiple of --sample-batch)").at_least(1)
      ("sample-batch", &options.sample_batch, 250, "images per generator forward (fixed: part of the settings)").at_least(1)
      ("filter-tau", &options.filter_tau, 0.0, "keep a sample of class c only if the teacher's argmax is c with probability > tau (0: no filter; needs a teacher)").range(0, 0.999)
      ("reid-filter", &options.reid_filter, 0.0, "Privacy Distillation's re-identification filter (Note [Re-identification filter]): drop a sample nearer to a real train image than this percentile of the real val images' nearest-train distances (0: no filter; needs a teacher)").range(0, 99.999)
      ("reid-space", &options.reid_space, "features", "--reid-filter's distance: features (the teacher's, cosine) or pixels (L2)")
      ("quality-samples", &options.quality_samples, 2000, "with a teacher and the prepared data: score the pool's first samples (before any filter) against real val images: teacher agreement, Frechet distance, per-class precision and recall (0: skip)").at_least(0);
  // clang-format on
  add_sampling_options(table, options.sampling);
}

// What one `kr generate` call makes, checked once: the pool's settings (a rerun into
// the same directory must bring the same) and the run's layout.
struct PoolPlan {
  std::string out;
  std::int64_t count = 0;  // per regeneration
  std::int64_t pool_epochs = 1;
  std::int64_t total = 0;
  std::int64_t block = 0;
  std::int64_t sample_batch = 0;
  std::uint64_t seed = 0;
  double tau = 0.0;
  const ReidFilter* reid = nullptr;  // Note [Re-identification filter]; null: none
  bool filtered = false;
  Json settings;
  std::string settings_hash;
};

PoolPlan plan_pool(Context& context, const GenerateOptions& options, const gen::GeneratorSpec& spec,
                   const std::string& generator_sha256, const LoadedClassifier* teacher,
                   const ReidFilter* reid) {
  PoolPlan plan;
  plan.out = context.under_workdir(options.out, "pool");
  plan.count = options.count;
  if (options.per_class > 0) plan.count = options.per_class * spec.classes;
  plan.tau = options.filter_tau;
  plan.reid = reid;
  plan.filtered = plan.tau > 0.0 || reid;
  if (plan.count <= 0) {
    plan.count = io::read_dataset(context.under_workdir(options.data, "data/data.h5")).train.size();
    // A filtered pool is class-balanced: as large as train, rounded up to a whole number
    // of images per class (a membership run's members are rarely a multiple of K).
    if (plan.filtered) plan.count = (plan.count + spec.classes - 1) / spec.classes * spec.classes;
  }
  plan.pool_epochs = options.pool_epochs;
  plan.block = options.block;
  plan.sample_batch = options.sample_batch;
  plan.seed = context.get<std::uint64_t>("seed");
  if (plan.pool_epochs < 1) throw UsageError("--pool-epochs must be at least 1");
  if (plan.sample_batch < 1 || plan.block < plan.sample_batch ||
      plan.block % plan.sample_batch != 0)
    throw UsageError("--block (" + std::to_string(plan.block) +
                     ") must be a positive multiple of --sample-batch (" +
                     std::to_string(plan.sample_batch) + ")");
  plan.total = plan.count * plan.pool_epochs;
  if (plan.tau < 0.0 || plan.tau >= 1.0) throw UsageError("--filter-tau must be in [0, 1)");
  if (plan.filtered && !teacher)
    throw UsageError(
        "--filter-tau and --reid-filter need a teacher (--teacher, or <workdir>/teacher)");
  if (plan.filtered && plan.count % spec.classes != 0)
    throw UsageError("--filter-tau and --reid-filter need a class-balanced count: " +
                     std::to_string(plan.count) + " images is not a multiple of " +
                     std::to_string(spec.classes) + " classes");
  plan.settings = Json{{"schema_version", io::kShardSchemaVersion},
                       {"generator_sha256", generator_sha256},
                       {"generator_spec", spec.to_json()},
                       {"teacher_sha256", teacher ? Json(teacher->weights_sha256) : Json(nullptr)},
                       {"seed", plan.seed},
                       {"count_per_regeneration", plan.count},
                       {"pool_epochs", plan.pool_epochs},
                       {"total", plan.total},
                       {"block", plan.block},
                       {"sample_batch", plan.sample_batch},
                       {"labels", "class_of_index(i) = i mod K"},
                       {"filter_tau", plan.tau > 0.0 ? Json(plan.tau) : Json(nullptr)}};
  if (reid) plan.settings["reid_filter"] = reid->settings();  // absent: none (older pools)
  plan.settings_hash = sha256_string(plan.settings.dump()).substr(0, 16);
  return plan;
}

// One rank's part of the pool: samples blocks, writes shards, counts and times them.
class PoolWriter {
 public:
  PoolWriter(Context& context, const PoolPlan& plan, gen::Sampler& sampler, gen::Labeller teacher,
             std::string generator_sha256)
      : context_(context),
        plan_(plan),
        sampler_(sampler),
        teacher_(std::move(teacher)),
        generator_sha256_(std::move(generator_sha256)),
        start_(Clock::now()) {}

  // Pool blocks `todo` of this rank, each sampled (and labelled) whole.
  void make_blocks(const std::vector<std::int64_t>& todo) {
    for (std::size_t i = 0; i < todo.size(); ++i) {
      const std::int64_t first = todo[i] * plan_.block;
      const std::int64_t n = std::min(plan_.block, plan_.total - first);
      write(plan_.out + "/" + io::shard_file_name(first, n), first, sample(first, n), true);
      progress(static_cast<std::int64_t>(i + 1), static_cast<std::int64_t>(todo.size()));
    }
  }

  // Note [Confidence filter]. Collective; skipped when every pool shard is already good.
  Json make_filtered(const std::vector<std::int64_t>& todo);

  gen::RegenerationTimers timers;
  std::int64_t reid_dropped = 0;  // candidates the re-identification filter dropped this run
  std::int64_t made = 0;
  std::int64_t images_made = 0;
  std::vector<std::string> made_files;
  double seconds() const { return seconds_since(start_); }

 private:
  io::Shard sample(std::int64_t first, std::int64_t n) {
    images_made += n;
    return gen::sample_block(sampler_, teacher_, first, n, plan_.seed, plan_.sample_batch, timers);
  }

  // A pool shard or a candidate block's file, whose rows start at global index `first`.
  void write(const std::string& path, std::int64_t first, const io::Shard& shard, bool pool_shard) {
    auto t0 = Clock::now();
    io::write_shard(path, shard,
                    io::ShardInfo{first, shard.images.size(0), plan_.settings_hash,
                                  generator_sha256_, plan_.seed},
                    plan_.settings);
    timers.io += seconds_since(t0);
    if (!pool_shard) return;
    ++made;
    made_files.push_back(path.substr(path.rfind('/') + 1));
  }

  io::Shard read_candidates(std::int64_t b) const {
    return io::read_shard(candidate_path(b), b * plan_.block, -1, plan_.settings_hash);
  }
  std::string candidate_path(std::int64_t b) const {
    return plan_.out + "/candidates/" + io::shard_file_name(b * plan_.block, plan_.block);
  }
  // A candidate block's file is kept across runs: a rerun reads it back instead of sampling.
  io::Shard make_candidates(std::int64_t b, std::int64_t& sampled_here);

  void progress(std::int64_t done, std::int64_t of) const {
    if (context_.comm.rank() != 0 || !(done % 10 == 0 || done == of)) return;
    const double elapsed = seconds();
    const double eta = elapsed / std::max<std::int64_t>(1, done) * static_cast<double>(of - done);
    char line[200];
    std::snprintf(line, sizeof line,
                  "generate: rank 0 block %lld/%lld, %.0f img/s per rank, ETA %.0f s",
                  static_cast<long long>(done), static_cast<long long>(of),
                  static_cast<double>(images_made) / std::max(elapsed, 1e-9), eta);
    log::info(line);
  }

  Context& context_;
  const PoolPlan& plan_;
  gen::Sampler& sampler_;
  gen::Labeller teacher_;
  std::string generator_sha256_;
  Clock::time_point start_;
};

io::Shard PoolWriter::make_candidates(std::int64_t b, std::int64_t& sampled_here) {
  const std::int64_t first = b * plan_.block;
  if (path_exists(candidate_path(b))) {
    auto t0 = Clock::now();
    try {
      auto rows = read_candidates(b);
      timers.io += seconds_since(t0);
      return rows;
    } catch (const Error& error) {
      log::warn(std::string("generate: remaking candidates: ") + error.what());
    }
  }
  auto rows = sample(first, plan_.block);
  rows = plan_.tau > 0.0 ? gen::accept_confident(rows, first, plan_.tau)
                         : gen::take_rows(rows, torch::arange(rows.images.size(0)), first);
  if (plan_.reid) {
    const auto before = rows.images.size(0);
    rows = gen::take_rows(rows, plan_.reid->keep(rows.images), first);
    reid_dropped += before - rows.images.size(0);
  }
  write(candidate_path(b), first, rows, false);
  ++sampled_here;
  if (context_.comm.rank() == 0 && sampled_here % 10 == 0)
    log::info("generate: rank 0 sampled " + std::to_string(sampled_here) + " candidate blocks");
  return rows;
}

Json PoolWriter::make_filtered(const std::vector<std::int64_t>& todo) {
  auto missing = torch::tensor({static_cast<std::int64_t>(todo.size())}, torch::kInt64);
  context_.comm.allreduce(missing, comm::ReduceOp::sum);
  if (missing.item<std::int64_t>() == 0)
    return Json{{"tau", plan_.tau}, {"note", "every shard was already complete"}};
  const std::int64_t classes = sampler_.spec().classes;
  const std::int64_t blocks = io::shard_count(plan_.total, plan_.block);
  run_on_root(context_.comm, [&] { make_dirs(plan_.out + "/candidates"); });
  gen::CandidateSet candidates(plan_.block, classes,
                               [&](std::int64_t b) { return read_candidates(b); });
  std::int64_t sampled_here = 0;
  candidates.fill(context_.comm, plan_.total / classes, blocks,
                  [&](std::int64_t b) { return make_candidates(b, sampled_here); });
  for (const auto b : todo) {
    const std::int64_t first = b * plan_.block;
    const std::int64_t n = std::min(plan_.block, plan_.total - first);
    auto t0 = Clock::now();
    auto shard = candidates.gather(first, n);
    timers.io += seconds_since(t0);
    write(plan_.out + "/" + io::shard_file_name(first, n), first, shard, true);
  }
  Json acceptance = Json::array();
  std::int64_t all_accepted = 0;
  std::string per_class;
  for (std::int64_t c = 0; c < classes; ++c) {
    const double rate =
        static_cast<double>(candidates.accepted(c)) / static_cast<double>(candidates.candidates(c));
    acceptance.push_back(rate);
    all_accepted += candidates.accepted(c);
    char item[32];
    std::snprintf(item, sizeof item, "%s%lld: %.1f%%", c ? ", " : "", static_cast<long long>(c),
                  100.0 * rate);
    per_class += item;
  }
  log::info("generate: filter tau " + std::to_string(plan_.tau) +
            (plan_.reid ? ", reid threshold " + std::to_string(plan_.reid->threshold()) : "") +
            " accepted per class " + per_class);
  auto blocks_sampled = torch::tensor({sampled_here, reid_dropped}, torch::kInt64);
  context_.comm.allreduce(blocks_sampled, comm::ReduceOp::sum);
  const auto candidate_count = candidates.blocks() * plan_.block;
  return Json{
      {"tau", plan_.tau},
      {"candidate_blocks", candidates.blocks()},
      {"candidate_blocks_sampled_this_run", blocks_sampled[0].item<std::int64_t>()},
      {"reid_filter", plan_.reid ? plan_.reid->settings() : Json(nullptr)},
      {"reid_dropped_this_run", blocks_sampled[1].item<std::int64_t>()},
      {"candidates", candidate_count},
      {"accepted", all_accepted},
      {"acceptance", static_cast<double>(all_accepted) / static_cast<double>(candidate_count)},
      {"acceptance_per_class", acceptance},
      {"candidate_directory", plan_.out + "/candidates"}};
}

// The teacher whose logits the pool stores: --teacher, else <workdir>/teacher when it
// exists; 'none' for none.
std::optional<LoadedClassifier> pool_teacher(const Context& context, const GenerateOptions& options,
                                             const gen::GeneratorSpec& spec) {
  const std::string option = options.teacher;
  const std::string dir = context.under_workdir(options.teacher, "teacher");
  if (option == "none" || (option.empty() && !path_exists(dir + "/model.json")))
    return std::nullopt;
  return load_classifier(dir, spec.channels, spec.classes);
}

// Note [Re-identification filter]: built from the prepared data (and the teacher's
// features) when --reid-filter is set; null otherwise.
std::unique_ptr<ReidFilter> reid_filter(Context& context, const GenerateOptions& options,
                                        const std::optional<LoadedClassifier>& teacher) {
  if (options.reid_filter <= 0.0) return nullptr;
  privacy::Distance space;
  if (options.reid_space == "features")
    space = privacy::Distance::cosine;
  else if (options.reid_space == "pixels")
    space = privacy::Distance::l2;
  else
    throw UsageError("--reid-space must be features or pixels, got '" + options.reid_space + "'");
  if (!teacher) throw UsageError("--reid-filter needs a teacher (--teacher, or <workdir>/teacher)");
  const auto dataset = io::read_dataset(context.under_workdir(options.data, "data/data.h5"));
  const auto view = teacher->view();
  auto filter =
      std::make_unique<ReidFilter>(context.comm, dataset, &view, space, options.reid_filter);
  char line[200];
  std::snprintf(line, sizeof line,
                "generate: re-identification filter: %s distance to train under %.6g (the %.3g-th "
                "percentile of val's) is dropped",
                privacy::distance_name(space), filter->threshold(), options.reid_filter);
  log::info(line);
  return filter;
}

// results/generate.json: what was made, how fast, and where the time went.
Json generate_results(Context& context, const PoolPlan& plan, const gen::GeneratorSpec& spec,
                      const at::Tensor& sums, double generation_seconds, double wall_seconds,
                      double index_seconds, const Json& filter_results,
                      const std::vector<std::string>& all_made) {
  const double busy = sums[0].item<double>() + sums[1].item<double>() + sums[2].item<double>();
  auto share = [&](int i) { return busy > 0 ? sums[i].item<double>() / busy : 0.0; };
  return Json{
      {"step", "generate"},
      {"pool", plan.out},
      {"model", spec.model},
      {"total", plan.total},
      {"count_per_regeneration", plan.count},
      {"pool_epochs", plan.pool_epochs},
      {"classes", spec.classes},
      {"per_class_per_regeneration", plan.count / spec.classes},
      {"block", plan.block},
      {"sample_batch", plan.sample_batch},
      {"shards", io::shard_count(plan.total, plan.block)},
      {"shards_made", static_cast<std::int64_t>(sums[3].item<double>())},
      {"shards_kept", static_cast<std::int64_t>(sums[4].item<double>())},
      {"filter", filter_results},
      {"made", all_made},
      {"world_size", context.comm.size()},
      {"threads_per_rank", context.threads.intra_op},
      {"seconds", wall_seconds},
      {"generation_seconds", generation_seconds},
      {"images_per_second", sums[5].item<double>() / std::max(1e-9, generation_seconds)},
      {"time_split",
       Json{{"sampling", share(0)}, {"teacher_labelling", share(1)}, {"hdf5_io", share(2)}}},
      {"index_seconds", index_seconds},
      // HDF5 I/O's share of the wall time: the ranks' mean shard I/O plus rank 0's
      // checksums and index, over the wall time to the finished index.
      {"hdf5_io_wall_share",
       (sums[2].item<double>() / context.comm.size() + index_seconds) / wall_seconds}};
}

// Every rank's made shard files, sorted.
std::vector<std::string> all_made_files(comm::Communicator& comm,
                                        const std::vector<std::string>& mine) {
  std::string list;
  for (const auto& name : mine) list += name + ",";
  std::vector<std::string> all;
  for (const auto& part : comm.allgather_strings(list))
    for (auto& name : split_list(part)) all.push_back(std::move(name));
  std::sort(all.begin(), all.end());
  return all;
}

// Collective. The quality of the pool's first --quality-samples images (the same
// global indices and seed, so an unfiltered pool's own images) against real val, or
// null without a teacher or prepared data.
Json pool_quality(Context& context, const GenerateOptions& options, const PoolPlan& plan,
                  gen::Sampler& sampler, const std::optional<LoadedClassifier>& teacher) {
  if (!teacher || options.quality_samples <= 0) return nullptr;
  const std::string data_path = context.under_workdir(options.data, "data/data.h5");
  if (!path_exists(data_path)) {
    log::info("generate: no quality measures (" + data_path + " missing)");
    return nullptr;
  }
  const auto dataset = io::read_dataset(data_path);
  const auto view = teacher->view();
  const auto real = gen::real_reference(context.comm, view, dataset.val, 500);
  const auto report = gen::measure_quality(context.comm, sampler, plan.seed,
                                           options.quality_samples, plan.sample_batch, view, real);
  char line[200];
  std::snprintf(line, sizeof line,
                "generate: %lld samples: teacher agreement %.1f %%, precision %.3f, recall %.3f",
                static_cast<long long>(report.samples), 100.0 * report.agreement, report.precision,
                report.recall);
  log::info(line);
  return report.to_json();
}

int run_generate(Context& context, const GenerateOptions& options) {
  const auto start = Clock::now();
  auto generator = gen::load_generator(context.under_workdir(options.generator, "generator"));
  const auto spec = with_sampling_options(options.sampling, generator.spec);
  auto sampler = gen::make_sampler(spec, generator.model);
  auto teacher = pool_teacher(context, options, spec);
  const auto reid = reid_filter(context, options, teacher);
  auto plan = plan_pool(context, options, spec, generator.weights_sha256,
                        teacher ? &*teacher : nullptr, reid.get());
  if (!generator.dp.is_null()) {
    // The pool is post-processing of the DP generator unless a filter read private data
    // through the (non-private) teacher or the real train split (Note [What DP covers]).
    plan.settings["generator_dp"] = generator.dp;
    plan.settings_hash = sha256_string(plan.settings.dump()).substr(0, 16);
  }

  // A rerun must have the same settings (checked before the run record, so a refused
  // rerun leaves a complete pool's record as it was); a crash must not leave a manifest
  // that looks valid.
  run_on_root(context.comm, [&] { claim_settings(plan.out, plan.settings, "a pool"); });
  RunRecord& record = open_record(context, plan.out);
  record.add_input("generator", generator.weights);
  if (teacher) record.add_input("teacher", teacher->weights);
  run_on_root(context.comm, [&] {
    std::filesystem::remove(plan.out + "/manifest.json");
    std::filesystem::remove(plan.out + "/index.h5");
  });

  std::int64_t kept = 0;
  const auto todo = io::shards_to_make(plan.out, plan.total, plan.block, context.comm.rank(),
                                       context.comm.size(), plan.settings_hash, kept);
  gen::Labeller labeller;
  if (teacher) labeller = [&](const at::Tensor& images) { return teacher->logits(images); };
  PoolWriter writer(context, plan, *sampler, labeller, generator.weights_sha256);
  Json filter_results = nullptr;
  if (plan.filtered)
    filter_results = writer.make_filtered(todo);
  else
    writer.make_blocks(todo);
  const double work_seconds = writer.seconds();
  const Json quality = pool_quality(context, options, plan, *sampler, teacher);

  // Totals over ranks; then rank 0 commits the manifest and the index.
  const auto& timers = writer.timers;
  auto sums =
      torch::tensor({timers.sampling, timers.teacher, timers.io, static_cast<double>(writer.made),
                     static_cast<double>(kept), static_cast<double>(writer.images_made)},
                    torch::kFloat64);
  context.comm.allreduce(sums, comm::ReduceOp::sum);
  auto slowest = torch::tensor({work_seconds}, torch::kFloat64);
  context.comm.allreduce(slowest, comm::ReduceOp::max);
  const auto all_made = all_made_files(context.comm, writer.made_files);

  const double total_seconds = seconds_since(start);
  run_on_root(context.comm, [&] {
    const Json layout{{"world_size", context.comm.size()},
                      {"threads_per_rank", context.threads.intra_op},
                      {"onednn_isa", context.threads.onednn_isa}};
    io::commit_pool(plan.out, io::PoolDescription{plan.total,
                                                  plan.block,
                                                  spec.classes,
                                                  {spec.channels, spec.height, spec.width},
                                                  teacher.has_value(),
                                                  plan.filtered,
                                                  plan.settings_hash,
                                                  plan.settings,
                                                  layout,
                                                  all_made});
    // Rank 0's checksums and index are I/O the other ranks wait for.
    const double index_seconds = seconds_since(start) - total_seconds;
    auto results =
        generate_results(context, plan, spec, sums, slowest.item<double>(),
                         total_seconds + index_seconds, index_seconds, filter_results, all_made);
    results["quality"] = quality;
    make_dirs(context.workdir() + "/results");
    results["cost_split"] = record.cost_split();
    report::write_results(context.workdir(), "generate", results);
  });
  char line[240];
  std::snprintf(line, sizeof line,
                "generate: %lld images in %lld shards (%lld made, %lld kept) in %.1f s, %.0f img/s",
                static_cast<long long>(plan.total),
                static_cast<long long>(io::shard_count(plan.total, plan.block)),
                static_cast<long long>(sums[3].item<double>()),
                static_cast<long long>(sums[4].item<double>()), total_seconds,
                sums[5].item<double>() / std::max(1e-9, slowest.item<double>()));
  log::info(line);
  for (const auto& name : all_made) log::record(Json{{"event", "shard_made"}, {"file", name}});
  record.set("results", Json{{"total", plan.total}, {"made", all_made}});
  record.finish("complete");
  return exit_code::ok;
}

}  // namespace

Step generate_step() {
  return typed_step<GenerateOptions>(
      "generate", "regenerate a synthetic pool into sharded HDF5, spread over ranks",
      add_generate_options, run_generate);
}

}  // namespace kr::steps
