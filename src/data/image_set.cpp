#include "kr/data/image_set.hpp"

#include <torch/torch.h>

#include "kr/core/cost.hpp"
#include "kr/core/error.hpp"

namespace kr::data {

ImageSet take(const ImageSet& set, const std::vector<std::int64_t>& indices) {
  const cost::Scope data(cost::Part::data);
  auto index = torch::tensor(indices, torch::kInt64);
  return ImageSet{set.images.index_select(0, index).contiguous(),
                  set.labels.index_select(0, index).contiguous()};
}

void check_image_set(const ImageSet& set, std::int64_t classes, const std::string& what) {
  if (!set.images.defined() || !set.labels.defined())
    throw Error(what + ": missing images or labels");
  if (set.images.dim() != 4) {
    throw Error(what + ": images must be (N, C, H, W), found " + std::to_string(set.images.dim()) +
                " dimensions");
  }
  if (set.images.scalar_type() != torch::kUInt8) throw Error(what + ": images must be uint8");
  if (set.labels.dim() != 1 || set.labels.scalar_type() != torch::kInt64) {
    throw Error(what + ": labels must be a 1-D int64 array");
  }
  if (set.images.size(0) != set.labels.size(0)) {
    throw Error(what + ": " + std::to_string(set.images.size(0)) + " images but " +
                std::to_string(set.labels.size(0)) + " labels");
  }
  if (set.labels.numel() == 0) return;
  const auto low = set.labels.min().item<std::int64_t>();
  const auto high = set.labels.max().item<std::int64_t>();
  if (low < 0 || high >= classes) {
    throw Error(what + ": label out of range: found " + std::to_string(low < 0 ? low : high) +
                ", expected 0.." + std::to_string(classes - 1));
  }
}

std::vector<std::int64_t> class_counts(const at::Tensor& labels, std::int64_t classes) {
  std::vector<std::int64_t> counts(classes, 0);
  auto contiguous = labels.contiguous();
  const auto* label = contiguous.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < contiguous.numel(); ++i) {
    if (label[i] >= 0 && label[i] < classes) ++counts[label[i]];
  }
  return counts;
}

}  // namespace kr::data
