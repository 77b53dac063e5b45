// In-memory labelled images: the unit every reader produces and every step consumes.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kr::data {

struct ImageSet {
  at::Tensor images;  // uint8 (N, C, H, W), contiguous
  at::Tensor labels;  // int64 (N)

  std::int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

struct DatasetInfo {
  std::string name;
  std::int64_t classes = 0;
  std::vector<std::string> class_names;
  std::int64_t channels = 0;
  std::int64_t height = 0;
  std::int64_t width = 0;
  bool hflip = false;  // horizontal flips are a valid augmentation for this data
  std::string source_sha256;
  std::uint64_t split_seed = 0;
};

struct Dataset {
  DatasetInfo info;
  ImageSet train;
  ImageSet val;
  ImageSet test;
};

// Rows `indices` of `set`, in that order.
ImageSet take(const ImageSet& set, const std::vector<std::int64_t>& indices);

// Throws kr::Error naming `what` when shapes, dtypes or labels are inconsistent.
void check_image_set(const ImageSet& set, std::int64_t classes, const std::string& what);

// Images per class (length `classes`).
std::vector<std::int64_t> class_counts(const at::Tensor& labels, std::int64_t classes);

}  // namespace kr::data
