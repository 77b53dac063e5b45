// `kr generate`: regeneration spread over ranks into sharded HDF5 (Note [Synthetic pool]).
#include <torch/torch.h>

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
#include "kr/gen/sampler.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/io/shard.hpp"
#include "kr/steps/artifacts.hpp"
#include "kr/steps/root_only.hpp"
#include "kr/steps/run_record.hpp"
#include "kr/steps/sampling_options.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

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
      ("filter-tau", po::value<double>()->default_value(0.0), "keep a sample of class c only if the teacher's argmax is c with probability > tau (0: no filter; needs a teacher)");
  // clang-format on
  add_sampling_options(options);
}

struct Timers {
  double sampling = 0, teacher = 0, io = 0;
};

// Global indices [first, first + n): images, conditioning labels and (with a
// teacher) its logits.
io::Shard sample_block(gen::Sampler& sampler, LoadedClassifier* teacher, std::int64_t first,
                       std::int64_t n, std::uint64_t seed, std::int64_t sample_batch,
                       Timers& timers) {
  auto t0 = Clock::now();
  io::Shard shard;
  shard.images = gen::sample_range(sampler, first, n, seed, sample_batch);
  shard.labels = gen::classes_of_range(first, n, sampler.spec().classes);
  timers.sampling += seconds_since(t0);
  if (teacher) {
    auto t1 = Clock::now();
    std::vector<at::Tensor> logits;
    for (std::int64_t i = 0; i < n; i += 500)
      logits.push_back(teacher->logits(
          data::to_float(shard.images.narrow(0, i, std::min<std::int64_t>(500, n - i)))));
    shard.teacher_logits = torch::cat(logits).contiguous();
    timers.teacher += seconds_since(t1);
  }
  return shard;
}

