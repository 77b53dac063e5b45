// `kr audit`: memorisation of a pool (Note [Memorisation audit]): every audited
// sample's nearest real train and holdout images, in pixels and in the teacher's
// feature space, the samples split over ranks.
#include <torch/torch.h>

#include <optional>

#include "kr/comm/communicator.hpp"
#include "kr/comm/shard_range.hpp"
#include "kr/core/clock.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/data/augment.hpp"
#include "kr/gen/quality.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/io/png.hpp"
#include "kr/io/shard.hpp"
#include "kr/privacy/membership.hpp"
#include "kr/privacy/memorisation.hpp"
#include "kr/report/results.hpp"
#include "kr/steps/artifacts.hpp"
#include "kr/steps/memorisation.hpp"
#include "kr/steps/root_only.hpp"
#include "kr/steps/run_record.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

constexpr std::uint64_t kTrainReferenceTag = 0x61756469745f7472;  // "audit_tr"
constexpr std::uint64_t kHoldoutTag = 0x61756469745f686f;         // "audit_ho"

struct AuditOptions {
  std::string pool;
  std::string real_split;
  std::string data;
  std::string teacher;
  std::string name;
  std::string out;
  std::int64_t samples = 0;
  double alpha = 0.5;
  std::int64_t neighbours = 50;
  double threshold = 1.0 / 3.0;
  std::int64_t strip = 12;
  std::int64_t query_block = 1024;
  std::int64_t reference_block = 8192;
};

void add_audit_options(OptionTable& table, AuditOptions& options) {
  // clang-format off
  table
      ("pool", &options.pool, "", "pool directory to audit (default: <workdir>/pool)")
      ("real-split", &options.real_split, "", "audit real images of this split instead of a pool: val (the reference row: images that are neither train nor holdout) or train")
      ("data", &options.data, "", "prepared data set: train is the train set, test the holdout (default: <workdir>/data/data.h5)")
      ("teacher", &options.teacher, "", "classifier whose penultimate features are the feature space (default: <workdir>/teacher if present; 'none': pixels only)")
      ("name", &options.name, "", "the audit's name: results/audit-<name>.json (default: the pool directory's name, or the real split's)")
      ("out", &options.out, "", "directory of the run record and the closest-pair strips (default: <workdir>/audit/<name>)").operational()
      ("samples", &options.samples, 0, "samples audited, the pool's first ones (0: one regeneration of the pool, or the whole real split)").at_least(0)
      ("alpha", &options.alpha, 0.5, "Carlini et al.'s alpha: the normalised distance is d(nearest) / (alpha * mean distance to the --neighbours nearest)").range(1e-6, 1e6)
      ("neighbours", &options.neighbours, 50, "Carlini et al.'s n").at_least(1)
      ("threshold", &options.threshold, 1.0 / 3.0, "normalised distance under which a sample is counted as a (near-)copy").range(0, 1e6)
      ("strip", &options.strip, 12, "closest pairs shown per space (synthetic | nearest train | nearest holdout)").at_least(0)
      ("query-block", &options.query_block, 1024, "samples per screening block").at_least(1)
      ("reference-block", &options.reference_block, 8192, "real images per screening block").at_least(1);
  // clang-format on
}

// What is audited: rows [0, total) of a pool or of a real split.
struct AuditSource {
  std::string kind;  // "pool" or "real"
  std::string path;  // the pool directory or the split name
  std::optional<io::SyntheticPool> pool;
  const data::ImageSet* real = nullptr;
  std::int64_t total = 0;

  data::ImageSet read(std::int64_t begin, std::int64_t count) const {
    if (pool) return pool->read(begin, count);
    return data::ImageSet{real->images.narrow(0, begin, count),
                          real->labels.narrow(0, begin, count)};
  }
};

