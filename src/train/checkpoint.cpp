#include "kr/train/checkpoint.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "kr/core/cost.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/core/sha256.hpp"
#include "kr/nn/serialize.hpp"

namespace kr::train {

namespace fs = std::filesystem;

namespace {

std::string step_name(std::int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld", static_cast<long long>(step));
  return name;
}

std::int64_t step_of(const std::string& name) {
  if (name.rfind("step_", 0) != 0 || name.find('.') != std::string::npos) return -1;
  try {
    return std::stoll(name.substr(5));
  } catch (...) {
    return -1;
  }
}

at::Tensor rng_state_bytes() {
  return at::detail::getDefaultCPUGenerator().get_state();
}

}  // namespace

CheckpointManager::CheckpointManager(comm::Communicator& comm, std::string directory, int keep,
                                     RunIdentity identity, Json config)
    : comm_(comm),
      directory_(std::move(directory)),
      keep_(std::max(1, keep)),
      identity_(std::move(identity)),
      config_(std::move(config)) {}

void CheckpointManager::save(std::int64_t step, const CheckpointItems& items, const Json& state,
                             bool best) {
  const cost::Scope io(cost::Part::io);
  auto rng = rng_state_bytes().contiguous();
  auto all_rng = comm_.allgather(rng);
  auto verdict = torch::zeros({1}, torch::kInt64);
  std::string failure;
  if (comm_.rank() == 0) {
    try {
      make_dirs(directory_);
      const std::string final_path = directory_ + "/" + step_name(step);
      PendingFile pending(final_path);
      fs::remove_all(pending.temp_path());
      make_dirs(pending.temp_path());
      const std::string tmp = pending.temp_path();
      // Every file is written and fsynced with its errors checked (a full disk names the
      // file and the free space); the directory is renamed into place only when complete.
      std::vector<std::string> files;
      auto add_file = [&](const std::string& file, const std::string& bytes) {
        write_file_durable(tmp + "/" + file, bytes);
        files.push_back(file);
      };
      for (const auto& [name, module] : items.modules)
        add_file(name + ".pt", nn::module_bytes(*module));
      for (const auto& [name, optimizer] : items.optimizers) {
        torch::serialize::OutputArchive archive;
        optimizer->save(archive);
        add_file(name + ".pt", nn::archive_bytes(archive));
      }
      add_file("rng.bin", std::string(static_cast<const char*>(all_rng.data_ptr()),
                                      static_cast<std::size_t>(all_rng.nbytes())));
      add_file("state.json", state.dump(2));
      add_file("config.json", config_.dump(2));

      Json manifest;
      manifest["format"] = "kr-checkpoint";
      manifest["version"] = 1;
      manifest["step"] = step;
      manifest["config_hash"] = identity_.config_hash;
      manifest["world_size"] = identity_.world_size;
      manifest["intra_threads"] = identity_.intra_threads;
      manifest["openblas_threads"] = identity_.openblas_threads;
      manifest["onednn_isa"] = identity_.onednn_isa;
      manifest["rng_bytes_per_rank"] = rng.nbytes();
      Json hashes;
      for (const auto& file : files) {
        hashes[file] =
            Json{{"sha256", sha256_file(tmp + "/" + file)}, {"bytes", file_size(tmp + "/" + file)}};
      }
      manifest["files"] = hashes;
      write_file_durable(tmp + "/manifest.json", manifest.dump(2));
      if (path_exists(final_path)) fs::remove_all(final_path);
      pending.commit();
      // `best` before `latest`: a failure between the two leaves `latest` at the previous
      // checkpoint, whose `best` is still valid, never a `latest` without its `best`.
      if (best) write_file_atomic(directory_ + "/best", step_name(step) + "\n");
      write_file_atomic(directory_ + "/latest", step_name(step) + "\n");
      prune();
      verdict.fill_(1);
    } catch (const std::exception& error) {
      failure = error.what();
      log::error("checkpoint at step " + std::to_string(step) + " failed: " + failure);
    }
  }
  comm_.broadcast(verdict, 0);
  if (verdict.item<std::int64_t>() != 1) {
    throw Error("checkpoint at step " + std::to_string(step) + " in " + directory_ +
                " failed on rank 0" + (failure.empty() ? "" : ": " + failure));
  }
}

void CheckpointManager::prune() {
  std::vector<std::pair<std::int64_t, std::string>> steps;
  if (!path_exists(directory_)) return;
  for (const auto& entry : fs::directory_iterator(directory_)) {
    const auto name = entry.path().filename().string();
    const auto step = step_of(name);
    if (step >= 0 && entry.is_directory()) steps.emplace_back(step, name);
  }
  std::sort(steps.begin(), steps.end());
  const std::string latest = resolve_pointer("latest");
  const std::string best = resolve_pointer("best");
  const std::int64_t excess = static_cast<std::int64_t>(steps.size()) - keep_;
  for (std::int64_t i = 0; i < excess; ++i) {
    const auto& name = steps[i].second;
    if (name == latest || name == best) continue;
    fs::remove_all(directory_ + "/" + name);
  }
}

std::string CheckpointManager::resolve_pointer(const std::string& name) const {
  const std::string path = directory_ + "/" + name;
  if (!path_exists(path)) return "";
  std::string target = read_file(path);
  while (!target.empty() && (target.back() == '\n' || target.back() == ' ')) target.pop_back();
  return target;
}

std::string CheckpointManager::verify(const std::string& path) {
  const std::string manifest_path = path + "/manifest.json";
  if (!path_exists(manifest_path)) return manifest_path + " is missing";
  Json manifest;
  try {
    manifest = Json::parse(read_file(manifest_path));
  } catch (const std::exception& error) {
    return manifest_path + " is corrupt (" + error.what() + ")";
  }
  if (manifest.value("format", "") != "kr-checkpoint")
    return manifest_path + " is not a kr checkpoint manifest";
  for (const auto& item : manifest["files"].items()) {
    const std::string file = path + "/" + item.key();
    if (!path_exists(file)) return file + " is missing";
    const std::string expected = item.value()["sha256"];
    const std::string actual = sha256_file(file);
    if (actual != expected)
      return file + " fails its checksum (sha256 " + actual + ", manifest " + expected + ")";
  }
  return "";
}

void CheckpointManager::check_identity(const std::string& path, const Json& manifest,
                                       bool allow_reshard) const {
  const std::string hash = manifest.value("config_hash", "");
  if (hash != identity_.config_hash) {
    throw Error(path + ": checkpoint belongs to a different configuration (config hash " + hash +
                ", this run " + identity_.config_hash +
                "); use another --out directory or --resume never");
  }
  const int world = manifest.value("world_size", 0);
  if (world != identity_.world_size && !allow_reshard) {
    throw Error(path + ": checkpoint was written by " + std::to_string(world) +
                " ranks, this job has " + std::to_string(identity_.world_size) + "; rerun with " +
                std::to_string(world) + " ranks or pass --allow-reshard");
  }
  if (manifest.value("onednn_isa", -1) != identity_.onednn_isa) {
    log::warn(path + ": written on a different CPU instruction set (oneDNN ISA " +
              std::to_string(manifest.value("onednn_isa", -1)) + ", here " +
              std::to_string(identity_.onednn_isa) +
              "): the resumed run will not be bit-identical");
  }
}

std::string CheckpointManager::newest_verified(std::int64_t below) const {
  std::vector<std::pair<std::int64_t, std::string>> steps;
  if (!path_exists(directory_)) return "";
  for (const auto& entry : fs::directory_iterator(directory_)) {
    const auto name = entry.path().filename().string();
    if (step_of(name) >= 0 && step_of(name) < below && entry.is_directory())
      steps.emplace_back(step_of(name), name);
  }
  std::sort(steps.rbegin(), steps.rend());
  for (const auto& candidate : steps)
    if (verify(directory_ + "/" + candidate.second).empty())
      return directory_ + "/" + candidate.second;
  return "";
}

std::optional<std::string> CheckpointManager::find_latest(bool allow_reshard) {
  const std::string pointer = directory_ + "/latest";
  const std::string latest = resolve_pointer("latest");
  if (latest.empty()) {
    // No pointer (or an empty one) with checkpoints beside it is damage, not a fresh run:
    // restarting from step 0 would silently throw the training away.
    const std::string newest = newest_verified(std::numeric_limits<std::int64_t>::max());
    if (newest.empty()) return std::nullopt;
    throw Error(pointer + (path_exists(pointer) ? " is empty" : " is missing") +
                " but checkpoints exist; the newest that verifies is " + newest +
                " (pass --resume " + newest + " to use it, or --resume never to start again)");
  }
  const std::string path = directory_ + "/" + latest;
  const bool named = step_of(latest) >= 0;
  const std::string problem =
      named ? verify(path)
            : pointer + " does not name a checkpoint (it holds '" + latest.substr(0, 40) + "')";
  if (!problem.empty()) {
    const std::string fallback =
        newest_verified(named ? step_of(latest) : std::numeric_limits<std::int64_t>::max());
    throw Error("latest checkpoint " + (named ? path : pointer) + " is corrupt: " + problem +
                (fallback.empty() ? "; no other checkpoint verifies"
                                  : std::string("; the newest ") + (named ? "older " : "") +
                                        "checkpoint that verifies is " + fallback +
                                        " (pass --resume " + fallback + " to use it)"));
  }
  check_identity(path, Json::parse(read_file(path + "/manifest.json")), allow_reshard);
  return path;
}

std::optional<std::string> CheckpointManager::find_best() {
  const std::string best = resolve_pointer("best");
  if (best.empty()) return std::nullopt;
  const std::string path = directory_ + "/" + best;
  const std::string problem = verify(path);
  if (!problem.empty()) throw Error("best checkpoint " + path + " is corrupt: " + problem);
  return path;
}

Json CheckpointManager::load(const std::string& path, const CheckpointItems& items,
                             bool allow_reshard) {
  const cost::Scope io(cost::Part::io);
  const std::string problem = verify(path);
  if (!problem.empty()) throw Error("checkpoint " + path + " is corrupt: " + problem);
  const Json manifest = Json::parse(read_file(path + "/manifest.json"));
  check_identity(path, manifest, allow_reshard);
  for (const auto& [name, module] : items.modules) {
    torch::serialize::InputArchive archive;
    archive.load_from(path + "/" + name + ".pt");
    module->load(archive);
  }
  for (const auto& [name, optimizer] : items.optimizers) {
    torch::serialize::InputArchive archive;
    archive.load_from(path + "/" + name + ".pt");
    optimizer->load(archive);
  }
  const std::string rng = read_file(path + "/rng.bin");
  const std::size_t per_rank = manifest.value("rng_bytes_per_rank", std::size_t{0});
  const int world = manifest.value("world_size", 1);
  if (per_rank == 0 || rng.size() != per_rank * static_cast<std::size_t>(world)) {
    throw Error(path + "/rng.bin: size does not match the manifest");
  }
  if (world == comm_.size()) {
    auto state = torch::empty({static_cast<std::int64_t>(per_rank)}, torch::kUInt8);
    std::memcpy(state.data_ptr(), rng.data() + per_rank * comm_.rank(), per_rank);
    at::Generator generator = at::detail::getDefaultCPUGenerator();
    generator.set_state(state);
  }
  return Json::parse(read_file(path + "/state.json"));
}

}  // namespace kr::train
