// Batch assembly with keyed per-sample augmentation. See Note [Keyed random streams].
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "kr/data/image_set.hpp"

namespace kr::data {

struct Augment {
  int crop_padding = 0;  // random crop after zero padding by this many pixels per side
  bool hflip = false;
};

// Pixels scaled to [-1, 1]: x / 127.5 - 1.
at::Tensor to_float(const at::Tensor& images_uint8);

// Float batch (B, C, H, W) of rows `indices`, each augmented from the stream keyed by
// (seed, purpose, epoch, global index). Pass Augment{} for no augmentation. The
// global index is the row index unless `keys` gives one per row (a window of a
// larger array, such as one part of a synthetic pool).
at::Tensor assemble_batch(const ImageSet& set, const std::vector<std::int64_t>& indices,
                          const Augment& augment, std::uint64_t seed, std::uint64_t epoch,
                          const std::vector<std::int64_t>* keys = nullptr);

at::Tensor gather_labels(const ImageSet& set, const std::vector<std::int64_t>& indices);

}  // namespace kr::data