AuditSource audit_source(const Context& context, const AuditOptions& options,
                         const data::Dataset& dataset, const std::string& data_path) {
  AuditSource source;
  if (!options.real_split.empty()) {
    if (!options.pool.empty()) throw UsageError("--pool and --real-split exclude each other");
    if (options.real_split == "val")
      source.real = &dataset.val;
    else if (options.real_split == "train")
      source.real = &dataset.train;
    else
      throw UsageError("--real-split must be val or train (test is the holdout), got '" +
                       options.real_split + "'");
    source.kind = "real";
    source.path = options.real_split;
    source.total = source.real->size();
  } else {
    source.kind = "pool";
    source.path = context.under_workdir(options.pool, "pool");
    source.pool = open_matching_pool(source.path, dataset.info, data_path);
    source.total = regeneration_rows(*source.pool);  // one student epoch's synthetic set
  }
  if (options.samples > 0) {
    if (options.samples > source.total && source.kind == "real")
      throw UsageError("--samples " + std::to_string(options.samples) + " is more than the " +
                       std::to_string(source.total) + " images of " + source.path);
    if (source.pool) source.total = std::min(options.samples, source.pool->size());
    if (source.kind == "real") source.total = options.samples;
  }
  if (source.total <= 0) throw UsageError("nothing to audit in " + source.path);
  return source;
}

std::string default_name(const AuditSource& source) {
  if (source.kind == "real") return "real-" + source.path;
  auto name = source.path;
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  return name.substr(name.rfind('/') + 1);
}

struct SpaceResult {
  privacy::Distance distance = privacy::Distance::l2;
  privacy::SpaceAudit audit;  // every sample's, on every rank
  Json timing;                // the slowest rank's search, the screens' work over all ranks
};

privacy::AuditReference make_reference(at::Tensor train, at::Tensor holdout,
                                       const at::Tensor& subset_index) {
  privacy::AuditReference reference;
  reference.subset = train.index({subset_index});
  reference.train = std::move(train);
  reference.holdout = std::move(holdout);
  reference.subset_index = subset_index;
  return reference;
}

// Collective. The search of this rank's samples in one space, gathered, with its cost.
SpaceResult search_space(comm::Communicator& comm, const at::Tensor& mine, std::int64_t begin,
                         std::int64_t total, const privacy::AuditReference& reference,
                         privacy::Distance distance, const privacy::AuditSettings& settings) {
  SpaceResult out;
  out.distance = distance;
  double seconds = 0.0;
  out.audit = privacy::audit_space_gathered(comm, mine, begin, total, reference, distance, settings,
                                            &seconds);
  const auto d = reference.train.size(1);
  const double flops = privacy::screen_flops(total, reference.train.size(0), d) +
                       privacy::screen_flops(total, reference.subset.size(0), d) +
                       privacy::screen_flops(total, reference.holdout.size(0), d);
  out.timing = Json{{"search_seconds", seconds},
                    {"screen_gflop", flops / 1e9},
                    {"screen_gflops_per_second", flops / 1e9 / std::max(seconds, 1e-9)}};
  return out;
}

// Rank 0. The strip of the `count` closest pairs of a space: rows of (sample | nearest
// train | nearest holdout).
void write_strip(const std::string& path, const AuditSource& source, const data::ImageSet& train,
                 const data::ImageSet& holdout, const privacy::SpaceAudit& audit,
                 std::int64_t count) {
  const auto rows = privacy::closest_samples(audit, count);
  if (rows.empty()) return;
  std::vector<at::Tensor> images;
  for (const auto i : rows) {
    images.push_back(source.read(i, 1).images);
    images.push_back(train.images.narrow(0, audit.train_index[i].item<std::int64_t>(), 1));
    images.push_back(holdout.images.narrow(0, audit.holdout_index[i].item<std::int64_t>(), 1));
  }
  io::write_png(path, io::make_grid(torch::cat(images, 0), 3));
}

