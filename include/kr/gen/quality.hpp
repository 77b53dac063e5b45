// Generator quality against a trained classifier (the teacher): agreement and a
// Frechet distance in the teacher's penultimate-feature space. Not Inception FID.
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
  void allreduce(comm::Communicator& comm);
  at::Tensor mean() const;
  at::Tensor covariance() const;  // unbiased
};

// ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), via symmetric eigendecompositions.
double frechet_distance(const at::Tensor& mean1, const at::Tensor& cov1, const at::Tensor& mean2,
                        const at::Tensor& cov2);

// Collective. Moments of the classifier's features over `set` (each rank a slice).
FeatureMoments real_feature_moments(comm::Communicator& comm, const ClassifierView& classifier,
                                    const data::ImageSet& set, std::int64_t batch);

struct QualityReport {
  std::int64_t samples = 0;
  double agreement = 0.0;  // share of samples the classifier assigns to their conditioning class
  double frechet = 0.0;    // teacher-space Frechet distance to the real reference set
  std::vector<std::int64_t> predicted_counts;  // samples the classifier puts in each class
  std::vector<double> class_agreement;         // agreement per conditioning class
  Json to_json() const;
};

// Collective. Samples global indices [0, samples) (rounded up to whole sample
// batches, dealt to ranks batch by batch) and scores them.
QualityReport measure_quality(comm::Communicator& comm, Sampler& sampler, std::uint64_t seed,
                              std::int64_t samples, std::int64_t sample_batch,
                              const ClassifierView& classifier, const FeatureMoments& real);

// Collective. uint8 grid with one row per class and `per_class` columns; fixed
// indices (column j of class c is global index j * K + c), so successive grids
// compare. The images are sampled in parts over the ranks; every rank gets the grid.
at::Tensor class_grid(comm::Communicator& comm, Sampler& sampler, std::int64_t per_class,
                      std::uint64_t seed);

}  // namespace kr::gen