int run_generate(Context& context) {
  const auto start = Clock::now();
  const std::string out = context.path_option("out", "pool");
  const std::string generator_path = context.path_option("generator", "generator");
  auto generator = gen::load_generator(generator_path);
  const auto spec = with_sampling_options(context, generator.spec);
  auto sampler = gen::make_sampler(spec, generator.model);

  std::optional<LoadedClassifier> teacher;
  const std::string teacher_option = context.get<std::string>("teacher");
  const std::string teacher_dir = context.path_option("teacher", "teacher");
  if (teacher_option != "none" &&
      (!teacher_option.empty() || path_exists(teacher_dir + "/model.json")))
    teacher = load_classifier(teacher_dir, spec.channels, spec.classes);

  std::int64_t count = context.get<std::int64_t>("count");
  if (context.get<std::int64_t>("per-class") > 0)
    count = context.get<std::int64_t>("per-class") * spec.classes;
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
    throw UsageError("--block (" + std::to_string(block) +
                     ") must be a positive multiple of --sample-batch (" +
                     std::to_string(sample_batch) + ")");
  const std::int64_t total = count * pool_epochs;
  const double tau = context.get<double>("filter-tau");
  const bool filtered = tau > 0.0;
  if (tau < 0.0 || tau >= 1.0) throw UsageError("--filter-tau must be in [0, 1)");
  if (filtered && !teacher)
    throw UsageError("--filter-tau needs a teacher (--teacher, or <workdir>/teacher)");
  if (filtered && count % spec.classes != 0)
    throw UsageError("--filter-tau needs a class-balanced count: " + std::to_string(count) +
                     " images is not a multiple of " + std::to_string(spec.classes) + " classes");

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
                {"labels", "class_of_index(i) = i mod K"},
                {"filter_tau", filtered ? Json(tau) : Json(nullptr)}};
  const std::string settings_hash = sha256_string(settings.dump()).substr(0, 16);

  // A rerun must have the same settings (checked before the run record, so a refused
  // rerun leaves a complete pool's record as it was); a crash must not leave a manifest
  // that looks valid.
  run_on_root(context.comm, [&] { claim_settings(out, settings, "a pool"); });
  RunRecord record(context, out);
  record.add_input("generator", generator.weights);
  if (teacher) record.add_input("teacher", teacher->weights);
  run_on_root(context.comm, [&] {
    std::filesystem::remove(out + "/manifest.json");
    std::filesystem::remove(out + "/index.h5");
  });

  const std::int64_t blocks = (total + block - 1) / block;
  const int rank = context.comm.rank();
  const int world = context.comm.size();
  Timers timers;
  std::int64_t made = 0, kept = 0, images_made = 0;
  std::vector<std::string> made_files;
  const auto work_start = Clock::now();
  auto shard_info = [&](std::int64_t first, std::int64_t n) {
    return io::ShardInfo{first, n, settings_hash, generator.weights_sha256, seed};
  };
  // This rank's pool blocks that are missing or fail their check.
  std::vector<std::int64_t> todo;
  for (std::int64_t b = rank; b < blocks; b += world) {
    const std::int64_t first = b * block;
    const std::int64_t n = std::min(block, total - first);
    const std::string path = out + "/" + io::shard_file_name(first, n);
    if (path_exists(path)) {
      const auto problem = io::check_shard(path, first, n, settings_hash);
      if (problem.empty()) {
        ++kept;
        continue;
      }
      log::warn("generate: remaking " + io::shard_file_name(first, n) + ": " + problem);
    }
    todo.push_back(b);
  }
  auto progress = [&](std::int64_t done, std::int64_t of, const char* what) {
    if (rank != 0 || !(done % 10 == 0 || done == of)) return;
    const double elapsed = seconds_since(work_start);
    const double eta = elapsed / std::max<std::int64_t>(1, done) * static_cast<double>(of - done);
    char line[200];
    std::snprintf(line, sizeof line,
                  "generate: rank 0 %s %lld/%lld, %.0f img/s per rank, ETA %.0f s", what,
                  static_cast<long long>(done), static_cast<long long>(of),
                  static_cast<double>(images_made) / std::max(elapsed, 1e-9), eta);
    log::info(line);
  };
  auto write_pool_shard = [&](std::int64_t b, const io::Shard& shard) {
    const std::int64_t first = b * block;
    const std::int64_t n = shard.images.size(0);
    auto t0 = Clock::now();
    io::write_shard(out + "/" + io::shard_file_name(first, n), shard, shard_info(first, n),
                    settings);
    timers.io += seconds_since(t0);
    ++made;
    made_files.push_back(io::shard_file_name(first, n));
  };

  Json filter_results = nullptr;
  if (!filtered) {
    for (std::size_t i = 0; i < todo.size(); ++i) {
      const std::int64_t first = todo[i] * block;
      const std::int64_t n = std::min(block, total - first);
      auto shard = sample_block(*sampler, teacher ? &*teacher : nullptr, first, n, seed,
                                sample_batch, timers);
      images_made += n;
      write_pool_shard(todo[i], shard);
      progress(static_cast<std::int64_t>(i + 1), static_cast<std::int64_t>(todo.size()), "block");
    }
  } else {
    // Note [Confidence filter]. Skipped entirely when every pool shard is already good.
    auto missing = torch::tensor({static_cast<std::int64_t>(todo.size())}, torch::kInt64);
    context.comm.allreduce(missing, comm::ReduceOp::sum);
    const std::int64_t quota = total / spec.classes;
    const std::string candidate_dir = out + "/candidates";
    auto candidate_path = [&](std::int64_t b) {
      return candidate_dir + "/" + io::shard_file_name(b * block, block);
    };
    auto read_candidates = [&](std::int64_t b) {
      return io::read_shard(candidate_path(b), b * block, -1, settings_hash);
    };
    gen::CandidateSet candidates(block, spec.classes, read_candidates);
    std::int64_t candidate_blocks_made = 0;
    if (missing.item<std::int64_t>() > 0) {
      run_on_root(context.comm, [&] { make_dirs(candidate_dir); });
      std::int64_t candidate_blocks_done = 0;
      // A candidate block's file is kept across runs: a rerun reads it back instead of sampling.
      auto make_candidates = [&](std::int64_t b) {
        const std::int64_t first = b * block;
        const std::string path = candidate_path(b);
        ++candidate_blocks_done;
        if (path_exists(path)) {
          auto t0 = Clock::now();
          try {
            auto rows = read_candidates(b);
            timers.io += seconds_since(t0);
            return rows;
          } catch (const Error& error) {
            log::warn(std::string("generate: remaking candidates: ") + error.what());
          }
        }
        auto sampled = sample_block(*sampler, &*teacher, first, block, seed, sample_batch, timers);
        images_made += block;
        auto rows = gen::accept_confident(sampled, first, tau);
        auto t0 = Clock::now();
        io::write_shard(path, rows, shard_info(first, rows.images.size(0)), settings);
        timers.io += seconds_since(t0);
        ++candidate_blocks_made;
        if (rank == 0 && candidate_blocks_made % 10 == 0)
          log::info("generate: rank 0 sampled " + std::to_string(candidate_blocks_made) +
                    " candidate blocks (" + std::to_string(candidate_blocks_done) + " seen)");
        return rows;
      };
      candidates.fill(context.comm, quota, blocks, make_candidates);
      for (std::size_t i = 0; i < todo.size(); ++i) {
        const std::int64_t first = todo[i] * block;
        const std::int64_t n = std::min(block, total - first);
        auto t0 = Clock::now();
        auto shard = candidates.gather(first, n);
        timers.io += seconds_since(t0);
        write_pool_shard(todo[i], shard);
      }
      Json acceptance = Json::array();
      std::int64_t all_accepted = 0;
      for (std::int64_t c = 0; c < spec.classes; ++c) {
        acceptance.push_back(static_cast<double>(candidates.accepted(c)) /
                             static_cast<double>(candidates.candidates(c)));
        all_accepted += candidates.accepted(c);
      }
      auto blocks_made = torch::tensor({candidate_blocks_made}, torch::kInt64);
      context.comm.allreduce(blocks_made, comm::ReduceOp::sum);
      filter_results = Json{{"tau", tau},
                            {"candidate_blocks", candidates.blocks()},
                            {"candidate_blocks_sampled_this_run", blocks_made.item<std::int64_t>()},
                            {"candidates", candidates.blocks() * block},
                            {"accepted", all_accepted},
                            {"acceptance", static_cast<double>(all_accepted) /
                                               static_cast<double>(candidates.blocks() * block)},
                            {"acceptance_per_class", acceptance},
                            {"candidate_directory", candidate_dir}};
      std::string per_class;
      for (std::int64_t c = 0; c < spec.classes; ++c) {
        char item[32];
        std::snprintf(item, sizeof item, "%s%lld: %.1f%%", c ? ", " : "", static_cast<long long>(c),
                      100.0 * acceptance[static_cast<std::size_t>(c)].get<double>());
        per_class += item;
      }
      log::info("generate: filter tau " + std::to_string(tau) + " accepted per class " + per_class);
    } else {
      filter_results = Json{{"tau", tau}, {"note", "every shard was already complete"}};
    }
  }
  const double work_seconds = seconds_since(work_start);

  // Totals over ranks; then rank 0 commits the manifest and the index.
  auto sums = torch::tensor({timers.sampling, timers.teacher, timers.io, static_cast<double>(made),
                             static_cast<double>(kept), static_cast<double>(images_made)},
                            torch::kFloat64);
  context.comm.allreduce(sums, comm::ReduceOp::sum);
  auto slowest = torch::tensor({work_seconds}, torch::kFloat64);
  context.comm.allreduce(slowest, comm::ReduceOp::max);
  std::string my_list;
  for (const auto& name : made_files) my_list += name + ",";
  std::vector<std::string> all_made;
  for (const auto& list : context.comm.allgather_strings(my_list))
    for (auto& name : split_list(list)) all_made.push_back(std::move(name));
  std::sort(all_made.begin(), all_made.end());

  const double total_seconds = seconds_since(start);
  Json results;
  run_on_root(context.comm, [&] {
    io::PoolDescription pool{total,
                             block,
                             spec.classes,
                             {spec.channels, spec.height, spec.width},
                             teacher.has_value(),
                             filtered,
                             settings_hash,
                             settings,
                             Json{{"world_size", world},
                                  {"threads_per_rank", context.threads.intra_op},
                                  {"onednn_isa", context.threads.onednn_isa}},
                             all_made};
    io::commit_pool(out, pool);
    // Rank 0's checksums and index are I/O the other ranks wait for.
    const double index_seconds = seconds_since(start) - total_seconds;
    const double wall_seconds = total_seconds + index_seconds;
    const double images_per_second =
        sums[5].item<double>() / std::max(1e-9, slowest.item<double>());
    const double busy = sums[0].item<double>() + sums[1].item<double>() + sums[2].item<double>();
    results = Json{
        {"step", "generate"},
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
        {"shards_made", static_cast<std::int64_t>(sums[3].item<double>())},
        {"shards_kept", static_cast<std::int64_t>(sums[4].item<double>())},
        {"filter", filter_results},
        {"made", all_made},
        {"world_size", context.comm.size()},
        {"threads_per_rank", context.threads.intra_op},
        {"seconds", wall_seconds},
        {"generation_seconds", slowest.item<double>()},
        {"images_per_second", images_per_second},
        {"time_split", Json{{"sampling", busy > 0 ? sums[0].item<double>() / busy : 0.0},
                            {"teacher_labelling", busy > 0 ? sums[1].item<double>() / busy : 0.0},
                            {"hdf5_io", busy > 0 ? sums[2].item<double>() / busy : 0.0}}},
        {"index_seconds", index_seconds},
        // HDF5 I/O's share of the wall time: the ranks' mean shard I/O plus rank 0's
        // checksums and index, over the wall time to the finished index.
        {"hdf5_io_wall_share",
         (sums[2].item<double>() / context.comm.size() + index_seconds) / wall_seconds}};
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
