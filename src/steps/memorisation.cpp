#include "kr/steps/memorisation.hpp"

#include <torch/torch.h>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/data/augment.hpp"

namespace kr::steps {

at::Tensor pixel_rows(const at::Tensor& images) {
  return privacy::search_rows(images.to(torch::kFloat32).div_(255.0), privacy::Distance::l2);
}

at::Tensor feature_rows(comm::Communicator& comm, const gen::ClassifierView& view,
                        const data::ImageSet& set) {
  return privacy::search_rows(gen::real_reference(comm, view, set, 500).features,
                              privacy::Distance::cosine);
}

at::Tensor local_feature_rows(const gen::ClassifierView& view, const at::Tensor& images,
                              std::int64_t dims) {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> parts{torch::empty({0, dims}, torch::kFloat32)};
  for (std::int64_t begin = 0; begin < images.size(0); begin += 500) {
    const auto n = std::min<std::int64_t>(500, images.size(0) - begin);
    parts.push_back(privacy::search_rows(view.features(data::to_float(images.narrow(0, begin, n))),
                                         privacy::Distance::cosine));
  }
  return torch::cat(parts, 0);
}

ReidFilter::ReidFilter(comm::Communicator& comm, const data::Dataset& dataset,
                       const gen::ClassifierView* view, privacy::Distance space, double percentile)
    : space_(space), percentile_(percentile) {
  if (!(percentile > 0.0 && percentile < 100.0))
    throw UsageError("--reid-filter must be a percentile in (0, 100), got " +
                     std::to_string(percentile));
  if (dataset.val.size() == 0)
    throw UsageError("--reid-filter needs val images: its threshold comes from val");
  at::Tensor val;
  if (space == privacy::Distance::cosine) {
    if (!view) throw UsageError("--reid-filter in feature space needs a teacher");
    view_ = *view;
    train_ = feature_rows(comm, view_, dataset.train);
    val = feature_rows(comm, view_, dataset.val);
  } else {
    train_ = pixel_rows(dataset.train.images);
    val = pixel_rows(dataset.val.images);
  }
  dims_ = train_.size(1);
  // Every rank computes the same val distances: the threshold is identical everywhere.
  const auto nearest = privacy::nearest_neighbours(val, train_, 1, space_).distance.select(1, 0);
  const auto at = privacy::quantiles(nearest, {percentile_ / 100.0, 0.05, 0.5});
  threshold_ = at[0];
  val_quantiles_ = Json{{"p05", at[1]}, {"p50", at[2]}};
}

at::Tensor ReidFilter::rows(const at::Tensor& images) const {
  return space_ == privacy::Distance::cosine ? local_feature_rows(view_, images, dims_)
                                             : pixel_rows(images);
}

at::Tensor ReidFilter::keep(const at::Tensor& images) const {
  if (images.size(0) == 0) return torch::empty({0}, torch::kInt64);
  const auto nearest =
      privacy::nearest_neighbours(rows(images), train_, 1, space_).distance.select(1, 0);
  return nearest.ge(threshold_).nonzero().view(-1);
}

Json ReidFilter::settings() const {
  return Json{{"space", privacy::distance_name(space_)},
              {"percentile", percentile_},
              {"threshold", threshold_},
              {"val_nearest_train", val_quantiles_},
              {"threshold_from", "val: nearest train distance of each val image"}};
}

}  // namespace kr::steps