Json closest_rows(const privacy::SpaceAudit& audit, const at::Tensor& labels, std::int64_t count) {
  Json rows = Json::array();
  for (const auto i : privacy::closest_samples(audit, count))
    rows.push_back(
        Json{{"sample", i},
             {"class", labels[i].item<std::int64_t>()},
             {"train_index", audit.train_index[i].item<std::int64_t>()},
             {"train_distance", audit.train_distance[i].item<double>()},
             {"normalised", audit.normalised[i].item<double>()},
             {"holdout_index", audit.holdout_index[i].item<std::int64_t>()},  // of the holdout
             {"holdout_distance", audit.holdout_distance[i].item<double>()}});
  return rows;
}

// Rank 0. One space's figures, its closest pairs and strip, logged.
Json space_summary(const SpaceResult& result, const at::Tensor& labels, const AuditSource& source,
                   const data::Dataset& dataset, const data::ImageSet& holdout,
                   const privacy::AuditSettings& settings, std::int64_t strip_rows,
                   const std::string& out, const std::string& name) {
  const std::string space = privacy::distance_name(result.distance);
  const auto& audit = result.audit;
  auto summary = privacy::summarize_space(audit, labels, dataset.info.classes, settings);
  summary["closest"] = closest_rows(audit, labels, strip_rows);
  if (strip_rows > 0) {
    const std::string strip = out + "/closest_" + space + ".png";
    write_strip(strip, source, dataset.train, holdout, audit, strip_rows);
    summary["strip"] = strip;
  }
  summary["timing"] = result.timing;
  char line[300];
  std::snprintf(line, sizeof line,
                "audit %s, %s: %lld samples, closer to train %.3f, exact copies %lld, "
                "normalised < %.3g: %lld, median distance to train %.4g",
                name.c_str(), space.c_str(), static_cast<long long>(source.total),
                summary["closer_to_train_share"].get<double>(),
                static_cast<long long>(summary["exact_copies"].get<std::int64_t>()),
                settings.threshold,
                static_cast<long long>(summary["normalised_under_threshold"].get<std::int64_t>()),
                summary["train_distance_quantiles"][4].get<double>());
  log::info(line);
  return summary;
}

