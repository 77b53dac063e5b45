// What `kr audit` and `kr generate --reid-filter` share: real and synthetic images as
// rows of the memorisation search (Note [Memorisation audit]), and the
// re-identification filter.
//
// Note [Re-identification filter]
// Privacy Distillation's filter (Fernandez et al. 2023): a candidate whose nearest
// real train image is nearer than the Q-th percentile of the real val images' own
// nearest-train distances is dropped as re-identifiable. The threshold is a selection,
// so it comes from val, never from test. Distances as the audit's: teacher features
// (cosine) by default, or pixels (L2). It is applied to each candidate block after the
// confidence filter (Note [Confidence filter]), so the pool stays class-balanced,
// deterministic and the same for any rank count; a class that loses candidates to it
// draws more candidate blocks.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "kr/core/json.hpp"
#include "kr/data/image_set.hpp"
#include "kr/gen/quality.hpp"
#include "kr/privacy/memorisation.hpp"

namespace kr::comm {
class Communicator;
}

namespace kr::steps {

// uint8 images as L2 search rows of pixels in [0, 1].
at::Tensor pixel_rows(const at::Tensor& images);
// Collective. The classifier's features of a whole real set (each rank a slice), as
// cosine search rows, on every rank.
at::Tensor feature_rows(comm::Communicator& comm, const gen::ClassifierView& view,
                        const data::ImageSet& set);
// This process's images' features, in batches, as cosine search rows (dims: their width,
// for an empty set).
at::Tensor local_feature_rows(const gen::ClassifierView& view, const at::Tensor& images,
                              std::int64_t dims);

class ReidFilter {
 public:
  // Collective. `view` is needed for the feature space (null for pixels);
  // percentile in (0, 100).
  ReidFilter(comm::Communicator& comm, const data::Dataset& dataset,
             const gen::ClassifierView* view, privacy::Distance space, double percentile);

  double threshold() const { return threshold_; }
  // Positions (int64) of the images at least threshold() from every train image.
  at::Tensor keep(const at::Tensor& images) const;
  // The settings a pool records: space, percentile and threshold.
  Json settings() const;

 private:
  at::Tensor rows(const at::Tensor& images) const;
  privacy::Distance space_;
  double percentile_;
  double threshold_ = 0.0;
  std::int64_t dims_ = 0;
  at::Tensor train_;
  gen::ClassifierView view_;
  Json val_quantiles_;
};

}  // namespace kr::steps
