// Real data set sources that `kr prepare` ingests: IDX directories, CIFAR binary
// batches, MedMNIST .npz archives, and existing canonical HDF5 files.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kr/data/image_set.hpp"

namespace kr::io {

// Debian's dataset-fashion-mnist: the default source.
constexpr const char* kDefaultSource = "/usr/share/datasets/fashion-mnist";

struct SourceOptions {
  std::string path = kDefaultSource;
  std::string format = "auto";  // auto, idx, cifar10, cifar100, npz, h5
  std::string name;             // empty: derived from the path
  std::string hflip = "auto";   // auto, yes, no
  // 0: a known set's classes, else 1 + the highest label, refused when that leaves a
  // class without a train image (a stray label would make classes that do not exist).
  std::int64_t classes = 0;
};

struct Source {
  data::DatasetInfo info;  // name, classes, class names, shape, hflip, source_sha256
  data::ImageSet train;
  std::optional<data::ImageSet> val;
  data::ImageSet test;
  std::vector<std::pair<std::string, std::string>> files;  // (path, sha256)
};

Source load_source(const SourceOptions& options);

// The format `auto` resolves to for `path`.
std::string detect_format(const std::string& path);

}  // namespace kr::io
