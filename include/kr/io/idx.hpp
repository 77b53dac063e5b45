// IDX files (MNIST, Fashion-MNIST, KMNIST, EMNIST), raw or gzip-compressed.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace kr::io {

// Whole file, gunzipped when it starts with the gzip magic.
std::string read_maybe_gzip(const std::string& path);

// uint8 (N, 1, H, W). `transpose` swaps H and W (EMNIST stores images transposed).
at::Tensor read_idx_images(const std::string& path, bool transpose = false);
// int64 (N).
at::Tensor read_idx_labels(const std::string& path);

}  // namespace kr::io
