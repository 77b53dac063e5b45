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

// Float images (B, C, H, W) moved so that out(y, x) = in(y + dy, x + dx), pixels from
// outside filled as the training crop's zero padding (-1 after to_float).
at::Tensor shift_images(const at::Tensor& images, int dy, int dx);

// Mixup between neighbouring rows (Zhang et al. 2018), used by distillation as
// in "function matching" (Beyer et al. 2022): row b becomes
// lambda_b * x_b + (1 - lambda_b) * x_{b xor 1}, lambda_b ~ Beta(alpha, alpha)
// drawn from the stream keyed by (seed, mix, epoch, keys[b]). A batch of odd
// size leaves its last row as it is (lambda 1, its own partner). Partners are
// neighbours within the batch, so a global batch cut into even rank slices
// mixes the same pairs at any rank count.
struct Mix {
  at::Tensor lambda;   // (B) float32
  at::Tensor partner;  // (B) int64: row mixed into each row
};
Mix mix_pairs(at::Tensor& batch, const std::vector<std::int64_t>& keys, double alpha,
              std::uint64_t seed, std::uint64_t epoch);

at::Tensor gather_labels(const ImageSet& set, const std::vector<std::int64_t>& indices);

}  // namespace kr::data
