// `kr generate`: regeneration spread over ranks into sharded HDF5 (Note [Synthetic pool]).
#include <torch/torch.h>

#include <optional>

#include <chrono>
#include <filesystem>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/core/sha256.hpp"
#include "kr/data/augment.hpp"
#include "kr/gen/sampler.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/io/shard.hpp"
#include "kr/steps/artifacts.hpp"
#include "kr/steps/root_only.hpp"
#include "kr/steps/run_record.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

using Clock = std::chrono::steady_clock;

void add_generate_options(po::options_description& options) {
  // clang-format off
  options.add_options()
      ("data", po::value<std::string>()->default_value(""), "prepared data set, for the default count (default: <workdir>/data/data.h5)")
      ("generator", po::value<std::string>()->default_value(""), "generator run or checkpoint (default: <workdir>/generator)")
      ("teacher", po::value<std::string>()->default_value(""), "teacher run whose logits are stored (default: <workdir>/teacher if present; 'none' for none)")
      ("out", po::value<std::string>()->default_value(""), "pool directory (default: <workdir>/pool)")
      ("count", po::value<std::int64_t>()->default_value(0), "images per regeneration (0: the real train size)")
      ("per-class", po::value<std::int64_t>()->default_value(0), "images per class per regeneration (overrides --count)")
      ("pool-epochs", po::value<std::int64_t>()->default_value(1), "disjoint regenerations held in the pool")
      ("block", po::value<std::int64_t>()->default_value(2000), "global indices per shard (a multiple of --sample-batch)")
      ("sample-batch", po::value<std::int64_t>()->default_value(250), "images per generator forward (fixed: part of the settings)")
      ("steps", po::value<std::int64_t>()->default_value(0), "ddpm: DDIM steps (0: as trained)")
      ("guidance", po::value<double>()->default_value(-1.0), "ddpm: guidance scale (-1: as trained)")
      ("z-scale", po::value<double>()->default_value(-1.0), "gan: latent scale (-1: as trained)");
  // clang-format on
}

std::string describe_difference(const Json& old_settings, const Json& new_settings) {
  for (const auto& item : new_settings.items()) {
    if (!old_settings.contains(item.key()) || old_settings.at(item.key()) != item.value()) {
      return item.key() + " was " +
             (old_settings.contains(item.key()) ? old_settings.at(item.key()).dump() : "unset") +
             ", now " + item.value().dump();
    }
  }
  return "settings differ";
}

