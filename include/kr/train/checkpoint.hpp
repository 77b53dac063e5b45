// Checkpoints: ckpt/step_<S>/ directories committed by rename, `latest` and
// `best` pointer files, a manifest with the sha256 of every file.
//
// Note [Checkpoint commit]
// 1. Rank 0 broadcasts BatchNorm buffers (Note [BatchNorm under data parallelism]).
// 2. Every rank's RNG state is gathered to rank 0 over the communicator (no
//    shared node-local path is assumed).
// 3. Rank 0 writes every file into step_<S>.tmp/, fsyncs, hashes them into
//    manifest.json (with world size, threads and the oneDNN ISA), renames the
//    directory to step_<S>, then replaces `latest` (and `best` when this is the
//    best-on-val checkpoint) by write-and-rename.
// 4. Rank 0 broadcasts success, so a failed write fails every rank alike.
// Keeping the last K never deletes the checkpoints `latest` or `best` name.
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kr/comm/communicator.hpp"
#include "kr/core/json.hpp"
#include "kr/nn/serialize.hpp"

namespace kr::train {

using nn::CheckpointItems;

struct RunIdentity {
  std::string config_hash;  // hash of the settings that define the run
  int world_size = 1;
  int intra_threads = 1;
  int openblas_threads = 0;
  int onednn_isa = -1;
};

class CheckpointManager {
 public:
  CheckpointManager(comm::Communicator& comm, std::string directory, int keep, RunIdentity identity,
                    Json config);

  // Collective. `state` is the trainer's position (step, epoch, ...).
  void save(std::int64_t step, const CheckpointItems& items, const Json& state, bool best);

  // Path of the checkpoint `latest` names, verified; nullopt when there are no
  // checkpoints. Throws when `latest` is corrupt, garbage, empty or missing beside
  // checkpoints (naming the newest one that verifies), or foreign.
  std::optional<std::string> find_latest(bool allow_reshard);
  std::optional<std::string> find_best();

  // Loads modules, optimizers and this rank's RNG state; returns the saved state.
  Json load(const std::string& path, const CheckpointItems& items, bool allow_reshard);

  // Verifies a checkpoint directory against its manifest; returns the problem, or "".
  static std::string verify(const std::string& path);
  const std::string& directory() const { return directory_; }

 private:
  void prune();
  std::string resolve_pointer(const std::string& name) const;
  // The newest checkpoint directory below step `below` that verifies, or "".
  std::string newest_verified(std::int64_t below) const;
  void check_identity(const std::string& path, const Json& manifest, bool allow_reshard) const;

  comm::Communicator& comm_;
  std::string directory_;
  int keep_;
  RunIdentity identity_;
  Json config_;
};

}  // namespace kr::train
