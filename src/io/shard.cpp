#include "kr/io/shard.hpp"

#include <torch/torch.h>

#include <algorithm>

#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/core/sha256.hpp"
#include "kr/io/h5.hpp"

namespace kr::io {

std::string shard_file_name(std::int64_t first, std::int64_t count) {
  return "shard_" + std::to_string(first) + "_" + std::to_string(count) + ".h5";
}

std::string shard_content_sha256(const Shard& shard) {
  Sha256 hash;
  auto update = [&](const at::Tensor& tensor) {
    if (!tensor.defined()) return;
    auto data = tensor.contiguous();
    hash.update(data.data_ptr(), data.nbytes());
  };
  update(shard.images);
  update(shard.labels);
  update(shard.teacher_logits);
  update(shard.source_index);
  return hash.hex_digest();
}

void write_shard(const std::string& path, const Shard& shard, const ShardInfo& info,
                 const Json& settings) {
  PendingFile pending(path);
  {
    auto file = h5::File::create(pending.temp_path());
    const auto n = shard.images.size(0);
    const auto image_bytes = std::max<std::int64_t>(
        1, shard.images.size(1) * shard.images.size(2) * shard.images.size(3));
    // About 512 KiB of images per chunk.
    const hsize_t rows =
        static_cast<hsize_t>(std::max<std::int64_t>(1, (512 * 1024) / image_bytes));
    h5::WriteOptions images_options{
        {rows, static_cast<hsize_t>(shard.images.size(1)),
         static_cast<hsize_t>(shard.images.size(2)), static_cast<hsize_t>(shard.images.size(3))},
        4,
        true};
    h5::write_tensor(file, "images", shard.images.contiguous(), images_options);
    h5::write_tensor(
        file, "labels", shard.labels.contiguous(),
        h5::WriteOptions{{static_cast<hsize_t>(std::max<std::int64_t>(1, n))}, 4, true});
    if (shard.teacher_logits.defined()) {
      h5::write_tensor(
          file, "teacher_logits", shard.teacher_logits.contiguous(),
          h5::WriteOptions{{rows, static_cast<hsize_t>(shard.teacher_logits.size(1))}, 4, true});
    }
    if (shard.source_index.defined()) {
      h5::write_tensor(
          file, "source_index", shard.source_index.contiguous(),
          h5::WriteOptions{{static_cast<hsize_t>(std::max<std::int64_t>(1, n))}, 4, true});
    }
    h5::set_attr(file, "/", "schema_version", kShardSchemaVersion);
    h5::set_attr(file, "/", "first_index", info.first);
    h5::set_attr(file, "/", "count", info.count);
    h5::set_attr(file, "/", "settings_hash", info.settings_hash);
    h5::set_attr(file, "/", "generator_sha256", info.generator_sha256);
    h5::set_attr(file, "/", "seed", static_cast<std::int64_t>(info.seed));
    h5::set_attr(file, "/", "settings", settings.dump());
    h5::set_attr(file, "/", "content_sha256", shard_content_sha256(shard));
    file.close();
  }
  pending.commit();
}

Shard read_shard(const std::string& path, std::int64_t first, std::int64_t count,
                 const std::string& settings_hash) {
  if (!path_exists(path)) throw Error(path + ": shard missing");
  auto file = h5::File::open_read(path);
  auto fail = [&](const std::string& what) -> void { throw Error(path + ": " + what); };
  if (h5::get_int_attr(file, "/", "schema_version") != kShardSchemaVersion)
    fail("unsupported shard schema");
  const auto stored_first = h5::get_int_attr(file, "/", "first_index");
  const auto stored_count = h5::get_int_attr(file, "/", "count");
  if (first >= 0 && stored_first != first)
    fail("holds indices from " + std::to_string(stored_first) + ", expected " +
         std::to_string(first));
  if (count >= 0 && stored_count != count)
    fail("holds " + std::to_string(stored_count) + " samples, expected " + std::to_string(count));
  if (!settings_hash.empty() && h5::get_string_attr(file, "/", "settings_hash") != settings_hash)
    fail("was made with other settings");
  Shard shard;
  shard.images = h5::read_tensor(file, "images", torch::kUInt8, 4);
  shard.labels = h5::read_tensor(file, "labels", torch::kInt64, 1);
  if (h5::exists(file, "teacher_logits"))
    shard.teacher_logits = h5::read_tensor(file, "teacher_logits", torch::kFloat32, 2);
  if (h5::exists(file, "source_index"))
    shard.source_index = h5::read_tensor(file, "source_index", torch::kInt64, 1);
  if (shard.images.size(0) != stored_count || shard.labels.size(0) != stored_count ||
      (shard.teacher_logits.defined() && shard.teacher_logits.size(0) != stored_count) ||
      (shard.source_index.defined() && shard.source_index.size(0) != stored_count))
    fail("dataset lengths do not match its count " + std::to_string(stored_count));
  if (shard_content_sha256(shard) != h5::get_string_attr(file, "/", "content_sha256"))
    fail("content does not match its stored sha256 (corrupt)");
  return shard;
}

std::string check_shard(const std::string& path, std::int64_t first, std::int64_t count,
                        const std::string& settings_hash) {
  try {
    read_shard(path, first, count, settings_hash);
    return "";
  } catch (const std::exception& error) {
    return error.what();
  }
}

std::vector<std::int64_t> shards_to_make(const std::string& directory, std::int64_t total,
                                         std::int64_t block, int rank, int world,
                                         const std::string& settings_hash, std::int64_t& kept) {
  kept = 0;
  std::vector<std::int64_t> todo;
  const std::int64_t blocks = shard_count(total, block);
  for (std::int64_t b = rank; b < blocks; b += world) {
    const std::int64_t first = b * block;
    const std::int64_t n = std::min(block, total - first);
    const std::string path = directory + "/" + shard_file_name(first, n);
    if (path_exists(path)) {
      const auto problem = check_shard(path, first, n, settings_hash);
      if (problem.empty()) {
        ++kept;
        continue;
      }
      log::warn("generate: remaking " + shard_file_name(first, n) + ": " + problem);
    }
    todo.push_back(b);
  }
  return todo;
}

void write_pool_index(const std::string& directory, const std::vector<PoolEntry>& entries,
                      std::int64_t total, const std::vector<std::int64_t>& image_shape,
                      std::int64_t classes, bool logits, bool source_index) {
  PendingFile pending(directory + "/index.h5");
  {
    auto file = h5::File::create(pending.temp_path());
    auto sources = [&](const std::string& dataset) {
      std::vector<h5::VirtualSource> list;
      for (const auto& entry : entries)
        list.push_back({entry.file, dataset, static_cast<hsize_t>(entry.first),
                        static_cast<hsize_t>(entry.count)});
      return list;
    };
    std::vector<hsize_t> image_dims = {static_cast<hsize_t>(total)};
    for (auto d : image_shape) image_dims.push_back(static_cast<hsize_t>(d));
    h5::write_virtual(file, "images", torch::kUInt8, image_dims, sources("images"), 0);
    h5::write_virtual(file, "labels", torch::kInt64, {static_cast<hsize_t>(total)},
                      sources("labels"), -1);
    if (logits)
      h5::write_virtual(file, "teacher_logits", torch::kFloat32,
                        {static_cast<hsize_t>(total), static_cast<hsize_t>(classes)},
                        sources("teacher_logits"), 0);
    if (source_index)
      h5::write_virtual(file, "source_index", torch::kInt64, {static_cast<hsize_t>(total)},
                        sources("source_index"), -1);
    h5::set_attr(file, "/", "schema_version", kShardSchemaVersion);
    h5::set_attr(file, "/", "count", total);
    h5::set_attr(file, "/", "note",
                 std::string("virtual view over the shards; verify manifest.json first: a missing "
                             "shard reads as zeros and labels as -1"));
    file.close();
  }
  pending.commit();
}

void commit_pool(const std::string& directory, const PoolDescription& pool) {
  const int world = pool.layout.value("world_size", 1);
  std::vector<PoolEntry> entries;
  Json shards = Json::array();
  for (std::int64_t first = 0, b = 0; first < pool.total; first += pool.block, ++b) {
    const std::int64_t n = std::min(pool.block, pool.total - first);
    PoolEntry entry{shard_file_name(first, n), first, n, 0, ""};
    const std::string path = directory + "/" + entry.file;
    if (!path_exists(path)) throw Error(path + ": shard missing after generation");
    entry.bytes = file_size(path);
    entry.sha256 = sha256_file(path);
    const bool made = std::find(pool.made.begin(), pool.made.end(), entry.file) != pool.made.end();
    shards.push_back(Json{{"file", entry.file},
                          {"first", first},
                          {"count", n},
                          {"bytes", entry.bytes},
                          {"sha256", entry.sha256},
                          {"written_by_rank", made ? Json(b % world) : Json("an earlier run")}});
    entries.push_back(std::move(entry));
  }
  write_pool_index(directory, entries, pool.total, pool.image_shape, pool.classes,
                   pool.teacher_logits, pool.source_index);
  Json manifest{{"schema_version", kShardSchemaVersion},
                {"total", pool.total},
                {"classes", pool.classes},
                {"shape", pool.image_shape},
                {"teacher_logits", pool.teacher_logits},
                {"source_index", pool.source_index},
                {"settings_hash", pool.settings_hash},
                {"settings", pool.settings},
                {"layout", pool.layout},
                {"shards", shards}};
  write_file_atomic(directory + "/manifest.json", manifest.dump(2) + "\n");
}

SyntheticPool SyntheticPool::open(const std::string& directory) {
  SyntheticPool pool;
  pool.directory_ = directory;
  const std::string manifest_path = directory + "/manifest.json";
  if (!path_exists(manifest_path))
    throw Error(directory +
                ": not a complete synthetic pool (no manifest.json; run `kr generate`)");
  try {
    pool.manifest_ = Json::parse(read_file(manifest_path));
    pool.total_ = pool.manifest_.at("total");
    pool.classes_ = pool.manifest_.at("classes");
    pool.logits_ = pool.manifest_.at("teacher_logits");
    for (const auto& shard : pool.manifest_.at("shards")) {
      pool.entries_.push_back(PoolEntry{shard.at("file"), shard.at("first"), shard.at("count"),
                                        shard.at("bytes"), shard.at("sha256")});
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& error) {
    throw Error(manifest_path + ": " + error.what());
  }
  std::int64_t expected = 0;
  for (const auto& entry : pool.entries_) {
    const std::string path = directory + "/" + entry.file;
    if (entry.first != expected) throw Error(manifest_path + ": shards do not tile the pool");
    expected += entry.count;
    if (!path_exists(path)) throw Error(path + ": shard listed in the manifest is missing");
    const auto size = file_size(path);
    if (size != entry.bytes)
      throw Error(path + ": shard is " + std::to_string(size) + " bytes, the manifest says " +
                  std::to_string(entry.bytes) + " (truncated or replaced)");
    if (sha256_file(path) != entry.sha256)
      throw Error(path + ": sha256 does not match the manifest (corrupt or replaced)");
  }
  if (expected != pool.total_) throw Error(manifest_path + ": shards do not cover the pool");
  return pool;
}

data::ImageSet SyntheticPool::read(std::int64_t begin, std::int64_t count,
                                   at::Tensor* logits) const {
  if (begin < 0 || count < 0 || begin + count > total_)
    throw Error(directory_ + ": rows [" + std::to_string(begin) + ", " +
                std::to_string(begin + count) + ") outside the pool of " + std::to_string(total_));
  std::vector<at::Tensor> images, labels, scores;
  for (const auto& entry : entries_) {
    const auto lo = std::max(begin, entry.first);
    const auto hi = std::min(begin + count, entry.first + entry.count);
    if (lo >= hi) continue;
    auto shard = read_shard(directory_ + "/" + entry.file, entry.first, entry.count);
    images.push_back(shard.images.narrow(0, lo - entry.first, hi - lo));
    labels.push_back(shard.labels.narrow(0, lo - entry.first, hi - lo));
    if (logits) {
      if (!shard.teacher_logits.defined())
        throw Error(directory_ + "/" + entry.file + ": no teacher logits stored");
      scores.push_back(shard.teacher_logits.narrow(0, lo - entry.first, hi - lo));
    }
  }
  data::ImageSet set;
  set.images = torch::cat(images).contiguous();
  set.labels = torch::cat(labels).contiguous();
  if (logits) *logits = torch::cat(scores).contiguous();
  return set;
}

}  // namespace kr::io
