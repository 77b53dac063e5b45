// CIFAR-10 and CIFAR-100 binary batches.
#pragma once

#include <string>
#include <vector>

#include "kr/data/image_set.hpp"

namespace kr::io {

// Records: 1 label byte + 3072 pixels (CIFAR-10), or coarse + fine label bytes + 3072
// pixels (CIFAR-100; the fine label is used). Several files are concatenated.
data::ImageSet read_cifar_batches(const std::vector<std::string>& paths, int classes);

}  // namespace kr::io
