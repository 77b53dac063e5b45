// Small files in the real formats, written by the tests themselves.
#pragma once

#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace kr::test {

// A fresh directory under the system temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("kr_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string path() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_bytes(const std::string& path, const std::string& bytes, bool gzip = false) {
  if (gzip) {
    gzFile file = gzopen(path.c_str(), "wb");
    gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(file);
    return;
  }
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline void put_u32(std::string& out, std::uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((value >> shift) & 0xff));
}

inline std::string idx_images(std::uint32_t count, std::uint32_t height, std::uint32_t width,
                              std::uint32_t seed = 1) {
  std::string out = {0, 0, 8, 3};
  put_u32(out, count);
  put_u32(out, height);
  put_u32(out, width);
  std::mt19937 rng(seed);
  for (std::uint64_t i = 0; i < std::uint64_t{count} * height * width; ++i)
    out.push_back(static_cast<char>(rng() & 0xff));
  return out;
}

inline std::string idx_labels(const std::vector<int>& labels) {
  std::string out = {0, 0, 8, 1};
  put_u32(out, static_cast<std::uint32_t>(labels.size()));
  for (int label : labels) out.push_back(static_cast<char>(label));
  return out;
}

inline std::vector<int> cyclic_labels(int count, int classes) {
  std::vector<int> labels;
  for (int i = 0; i < count; ++i) labels.push_back(i % classes);
  return labels;
}

// An MNIST-style directory: train-{images,labels}-idx*-ubyte and t10k-*.
inline void write_idx_dir(const std::string& dir, int train, int test, int classes, bool gzip) {
  std::filesystem::create_directories(dir);
  const std::string suffix = gzip ? ".gz" : "";
  write_bytes(dir + "/train-images-idx3-ubyte" + suffix, idx_images(train, 28, 28, 1), gzip);
  write_bytes(dir + "/train-labels-idx1-ubyte" + suffix, idx_labels(cyclic_labels(train, classes)),
              gzip);
  write_bytes(dir + "/t10k-images-idx3-ubyte" + suffix, idx_images(test, 28, 28, 2), gzip);
  write_bytes(dir + "/t10k-labels-idx1-ubyte" + suffix, idx_labels(cyclic_labels(test, classes)),
              gzip);
}

// One .npy blob (format 1.0) of `descr`, `shape` and raw payload.
inline std::string npy(const std::string& descr, const std::vector<std::int64_t>& shape,
                       const std::string& payload) {
  std::string dims;
  for (auto d : shape) dims += std::to_string(d) + ", ";
  if (shape.size() > 1) dims.resize(dims.size() - 2);
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  while ((10 + header.size() + 1) % 64 != 0) header.push_back(' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(1);
  out.push_back(0);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  return out + header + payload;
}

}  // namespace kr::test
