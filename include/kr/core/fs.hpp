// File-system helpers for crash-safe outputs.
//
// Note [Rename-based commit]
// Every output that a later step trusts is written under a temporary name in
// the same directory, fsynced, then renamed over its final name, and the
// directory fsynced. A crash leaves either the old file, nothing, or a
// `*.tmp*` file that no reader opens: never a half-written file under the
// final name.
#pragma once

#include <cstdint>
#include <string>

namespace kr {

std::string read_file(const std::string& path);
std::uint64_t file_size(const std::string& path);
bool path_exists(const std::string& path);

// Creates the directory and its parents (mode 0777 & ~umask; kr sets umask 077).
void make_dirs(const std::string& path);

void fsync_file(const std::string& path);
void fsync_dir(const std::string& path);

// Writes bytes to `path` through a temporary file and rename. See Note [Rename-based commit].
// Every write, the fsync and the close are checked: a full disk is an Error naming the
// file and the free space left, and nothing is renamed into place.
void write_file_atomic(const std::string& path, const std::string& bytes);
// Writes `path` in place (create/truncate, write, fsync, close, each checked): for files
// inside a temporary directory that is itself renamed into place.
void write_file_durable(const std::string& path, const std::string& bytes);
// "12 kB free on <directory of path>", for error messages about full disks.
std::string free_space_text(const std::string& path);

// Renames `from` to `to` and fsyncs the parent directory of `to`.
void rename_durable(const std::string& from, const std::string& to);

// A temporary path next to a final one; removed on destruction unless committed.
class PendingFile {
 public:
  explicit PendingFile(std::string final_path);
  ~PendingFile();
  PendingFile(const PendingFile&) = delete;
  PendingFile& operator=(const PendingFile&) = delete;
  const std::string& temp_path() const { return temp_path_; }
  const std::string& final_path() const { return final_path_; }
  void commit();  // fsync + rename over final_path

 private:
  std::string final_path_;
  std::string temp_path_;
  bool committed_ = false;
};

std::string parent_dir(const std::string& path);

}  // namespace kr
