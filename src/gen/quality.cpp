#include "kr/gen/quality.hpp"

#include <torch/torch.h>

#include <algorithm>

#include "kr/comm/shard_range.hpp"
#include "kr/core/error.hpp"
#include "kr/data/augment.hpp"
#include "kr/io/png.hpp"

namespace kr::gen {

void FeatureMoments::add(const at::Tensor& features) {
  auto f = features.to(torch::kFloat64);
  if (!sum.defined()) {
    sum = torch::zeros({f.size(1)}, torch::kFloat64);
    outer = torch::zeros({f.size(1), f.size(1)}, torch::kFloat64);
  }
  sum += f.sum(0);
  outer += f.t().mm(f);
  count += f.size(0);
}

void FeatureMoments::allreduce(comm::Communicator& comm) {
  auto n = torch::tensor({count}, torch::kInt64);
  comm.allreduce(n, comm::ReduceOp::sum);
  count = n.item<std::int64_t>();
  comm.allreduce(sum, comm::ReduceOp::sum);
  comm.allreduce(outer, comm::ReduceOp::sum);
}

at::Tensor FeatureMoments::mean() const {
  return sum / static_cast<double>(count);
}

at::Tensor FeatureMoments::covariance() const {
  auto mu = mean();
  return (outer - static_cast<double>(count) * torch::outer(mu, mu)) /
         static_cast<double>(std::max<std::int64_t>(1, count - 1));
}

double frechet_distance(const at::Tensor& mean1, const at::Tensor& cov1, const at::Tensor& mean2,
                        const at::Tensor& cov2) {
  auto symmetric_sqrt = [](const at::Tensor& matrix) {
    auto [values, vectors] = torch::linalg::eigh(0.5 * (matrix + matrix.t()), "L");
    return vectors.mm(torch::diag(values.clamp_min(0).sqrt())).mm(vectors.t());
  };
  auto root1 = symmetric_sqrt(cov1);
  auto middle = root1.mm(cov2).mm(root1);
  auto eigenvalues = std::get<0>(torch::linalg::eigh(0.5 * (middle + middle.t()), "L"));
  const double trace_sqrt = eigenvalues.clamp_min(0).sqrt().sum().item<double>();
  const double mean_term = (mean1 - mean2).pow(2).sum().item<double>();
  return mean_term + cov1.trace().item<double>() + cov2.trace().item<double>() - 2.0 * trace_sqrt;
}

FeatureMoments real_feature_moments(comm::Communicator& comm, const ClassifierView& classifier,
                                    const data::ImageSet& set, std::int64_t batch) {
  torch::NoGradGuard no_grad;
  FeatureMoments moments;
  const auto range = comm::shard_range(set.size(), comm.rank(), comm.size());
  for (std::int64_t begin = range.begin; begin < range.end; begin += batch) {
    const auto count = std::min(batch, range.end - begin);
    moments.add(classifier.features(data::to_float(set.images.narrow(0, begin, count))));
  }
  if (!moments.sum.defined()) {  // a rank with an empty slice still joins the reduction
    auto probe = classifier.features(data::to_float(set.images.narrow(0, 0, 1)));
    moments.sum = torch::zeros({probe.size(1)}, torch::kFloat64);
    moments.outer = torch::zeros({probe.size(1), probe.size(1)}, torch::kFloat64);
  }
  moments.allreduce(comm);
  return moments;
}

Json QualityReport::to_json() const {
  return Json{{"samples", samples},
              {"teacher_agreement", agreement},
              {"frechet_teacher_features", frechet},
              {"frechet_note",
               "Frechet distance in the teacher's penultimate-feature space against "
               "real val images; not Inception FID"},
              {"teacher_predicted_counts", predicted_counts},
              {"class_agreement", class_agreement}};
}

QualityReport measure_quality(comm::Communicator& comm, Sampler& sampler, std::uint64_t seed,
                              std::int64_t samples, std::int64_t sample_batch,
                              const ClassifierView& classifier, const FeatureMoments& real) {
  torch::NoGradGuard no_grad;
  const std::int64_t classes = sampler.spec().classes;
  const std::int64_t batches = (samples + sample_batch - 1) / sample_batch;
  FeatureMoments moments;
  auto predicted = torch::zeros({classes}, torch::kInt64);
  auto agreed = torch::zeros({classes}, torch::kInt64);
  auto asked = torch::zeros({classes}, torch::kInt64);
  for (std::int64_t b = comm.rank(); b < batches; b += comm.size()) {
    auto images = sample_range(sampler, b * sample_batch, sample_batch, seed, sample_batch);
    auto wanted = classes_of_range(b * sample_batch, sample_batch, classes);
    auto features = classifier.features(data::to_float(images));
    moments.add(features);
    auto argmax = classifier.head(features).argmax(1);
    predicted += torch::bincount(argmax, {}, classes);
    asked += torch::bincount(wanted, {}, classes);
    agreed += torch::bincount(wanted.masked_select(argmax.eq(wanted)), {}, classes);
  }
  if (!moments.sum.defined()) {
    moments.sum = torch::zeros_like(real.sum);
    moments.outer = torch::zeros_like(real.outer);
  }
  moments.allreduce(comm);
  comm.allreduce(predicted, comm::ReduceOp::sum);
  comm.allreduce(agreed, comm::ReduceOp::sum);
  comm.allreduce(asked, comm::ReduceOp::sum);
  QualityReport report;
  report.samples = moments.count;
  report.agreement = agreed.sum().item<double>() / static_cast<double>(moments.count);
  report.frechet =
      frechet_distance(moments.mean(), moments.covariance(), real.mean(), real.covariance());
  for (std::int64_t c = 0; c < classes; ++c) {
    report.predicted_counts.push_back(predicted[c].item<std::int64_t>());
    report.class_agreement.push_back(agreed[c].item<double>() /
                                     std::max<double>(1.0, asked[c].item<double>()));
  }
  return report;
}

at::Tensor class_grid(comm::Communicator& comm, Sampler& sampler, std::int64_t per_class,
                      std::uint64_t seed) {
  torch::NoGradGuard no_grad;
  const std::int64_t classes = sampler.spec().classes;
  const std::int64_t count = classes * per_class;
  // Image k of the grid (row-major: class k / per_class, column k % per_class) is
  // global index column * K + class. Chunks of the grid are dealt to ranks; each
  // image depends on its index alone, so the grid does not depend on the rank count.
  const auto ranks = static_cast<std::int64_t>(comm.size());
  const std::int64_t chunk = std::clamp<std::int64_t>((count + ranks - 1) / ranks, 1, 100);
  auto images = torch::zeros(
      {count, sampler.spec().channels, sampler.spec().height, sampler.spec().width}, torch::kUInt8);
  for (std::int64_t begin = comm.rank() * chunk; begin < count; begin += ranks * chunk) {
    const auto n = std::min(chunk, count - begin);
    std::vector<std::int64_t> indices;
    std::vector<std::int64_t> labels;
    for (std::int64_t k = begin; k < begin + n; ++k) {
      indices.push_back((k % per_class) * classes + k / per_class);
      labels.push_back(k / per_class);
    }
    images.narrow(0, begin, n)
        .copy_(to_uint8(sampler.sample(indices, torch::tensor(labels, torch::kInt64), seed)));
  }
  comm.allreduce(images, comm::ReduceOp::sum);  // every other rank holds zeros there
  return io::make_grid(images, per_class);
}

}  // namespace kr::gen
