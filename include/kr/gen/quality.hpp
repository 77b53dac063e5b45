// Generator quality against a trained classifier (the teacher): agreement, a Frechet
// distance and per-class precision and recall (k-nearest-neighbour manifolds), all in
// the teacher's penultimate-feature space. Not Inception FID.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "kr/comm/communicator.hpp"
#include "kr/core/json.hpp"
#include "kr/data/image_set.hpp"
#include "kr/gen/sampler.hpp"

namespace kr::gen {

// A classifier seen as (features, logits) of float images in [-1, 1].
struct ClassifierView {
  std::function<at::Tensor(const at::Tensor&)> features;
  std::function<at::Tensor(const at::Tensor&)> head;  // features -> logits
};

// Running first and second moments of feature vectors, in float64.
struct FeatureMoments {
  at::Tensor sum;    // (d)
  at::Tensor outer;  // (d, d)
  std::int64_t count = 0;
  void add(const at::Tensor& features);
  at::Tensor mean() const;
  at::Tensor covariance() const;  // unbiased
};

// ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), via symmetric eigendecompositions.
double frechet_distance(const at::Tensor& mean1, const at::Tensor& cov1, const at::Tensor& mean2,
                        const at::Tensor& cov2);

// Kynkaanniemi et al. 2019, "Improved precision and recall metric for assessing
// generative models": each set's manifold is the union of balls around its points
// reaching their k-th nearest neighbour in the same set. Precision: the share of
// `fake` points inside the real manifold; recall: the share of `real` points inside
// the fake manifold. Rows are feature vectors; both sets need more than k rows.
struct PrecisionRecall {
  double precision = 0.0;
  double recall = 0.0;
};
PrecisionRecall manifold_precision_recall(const at::Tensor& real, const at::Tensor& fake,
                                          std::int64_t k = 3);

// The real reference the samples are scored against: the classifier's features of a
// real set (val), every rank holding all of them, with their labels and moments.
struct RealReference {
  FeatureMoments moments;
  at::Tensor features;  // (N, d) float64
  at::Tensor labels;    // (N) int64
};

// Collective. Features over `set`, each rank computing a slice.
RealReference real_reference(comm::Communicator& comm, const ClassifierView& classifier,
                             const data::ImageSet& set, std::int64_t batch);

struct QualityReport {
  std::int64_t samples = 0;
  double agreement = 0.0;  // share of samples the classifier assigns to their conditioning class
  double frechet = 0.0;    // teacher-space Frechet distance to the real reference set
  std::vector<std::int64_t> predicted_counts;  // samples the classifier puts in each class
  std::vector<double> class_agreement;         // agreement per conditioning class
  // manifold_precision_recall per class (k = 3), the samples conditioned on c against
  // the real images of class c, the larger set cut to the smaller one's size (the
  // measure depends on set size); the means are over the classes.
  std::vector<double> class_precision, class_recall;
  std::vector<std::int64_t> class_compared;  // points per set in each class's measure
  double precision = 0.0, recall = 0.0;
  Json to_json() const;
};

// Collective. Samples global indices [0, samples) (rounded up to whole sample
// batches, dealt to ranks batch by batch) and scores them.
QualityReport measure_quality(comm::Communicator& comm, Sampler& sampler, std::uint64_t seed,
                              std::int64_t samples, std::int64_t sample_batch,
                              const ClassifierView& classifier, const RealReference& real);

// Collective. uint8 grid with one row per class and `per_class` columns; fixed
// indices (column j of class c is global index j * K + c), so successive grids
// compare. The images are sampled in parts over the ranks; every rank gets the grid.
at::Tensor class_grid(comm::Communicator& comm, Sampler& sampler, std::int64_t per_class,
                      std::uint64_t seed);

}  // namespace kr::gen