int run_generate(Context& context) {
  const auto start = Clock::now();
  const std::string out = context.path_option("out", "pool");
  const std::string generator_path = context.path_option("generator", "generator");
  auto generator = gen::load_generator(generator_path);
  auto spec = generator.spec;
  if (context.get<std::int64_t>("steps") > 0) spec.sample_steps = context.get<std::int64_t>("steps");
  if (context.get<double>("guidance") >= 0) spec.guidance = context.get<double>("guidance");
  if (context.get<double>("z-scale") > 0) spec.z_scale = context.get<double>("z-scale");
  auto sampler = gen::make_sampler(spec, generator.model);

  std::optional<LoadedClassifier> teacher;
  const std::string teacher_option = context.get<std::string>("teacher");
  const std::string teacher_dir = context.path_option("teacher", "teacher");
  if (teacher_option != "none" && (!teacher_option.empty() || path_exists(teacher_dir + "/model.json")))
    teacher = load_classifier(teacher_dir, spec.channels, spec.classes);

  std::int64_t count = context.get<std::int64_t>("count");
  if (context.get<std::int64_t>("per-class") > 0) count = context.get<std::int64_t>("per-class") * spec.classes;
  std::string data_path;
  if (count <= 0) {
    data_path = context.path_option("data", "data/data.h5");
    count = io::read_dataset(data_path).train.size();
  }
  const auto pool_epochs = context.get<std::int64_t>("pool-epochs");
  const auto block = context.get<std::int64_t>("block");
  const auto sample_batch = context.get<std::int64_t>("sample-batch");
  const auto seed = context.get<std::uint64_t>("seed");
  if (pool_epochs < 1) throw UsageError("--pool-epochs must be at least 1");
  if (sample_batch < 1 || block < sample_batch || block % sample_batch != 0)
    throw UsageError("--block (" + std::to_string(block) + ") must be a positive multiple of --sample-batch (" +
                     std::to_string(sample_batch) + ")");
  const std::int64_t total = count * pool_epochs;

  Json settings{{"schema_version", io::kShardSchemaVersion},
                {"generator_sha256", generator.weights_sha256},
                {"generator_spec", spec.to_json()},
                {"teacher_sha256", teacher ? Json(teacher->weights_sha256) : Json(nullptr)},
                {"seed", seed},
                {"count_per_regeneration", count},
                {"pool_epochs", pool_epochs},
                {"total", total},
                {"block", block},
                {"sample_batch", sample_batch},
                {"labels", "class_of_index(i) = i mod K"}};
  const std::string settings_hash = sha256_string(settings.dump()).substr(0, 16);

  RunRecord record(context, out);
  record.add_input("generator", generator.weights);
  if (teacher) record.add_input("teacher", teacher->weights);
  // A rerun must have the same settings; a crash must not leave a manifest that looks valid.
  run_on_root(context.comm, [&] {
    const std::string settings_path = out + "/settings.json";
    if (path_exists(settings_path)) {
      const Json old = Json::parse(read_file(settings_path));
      if (old != settings)
        throw UsageError(out + " holds a pool made with different settings (" +
                         describe_difference(old, settings) +
                         "); use another --out or remove the directory");
    } else {
      write_file_atomic(settings_path, settings.dump(2) + "\n");
    }
    std::filesystem::remove(out + "/manifest.json");
    std::filesystem::remove(out + "/index.h5");
  });

  const std::int64_t blocks = (total + block - 1) / block;
  double sample_seconds = 0, teacher_seconds = 0, write_seconds = 0;
  std::int64_t made = 0, kept = 0, images_made = 0;
  std::vector<std::string> made_files;
  const auto work_start = Clock::now();
  std::int64_t my_blocks = 0;
  for (std::int64_t b = context.comm.rank(); b < blocks; b += context.comm.size()) ++my_blocks;
  std::int64_t done_blocks = 0;
  for (std::int64_t b = context.comm.rank(); b < blocks; b += context.comm.size()) {
    const std::int64_t first = b * block;
    const std::int64_t n = std::min(block, total - first);
    const std::string name = io::shard_file_name(first, n);
    const std::string path = out + "/" + name;
    if (path_exists(path)) {
      const auto problem = io::check_shard(path, first, n, settings_hash);
      if (problem.empty()) {
        ++kept;
        ++done_blocks;
        continue;
      }
      log::warn("generate: remaking " + name + ": " + problem);
    }
    auto t0 = Clock::now();
    io::Shard shard;
    shard.images = gen::sample_range(*sampler, first, n, seed, sample_batch);
    std::vector<std::int64_t> labels(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) labels[i] = gen::class_of_index(first + i, spec.classes);
    shard.labels = torch::tensor(labels, torch::kInt64);
    auto t1 = Clock::now();
    if (teacher) {
      std::vector<at::Tensor> logits;
      for (std::int64_t i = 0; i < n; i += 500)
        logits.push_back(teacher->logits(data::to_float(shard.images.narrow(0, i, std::min<std::int64_t>(500, n - i)))));
      shard.teacher_logits = torch::cat(logits).contiguous();
    }
    auto t2 = Clock::now();
    io::write_shard(path, shard,
                    io::ShardInfo{first, n, settings_hash, generator.weights_sha256, seed,
                                  context.comm.rank(), context.comm.size()},
                    settings);
    auto t3 = Clock::now();
    sample_seconds += std::chrono::duration<double>(t1 - t0).count();
    teacher_seconds += std::chrono::duration<double>(t2 - t1).count();
    write_seconds += std::chrono::duration<double>(t3 - t2).count();
    ++made;
    images_made += n;
    made_files.push_back(name);
    ++done_blocks;
    const double elapsed = std::chrono::duration<double>(Clock::now() - work_start).count();
    if (context.comm.rank() == 0 && (made % 10 == 0 || done_blocks == my_blocks)) {
      const double rate = images_made / std::max(elapsed, 1e-9);
      const double eta = elapsed / std::max<std::int64_t>(1, made) * (my_blocks - done_blocks);
      char line[200];
      std::snprintf(line, sizeof line, "generate: rank 0 block %lld/%lld, %.0f img/s per rank, ETA %.0f s",
                    static_cast<long long>(done_blocks), static_cast<long long>(my_blocks), rate, eta);
      log::info(line);
    }
  }
  const double work_seconds = std::chrono::duration<double>(Clock::now() - work_start).count();

  // Totals over ranks; then rank 0 commits the manifest and the index.
  auto sums = torch::tensor({sample_seconds, teacher_seconds, write_seconds,
                             static_cast<double>(made), static_cast<double>(kept),
                             static_cast<double>(images_made)},
                            torch::kFloat64);
  context.comm.allreduce(sums, comm::ReduceOp::sum);
  auto slowest = torch::tensor({work_seconds}, torch::kFloat64);
  context.comm.allreduce(slowest, comm::ReduceOp::max);
  auto made_count = torch::tensor({made}, torch::kInt64);
  auto gathered_counts = context.comm.allgather(made_count);
  std::string my_list;
  for (const auto& name : made_files) my_list += name + "\n";
  auto length = torch::tensor({static_cast<std::int64_t>(my_list.size())}, torch::kInt64);
  auto lengths = context.comm.allgather(length);
  const auto longest = lengths.max().item<std::int64_t>();
  auto buffer = torch::zeros({std::max<std::int64_t>(1, longest)}, torch::kUInt8);
  std::memcpy(buffer.data_ptr(), my_list.data(), my_list.size());
  auto lists = context.comm.allgather(buffer);
  std::vector<std::string> all_made;
  for (int r = 0; r < context.comm.size(); ++r) {
    std::string text(reinterpret_cast<const char*>(lists.data_ptr<std::uint8_t>()) + r * buffer.size(0),
                     static_cast<std::size_t>(lengths[r].item<std::int64_t>()));
    std::size_t pos = 0;
    while (pos < text.size()) {
      const auto end = text.find('\n', pos);
      all_made.push_back(text.substr(pos, end - pos));
      pos = end + 1;
    }
  }
  std::sort(all_made.begin(), all_made.end());

  const double total_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  Json results;
  run_on_root(context.comm, [&] {
    std::vector<io::PoolEntry> entries;
    Json shards = Json::array();
    for (std::int64_t b = 0; b < blocks; ++b) {
      const std::int64_t first = b * block;
      const std::int64_t n = std::min(block, total - first);
      io::PoolEntry entry{io::shard_file_name(first, n), first, n, 0, ""};
      const std::string path = out + "/" + entry.file;
      if (!path_exists(path)) throw Error(path + ": shard missing after generation");
      entry.bytes = file_size(path);
      entry.sha256 = sha256_file(path);
      entries.push_back(entry);
      shards.push_back(Json{{"file", entry.file}, {"first", first}, {"count", n},
                            {"bytes", entry.bytes}, {"sha256", entry.sha256}});
    }
    io::write_pool_index(out, entries, total, {spec.channels, spec.height, spec.width},
                         spec.classes, teacher.has_value());
    const double images_per_second = sums[5].item<double>() / std::max(1e-9, slowest.item<double>());
    const double busy = sums[0].item<double>() + sums[1].item<double>() + sums[2].item<double>();
    results = Json{{"step", "generate"},
                   {"pool", out},
                   {"model", spec.model},
                   {"total", total},
                   {"count_per_regeneration", count},
                   {"pool_epochs", pool_epochs},
                   {"classes", spec.classes},
                   {"per_class_per_regeneration", count / spec.classes},
                   {"block", block},
                   {"sample_batch", sample_batch},
                   {"shards", blocks},
                   {"shards_made", sums[3].item<double>()},
                   {"shards_kept", sums[4].item<double>()},
                   {"made", all_made},
                   {"world_size", context.comm.size()},
                   {"threads_per_rank", context.threads.intra_op},
                   {"seconds", total_seconds},
                   {"generation_seconds", slowest.item<double>()},
                   {"images_per_second", images_per_second},
                   {"time_split",
                    Json{{"sampling", busy > 0 ? sums[0].item<double>() / busy : 0.0},
                         {"teacher_labelling", busy > 0 ? sums[1].item<double>() / busy : 0.0},
                         {"writing", busy > 0 ? sums[2].item<double>() / busy : 0.0}}}};
    Json manifest{{"schema_version", io::kShardSchemaVersion},
                  {"total", total},
                  {"classes", spec.classes},
                  {"shape", {spec.channels, spec.height, spec.width}},
                  {"teacher_logits", teacher.has_value()},
                  {"settings_hash", settings_hash},
                  {"settings", settings},
                  {"shards", shards}};
    write_file_atomic(out + "/manifest.json", manifest.dump(2) + "\n");
    make_dirs(context.workdir() + "/results");
    write_file_atomic(context.workdir() + "/results/generate.json", results.dump(2) + "\n");
  });
  char line[240];
  std::snprintf(line, sizeof line,
                "generate: %lld images in %lld shards (%lld made, %lld kept) in %.1f s, %.0f img/s",
                static_cast<long long>(total), static_cast<long long>(blocks),
                static_cast<long long>(sums[3].item<double>()),
                static_cast<long long>(sums[4].item<double>()), total_seconds,
                sums[5].item<double>() / std::max(1e-9, slowest.item<double>()));
  log::info(line);
  for (const auto& name : all_made) log::record(Json{{"event", "shard_made"}, {"file", name}});
  record.set("results", Json{{"total", total}, {"made", all_made}});
  record.finish("complete");
  return exit_code::ok;
}

}  // namespace

Step generate_step() {
  return Step{"generate", "regenerate a synthetic pool into sharded HDF5, spread over ranks",
              add_generate_options, run_generate};
}

}  // namespace kr::steps