int run_audit(Context& context, const AuditOptions& options) {
  const auto start = Clock::now();
  const std::string data_path = context.under_workdir(options.data, "data/data.h5");
  const auto dataset = io::read_dataset(data_path);
  const auto source = audit_source(context, options, dataset, data_path);
  const std::string name = options.name.empty() ? default_name(source) : options.name;
  if (name.find('/') != std::string::npos || name.empty() || name[0] == '.')
    throw UsageError("--name must be a plain file name part, got '" + name + "'");
  const std::string out = context.under_workdir(options.out, "audit/" + name);
  std::optional<LoadedClassifier> teacher;
  const std::string teacher_dir = context.under_workdir(options.teacher, "teacher");
  if (options.teacher != "none" &&
      (!options.teacher.empty() || path_exists(teacher_dir + "/model.json")))
    teacher = load_classifier(teacher_dir, dataset.info.channels, dataset.info.classes);
  // The holdout and the train reference are equally large: all of test, or a keyed subset
  // of it as large as train when train is the smaller.
  if (dataset.test.size() == 0) throw Error(data_path + ": no test images for the holdout");
  const std::int64_t holdout_size = std::min(dataset.test.size(), dataset.train.size());
  const auto seed = context.get<std::uint64_t>("seed");
  const auto holdout_rows =
      holdout_size == dataset.test.size()
          ? std::vector<std::int64_t>{}
          : privacy::keyed_subset(dataset.test.size(), holdout_size, seed, kHoldoutTag);
  const data::ImageSet holdout =
      holdout_rows.empty() ? dataset.test : data::take(dataset.test, holdout_rows);
  privacy::AuditSettings settings;  // the search's settings, checked against the data
  settings.alpha = options.alpha;
  settings.neighbours = options.neighbours;
  settings.threshold = options.threshold;
  settings.blocks = {options.query_block, options.reference_block};
  if (settings.neighbours > dataset.train.size())
    throw UsageError("--neighbours " + std::to_string(settings.neighbours) +
                     " is more than the train set's " + std::to_string(dataset.train.size()));
  const auto subset =
      privacy::keyed_subset(dataset.train.size(), holdout_size, seed, kTrainReferenceTag);
  const auto subset_index = torch::tensor(subset, torch::kInt64);

  RunRecord& record = open_record(context, out);
  record.add_input("data", data_path);
  if (teacher) record.add_input("teacher", teacher->weights);
  if (source.pool) record.add_input("pool_manifest", source.path + "/manifest.json");

  const auto range = comm::shard_range(source.total, context.comm.rank(), context.comm.size());
  const auto mine = source.read(range.begin, range.end - range.begin);
  const auto labels =
      context.comm.gather_rows({mine.labels}, {range.begin}, source.total, {}, torch::kInt64);
  std::vector<SpaceResult> results;
  results.push_back(search_space(
      context.comm, pixel_rows(mine.images), range.begin, source.total,
      make_reference(pixel_rows(dataset.train.images), pixel_rows(holdout.images), subset_index),
      privacy::Distance::l2, settings));
  if (teacher) {
    const auto view = teacher->view();
    const auto features_start = Clock::now();
    auto reference = make_reference(feature_rows(context.comm, view, dataset.train),
                                    feature_rows(context.comm, view, holdout), subset_index);
    const auto queries = local_feature_rows(view, mine.images, reference.train.size(1));
    const double feature_seconds = seconds_since(features_start);
    results.push_back(search_space(context.comm, queries, range.begin, source.total, reference,
                                   privacy::Distance::cosine, settings));
    results.back().timing["feature_seconds"] = feature_seconds;
  }

  run_on_root(context.comm, [&] {
    make_dirs(out);
    Json spaces = Json::object();
    for (const auto& result : results)
      spaces[privacy::distance_name(result.distance)] = space_summary(
          result, labels, source, dataset, holdout, settings, options.strip, out, name);
    const Json results{
        {"step", "audit"},
        {"name", name},
        {"source", Json{{"kind", source.kind}, {"path", source.path}}},
        {"samples", source.total},
        {"data", data_path},
        {"train", dataset.train.size()},
        {"holdout", "test"},
        {"holdout_size", holdout_size},
        {"holdout_rows", holdout_rows.empty()
                             ? Json("all of test")
                             : Json("a keyed random subset of test, as large as train")},
        {"train_reference_size", holdout_size},
        {"train_reference", "a keyed random subset of train (seed " + std::to_string(seed) +
                                "), as large as the holdout"},
        {"teacher", teacher ? Json(teacher->weights) : Json(nullptr)},
        {"alpha", settings.alpha},
        {"neighbours", settings.neighbours},
        {"normalised_threshold", settings.threshold},
        {"note",
         "pixels: L2 of images in [0, 1]; features: cosine distance of the teacher's "
         "penultimate features. closer_to_train_share compares the nearest train-reference "
         "and holdout images (ties one half; about 0.5 without memorisation). normalised: "
         "Carlini et al. 2023's distance to the nearest train image over alpha times the mean "
         "distance to its n nearest (the whole train set)."},
        {"spaces", spaces},
        {"world_size", context.comm.size()},
        {"threads_per_rank", context.threads.intra_op},
        {"seconds", seconds_since(start)},
        {"cost_split", record.cost_split()}};
    make_dirs(context.workdir() + "/results");
    report::write_results(context.workdir(), "audit-" + name, results);
  });
  record.set("results", Json{{"name", name}, {"samples", source.total}});
  record.finish("complete");
  return exit_code::ok;
}

}  // namespace

Step audit_step() {
  return typed_step<AuditOptions>(
      "audit",
      "memorisation of a pool: nearest real train and holdout images of every sample, in "
      "pixels and teacher features, split over ranks",
      add_audit_options, run_audit);
}

}  // namespace kr::steps
