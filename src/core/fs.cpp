#include "kr/core/fs.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "kr/core/cost.hpp"
#include "kr/core/error.hpp"

namespace kr {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  const cost::Scope io(cost::Part::io);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) throw Error(path + ": read error");
  return out.str();
}

std::uint64_t file_size(const std::string& path) {
  std::error_code ec;
  auto size = fs::file_size(path, ec);
  if (ec) throw Error(path + ": cannot stat (" + ec.message() + ")");
  return size;
}

bool path_exists(const std::string& path) {
  std::error_code ec;
  return fs::exists(path, ec);
}

void make_dirs(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw Error(path + ": cannot create directory (" + ec.message() + ")");
}

static void fsync_fd_of(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags);
  if (fd < 0) throw Error(path + ": cannot open for fsync (" + std::strerror(errno) + ")");
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (rc != 0 && saved != EINVAL)
    throw Error(path + ": fsync failed (" + std::strerror(saved) + ")");
}

void fsync_file(const std::string& path) {
  fsync_fd_of(path, O_RDONLY);
}

void fsync_dir(const std::string& path) {
  fsync_fd_of(path.empty() ? "." : path, O_RDONLY | O_DIRECTORY);
}

std::string parent_dir(const std::string& path) {
  auto parent = fs::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

void rename_durable(const std::string& from, const std::string& to) {
  if (std::rename(from.c_str(), to.c_str()) != 0) {
    throw Error(from + ": cannot rename to " + to + " (" + std::strerror(errno) + ")");
  }
  fsync_dir(parent_dir(to));
}

std::string free_space_text(const std::string& path) {
  struct statvfs stats {};
  if (::statvfs(parent_dir(path).c_str(), &stats) != 0) return "free space unknown";
  const double bytes = static_cast<double>(stats.f_bavail) * static_cast<double>(stats.f_frsize);
  char text[64];
  if (bytes >= 1e9) {
    std::snprintf(text, sizeof text, "%.1f GB free", bytes / 1e9);
  } else if (bytes >= 1e6) {
    std::snprintf(text, sizeof text, "%.1f MB free", bytes / 1e6);
  } else {
    std::snprintf(text, sizeof text, "%.0f kB free", bytes / 1e3);
  }
  return std::string(text) + " on " + parent_dir(path);
}

namespace {
[[noreturn]] void throw_write_error(const std::string& path, const char* what, int error) {
  throw Error(path + ": " + what + " failed (" + std::strerror(error) + "; " +
              free_space_text(path) + ")");
}
}  // namespace

void write_file_durable(const std::string& path, const std::string& bytes) {
  const cost::Scope io(cost::Part::io);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) throw_write_error(path, "create", errno);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t wrote = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) {
      const int error = wrote < 0 ? errno : ENOSPC;
      ::close(fd);
      throw_write_error(path, "write", error);
    }
    done += static_cast<std::size_t>(wrote);
  }
  if (::fsync(fd) != 0 && errno != EINVAL) {
    const int error = errno;
    ::close(fd);
    throw_write_error(path, "fsync", error);
  }
  if (::close(fd) != 0) throw_write_error(path, "close", errno);
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  PendingFile pending(path);
  write_file_durable(pending.temp_path(), bytes);
  pending.commit();
}

PendingFile::PendingFile(std::string final_path)
    : final_path_(std::move(final_path)),
      temp_path_(final_path_ + ".tmp." + std::to_string(::getpid())) {}

PendingFile::~PendingFile() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(temp_path_, ec);
  }
}

void PendingFile::commit() {
  if (fs::is_directory(temp_path_)) {
    fsync_dir(temp_path_);
  } else {
    fsync_file(temp_path_);
  }
  rename_durable(temp_path_, final_path_);
  committed_ = true;
}

}  // namespace kr
