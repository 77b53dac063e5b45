// `kr prepare`: ingest a real data set into the canonical HDF5 file.
#include <torch/torch.h>

#include <chrono>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/core/sha256.hpp"
#include "kr/data/split.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/io/source.hpp"
#include "kr/steps/root_only.hpp"
#include "kr/steps/run_record.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

struct PrepareOptions {
  std::string source;
  std::string format;
  std::string name;
  std::string hflip;
  std::int64_t classes = 0;
  std::string out;
  bool overwrite = false;
  std::int64_t val_size = 5000;
  std::uint64_t split_seed = 0;
  std::int64_t train_limit = 0;
  std::int64_t per_class_limit = 0;
  std::int64_t val_limit = 0;
  std::int64_t test_limit = 0;
};

void add_prepare_options(OptionTable& table, PrepareOptions& options) {
  // clang-format off
  table
      ("source", &options.source, io::kDefaultSource, "data set to ingest: IDX directory, CIFAR batch directory, MedMNIST .npz, or a kr .h5 file")
      ("format", &options.format, "auto", "auto, idx, cifar10, cifar100, npz, h5")
      ("name", &options.name, "", "data set name (default: from the source path)")
      ("hflip", &options.hflip, "auto", "whether horizontal flips are a valid augmentation: auto (per known data set), yes, no")
      ("classes", &options.classes, 0, "classes of the set (0: a known set's, else 1 + the highest label, refused when a class has no train image); labels at or above it are refused").at_least(0)
      ("out", &options.out, "", "output file (default: <workdir>/data/data.h5)").operational()
      ("overwrite", &options.overwrite, "replace an existing output file").operational()
      ("val-size", &options.val_size, 5000, "images carved from train into val (class-stratified) when the source has no val split;\n"
       "given explicitly for a source with val (npz, kr .h5), train and val are merged and re-split").at_least(0)
      ("split-seed", &options.split_seed, 0, "seed of the val split and of the limits").range(0, 9223372036854775807.0)
      ("train-limit", &options.train_limit, 0, "keep this many train images, stratified (0: all)").at_least(0)
      ("per-class-limit", &options.per_class_limit, 0, "keep at most this many train images per class (0: all)").at_least(0)
      ("val-limit", &options.val_limit, 0, "keep this many val images, stratified (0: all)").at_least(0)
      ("test-limit", &options.test_limit, 0, "keep this many test images, stratified (0: all)").at_least(0);
  // clang-format on
}

data::ImageSet stratified_subset(const data::ImageSet& set, std::int64_t classes,
                                 std::int64_t limit, std::uint64_t seed) {
  if (limit <= 0 || limit >= set.size()) return set;
  return data::take(set, data::stratified_choice(set.labels, classes, limit, seed).first);
}

data::Dataset build_dataset(const io::Source& source, const Context& context,
                            const PrepareOptions& options) {
  data::Dataset dataset;
  dataset.info = source.info;
  const auto seed = options.split_seed;
  dataset.info.split_seed = seed;
  const auto classes = dataset.info.classes;
  dataset.test = source.test;
  if (source.val && !context.has("val-size")) {
    dataset.train = source.train;
    dataset.val = *source.val;
  } else {
    // No val split in the source, or an explicit --val-size: carve val from train (and
    // from the source's val, merged back, when re-splitting).
    data::ImageSet pool = source.train;
    if (source.val) {
      pool = data::ImageSet{torch::cat({source.train.images, source.val->images}),
                            torch::cat({source.train.labels, source.val->labels})};
    }
    const auto val_size = options.val_size;
    if (val_size <= 0 || val_size >= pool.size()) {
      throw UsageError("--val-size " + std::to_string(val_size) + " must be between 1 and the " +
                       std::to_string(pool.size() - 1) + " train images");
    }
    auto [val, train] = data::stratified_choice(pool.labels, classes, val_size, seed);
    dataset.val = data::take(pool, val);
    dataset.train = data::take(pool, train);
  }
  const auto per_class = options.per_class_limit;
  if (per_class > 0)
    dataset.train = data::take(
        dataset.train, data::per_class_choice(dataset.train.labels, classes, per_class, seed));
  dataset.train = stratified_subset(dataset.train, classes, options.train_limit, seed + 1);
  dataset.val = stratified_subset(dataset.val, classes, options.val_limit, seed + 2);
  dataset.test = stratified_subset(dataset.test, classes, options.test_limit, seed + 3);
  return dataset;
}

int run_prepare(Context& context, const PrepareOptions& options) {
  const std::string out = context.under_workdir(options.out, "data/data.h5");
  if (path_exists(out) && !options.overwrite)
    throw UsageError(out + ": output exists; pass --overwrite to replace it");
  if (options.hflip != "auto" && options.hflip != "yes" && options.hflip != "no")
    throw UsageError("--hflip must be auto, yes or no");
  RunRecord& record = open_record(context, parent_dir(out));
  const auto start = std::chrono::steady_clock::now();
  run_on_root(context.comm, [&] {
    io::SourceOptions source_options;
    source_options.path = options.source;
    source_options.format = options.format;
    source_options.name = options.name;
    source_options.hflip = options.hflip;
    source_options.classes = options.classes;
    const io::Source source = io::load_source(source_options);
    const data::Dataset dataset = build_dataset(source, context, options);
    for (const auto& [split, set] :
         {std::pair<const char*, const data::ImageSet*>{"train", &dataset.train},
          {"val", &dataset.val},
          {"test", &dataset.test}})
      if (set->size() == 0)
        throw UsageError(options.source + ": the " + split +
                         " split is empty (no images to train, select or report on)");
    make_dirs(parent_dir(out));
    io::write_dataset(dataset, out);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    Json summary{
        {"name", dataset.info.name},
        {"classes", dataset.info.classes},
        {"shape", {dataset.info.channels, dataset.info.height, dataset.info.width}},
        {"hflip", dataset.info.hflip},
        {"train", dataset.train.size()},
        {"val", dataset.val.size()},
        {"test", dataset.test.size()},
        {"train_per_class", data::class_counts(dataset.train.labels, dataset.info.classes)},
        {"val_per_class", data::class_counts(dataset.val.labels, dataset.info.classes)},
        {"test_per_class", data::class_counts(dataset.test.labels, dataset.info.classes)},
        {"source_sha256", dataset.info.source_sha256},
        {"split_seed", dataset.info.split_seed},
        {"seconds", seconds},
        {"output", out}};
    Json files = Json::array();
    for (const auto& [path, sha] : source.files)
      files.push_back(Json{{"path", path}, {"sha256", sha}});
    record.set("source_files", files);
    record.set("results", summary);
    record.set("outputs", Json{{"data", Json{{"path", out}, {"sha256", sha256_file(out)}}}});
    log::info("prepare: " + dataset.info.name + " -> " + out + ": train " +
              std::to_string(dataset.train.size()) + ", val " + std::to_string(dataset.val.size()) +
              ", test " + std::to_string(dataset.test.size()) + " images of " +
              std::to_string(dataset.info.channels) + "x" + std::to_string(dataset.info.height) +
              "x" + std::to_string(dataset.info.width) + ", " +
              std::to_string(dataset.info.classes) + " classes, " +
              std::to_string(seconds).substr(0, 5) + " s");
  });
  record.finish("complete");
  return 0;
}

}  // namespace

Step prepare_step() {
  return typed_step<PrepareOptions>(
      "prepare", "ingest a real data set into the canonical HDF5 file (train/val/test)",
      add_prepare_options, run_prepare);
}

}  // namespace kr::steps
