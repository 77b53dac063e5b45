#include "kr/gen/quality.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "kr/comm/shard_range.hpp"
#include "kr/core/error.hpp"
#include "kr/data/augment.hpp"
#include "kr/io/png.hpp"

namespace kr::gen {

constexpr std::int64_t kPrecisionRecallK = 3;  // Kynkaanniemi et al.'s choice

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

namespace {
double mean_of_defined(const std::vector<double>& values) {
  double sum = 0.0;
  std::int64_t count = 0;
  for (const double value : values)
    if (!std::isnan(value)) sum += value, ++count;
  return count > 0 ? sum / static_cast<double>(count) : std::nan("");
}
}  // namespace

PrecisionRecall manifold_precision_recall(const at::Tensor& real, const at::Tensor& fake,
                                          std::int64_t k) {
  if (real.dim() != 2 || fake.dim() != 2 || real.size(1) != fake.size(1))
    throw Error("precision/recall: real and fake features must be (n, d) with the same d");
  if (k < 1 || real.size(0) <= k || fake.size(0) <= k)
    throw Error("precision/recall: each set needs more than k = " + std::to_string(k) +
                " points (real " + std::to_string(real.size(0)) + ", fake " +
                std::to_string(fake.size(0)) + ")");
  const auto r = real.to(torch::kFloat64);
  const auto f = fake.to(torch::kFloat64);
  // The k-th neighbour of a point among its own set is the (k + 1)-th smallest
  // distance of its row: the smallest is the point itself.
  const auto radius = [k](const at::Tensor& points) {
    return std::get<0>(torch::cdist(points, points).kthvalue(k + 1, 1));
  };
  const auto real_radius = radius(r);
  const auto fake_radius = radius(f);
  const auto between = torch::cdist(f, r);  // (fakes, reals)
  PrecisionRecall out;
  out.precision =
      between.le(real_radius.unsqueeze(0)).any(1).to(torch::kFloat64).mean().item<double>();
  out.recall =
      between.t().le(fake_radius.unsqueeze(0)).any(1).to(torch::kFloat64).mean().item<double>();
  return out;
}

RealReference real_reference(comm::Communicator& comm, const ClassifierView& classifier,
                             const data::ImageSet& set, std::int64_t batch) {
  torch::NoGradGuard no_grad;
  if (set.size() == 0) throw Error("quality: the real reference set is empty");
  const auto range = comm::shard_range(set.size(), comm.rank(), comm.size());
  std::vector<at::Tensor> local;
  std::vector<std::int64_t> begins;
  for (std::int64_t begin = range.begin; begin < range.end; begin += batch) {
    const auto count = std::min(batch, range.end - begin);
    local.push_back(classifier.features(data::to_float(set.images.narrow(0, begin, count)))
                        .to(torch::kFloat64));
    begins.push_back(begin);
  }
  // A rank with an empty slice still joins the reduction: it needs the width.
  const std::int64_t dims =
      local.empty() ? classifier.features(data::to_float(set.images.narrow(0, 0, 1))).size(1)
                    : local.front().size(1);
  RealReference reference;
  reference.features = comm.gather_rows(local, begins, set.size(), {dims}, torch::kFloat64);
  reference.labels = set.labels.to(torch::kInt64);
  reference.moments.add(reference.features);
  return reference;
}

Json QualityReport::to_json() const {
  return Json{{"samples", samples},
              {"teacher_agreement", agreement},
              {"frechet_teacher_features", frechet},
              {"frechet_note",
               "Frechet distance in the teacher's penultimate-feature space against "
               "real val images; not Inception FID"},
              {"teacher_predicted_counts", predicted_counts},
              {"class_agreement", class_agreement},
              {"precision", precision},
              {"recall", recall},
              {"class_precision", class_precision},
              {"class_recall", class_recall},
              {"class_compared", class_compared},
              {"precision_recall_note",
               "Kynkaanniemi et al. 2019, k = 3 nearest-neighbour manifolds in the teacher's "
               "feature space, per class against real val images of that class, equal set "
               "sizes; means over classes"}};
}

QualityReport measure_quality(comm::Communicator& comm, Sampler& sampler, std::uint64_t seed,
                              std::int64_t samples, std::int64_t sample_batch,
                              const ClassifierView& classifier, const RealReference& real) {
  torch::NoGradGuard no_grad;
  const std::int64_t classes = sampler.spec().classes;
  const std::int64_t batches = (samples + sample_batch - 1) / sample_batch;
  const std::int64_t total = batches * sample_batch;
  std::vector<at::Tensor> local;
  std::vector<std::int64_t> begins;
  for (std::int64_t b = comm.rank(); b < batches; b += comm.size()) {
    auto images = sample_range(sampler, b * sample_batch, sample_batch, seed, sample_batch);
    local.push_back(classifier.features(data::to_float(images)).to(torch::kFloat64));
    begins.push_back(b * sample_batch);
  }
  // Every rank gets all the samples' features; the arg-maxes follow from them.
  const auto fake =
      comm.gather_rows(local, begins, total, {real.features.size(1)}, torch::kFloat64);
  const auto wanted = classes_of_range(0, total, classes);
  const auto argmax = classifier.head(fake.to(torch::kFloat32)).argmax(1);
  const auto predicted = torch::bincount(argmax, {}, classes);
  QualityReport report;
  FeatureMoments moments;
  moments.add(fake);
  report.samples = total;
  report.frechet = frechet_distance(moments.mean(), moments.covariance(), real.moments.mean(),
                                    real.moments.covariance());
  const auto agreed = argmax.eq(wanted);
  report.agreement = agreed.to(torch::kFloat64).mean().item<double>();
  for (std::int64_t c = 0; c < classes; ++c) {
    report.predicted_counts.push_back(predicted[c].item<std::int64_t>());
    const auto mine = wanted.eq(c);
    const auto asked = mine.sum().item<std::int64_t>();
    report.class_agreement.push_back(
        static_cast<double>(agreed.logical_and(mine).sum().item<std::int64_t>()) /
        static_cast<double>(std::max<std::int64_t>(1, asked)));
    const auto real_c = real.features.index({real.labels.eq(c)});
    const auto fake_c = fake.index({mine});
    const std::int64_t n = std::min(real_c.size(0), fake_c.size(0));
    report.class_compared.push_back(n);
    if (n <= kPrecisionRecallK) {  // too few points for a 3-NN manifold
      report.class_precision.push_back(std::nan(""));
      report.class_recall.push_back(std::nan(""));
      continue;
    }
    const auto pr = manifold_precision_recall(real_c.narrow(0, 0, n), fake_c.narrow(0, 0, n),
                                              kPrecisionRecallK);
    report.class_precision.push_back(pr.precision);
    report.class_recall.push_back(pr.recall);
  }
  report.precision = mean_of_defined(report.class_precision);
  report.recall = mean_of_defined(report.class_recall);
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
