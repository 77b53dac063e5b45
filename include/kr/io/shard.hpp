// Synthetic shards and the pool they form (DESIGN.md "Synthetic shard").
//
// Note [Synthetic pool]
// A pool directory holds shard_<first>_<count>.h5 files, one per block of global
// sample indices, plus manifest.json (every shard with its size and sha256) and
// index.h5 (HDF5 virtual datasets over the shards, for h5py users). A shard's
// file depends only on its indices and the pool's settings, to the byte (see
// Note [Reproducible files]): who wrote it, and with which layout, is in the
// manifest, not the shard. Each shard stores the sha256 of its own data
// (written before the rename), so a restart can check shards without a
// manifest. A missing VDS source reads as fill values without any error, so
// every reader verifies manifest.json first, and the labels' fill value is -1.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kr/core/json.hpp"
#include "kr/data/image_set.hpp"

namespace kr::io {

constexpr std::int64_t kShardSchemaVersion = 1;

struct Shard {
  at::Tensor images;          // uint8 (n, C, H, W)
  at::Tensor labels;          // int64 (n): conditioning classes
  at::Tensor teacher_logits;  // float32 (n, K), or undefined
  at::Tensor source_index;    // int64 (n): filtered pools, the candidate index of each row
};

struct ShardInfo {
  std::int64_t first = 0;
  std::int64_t count = 0;
  std::string settings_hash;  // the pool's settings (Note [Synthetic pool])
  std::string generator_sha256;
  std::uint64_t seed = 0;
};

std::string shard_file_name(std::int64_t first, std::int64_t count);

// sha256 over the data (images, labels, logits and source index bytes, in that order).
std::string shard_content_sha256(const Shard& shard);

// Writes through a temporary name and rename; stores the content sha256. The file's
// bytes are a function of `shard`, `info` and `settings` only.
void write_shard(const std::string& path, const Shard& shard, const ShardInfo& info,
                 const Json& settings);

// Reads and checks a shard: shapes, the stored content sha256, and (when given)
// the expected first index, count and settings hash. Errors name the file.
Shard read_shard(const std::string& path, std::int64_t first = -1, std::int64_t count = -1,
                 const std::string& settings_hash = "");

// "" when the shard reads back and matches; else the problem.
std::string check_shard(const std::string& path, std::int64_t first, std::int64_t count,
                        const std::string& settings_hash);

// Shards of a pool of `total` indices in blocks of `block` (the last one may be short).
inline std::int64_t shard_count(std::int64_t total, std::int64_t block) {
  return (total + block - 1) / block;
}

// The blocks b = rank, rank + world, ... of a pool of `total` indices in blocks of
// `block` whose shard in `directory` is missing or fails check_shard (logged as
// remade); `kept` is set to the number of this rank's good ones.
std::vector<std::int64_t> shards_to_make(const std::string& directory, std::int64_t total,
                                         std::int64_t block, int rank, int world,
                                         const std::string& settings_hash, std::int64_t& kept);

struct PoolEntry {
  std::string file;
  std::int64_t first = 0;
  std::int64_t count = 0;
  std::uint64_t bytes = 0;
  std::string sha256;
};

// Writes index.h5 (virtual /images, /labels with fill -1, /teacher_logits,
// /source_index with fill -1) in `directory`.
void write_pool_index(const std::string& directory, const std::vector<PoolEntry>& entries,
                      std::int64_t total, const std::vector<std::int64_t>& image_shape,
                      std::int64_t classes, bool logits, bool source_index = false);

// What manifest.json says of a pool besides its shards (the readers use total,
// classes and teacher_logits; the rest is for people and for reruns).
struct PoolDescription {
  std::int64_t total = 0;
  std::int64_t block = 0;  // global indices per shard (the last may be shorter)
  std::int64_t classes = 0;
  std::vector<std::int64_t> image_shape;  // C, H, W
  bool teacher_logits = false;
  bool source_index = false;
  std::string settings_hash;
  Json settings;
  // Who made the shards of this run: {"world_size", "threads_per_rank", ...}; shards
  // in `made` were written by rank (block number mod world_size), the others by an
  // earlier run. See README "Reproducibility" for which layouts give equal bytes.
  Json layout;
  std::vector<std::string> made;
};

// Rank 0, after every shard is written: checksums each shard of `directory`, then
// writes index.h5 and, last, manifest.json (whose presence marks the pool complete).
void commit_pool(const std::string& directory, const PoolDescription& pool);

// A verified pool, read by ranges (whole shards, in memory).
class SyntheticPool {
 public:
  // Verifies manifest.json: every shard present with its size and sha256; errors name the shard.
  static SyntheticPool open(const std::string& directory);

  std::int64_t size() const { return total_; }
  std::int64_t classes() const { return classes_; }
  bool has_logits() const { return logits_; }
  const Json& manifest() const { return manifest_; }
  const std::string& directory() const { return directory_; }

  // Rows [begin, begin + count) as images and labels (and logits when present and asked).
  data::ImageSet read(std::int64_t begin, std::int64_t count, at::Tensor* logits = nullptr) const;

 private:
  std::string directory_;
  Json manifest_;
  std::vector<PoolEntry> entries_;
  std::int64_t total_ = 0;
  std::int64_t classes_ = 0;
  bool logits_ = false;
};

}  // namespace kr::io
