#include "kr/train/dp_sgd.hpp"

#include <torch/torch.h>

#include <cmath>
#include <random>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/core/keyed_rng.hpp"
#include "kr/nn/grad_sample.hpp"

namespace kr::train {

namespace {

// (n) float32 standard normals: the keyed stream of (seed, step) or the OS CSPRNG.
at::Tensor standard_normals(std::int64_t n, NoiseSource source, std::uint64_t seed,
                            std::uint64_t step, std::uint64_t offset) {
  auto out = torch::empty({n}, torch::kFloat64);
  auto* values = out.data_ptr<double>();
  if (source == NoiseSource::keyed) {
    KeyedRng rng(stream_key(seed, Purpose::dp_noise, step, offset));
    for (std::int64_t k = 0; k < n; ++k) values[k] = rng.normal();
  } else {
    std::random_device device;  // getrandom(2) / /dev/urandom on Linux
    const auto uniform = [&device] {
      std::uint64_t bits = (static_cast<std::uint64_t>(device()) << 32) | device();
      return static_cast<double>(bits >> 11) * 0x1.0p-53;
    };
    for (std::int64_t k = 0; k < n; k += 2) {
      double u1 = uniform();
      while (u1 <= 0.0) u1 = uniform();
      const double radius = std::sqrt(-2.0 * std::log(u1));
      const double angle = 2.0 * M_PI * uniform();
      values[k] = radius * std::cos(angle);
      if (k + 1 < n) values[k + 1] = radius * std::sin(angle);
    }
  }
  return out.to(torch::kFloat32);
}

}  // namespace

NoiseSource noise_source(const std::string& name) {
  if (name == "keyed") return NoiseSource::keyed;
  if (name == "secure") return NoiseSource::secure;
  throw UsageError("the DP noise source must be keyed or secure, not '" + name + "'");
}

const char* noise_source_name(NoiseSource source) {
  return source == NoiseSource::keyed ? "keyed" : "secure";
}

std::vector<std::int64_t> poisson_batch(std::int64_t records, double sample_rate,
                                        std::uint64_t seed, std::uint64_t step) {
  if (!(sample_rate > 0.0 && sample_rate <= 1.0))
    throw UsageError("the DP sample rate must be in (0, 1]");
  std::vector<std::int64_t> batch;
  for (std::int64_t i = 0; i < records; ++i) {
    KeyedRng rng(stream_key(seed, Purpose::dp_sampling, step, static_cast<std::uint64_t>(i)));
    if (rng.uniform() < sample_rate) batch.push_back(i);
  }
  return batch;
}

std::vector<std::int64_t> rank_share(const std::vector<std::int64_t>& batch, int rank, int size) {
  std::vector<std::int64_t> share;
  for (std::size_t k = static_cast<std::size_t>(rank); k < batch.size();
       k += static_cast<std::size_t>(size))
    share.push_back(batch[k]);
  return share;
}

DpGradient::DpGradient(std::vector<at::Tensor> parameters, DpSettings settings)
    : parameters_(std::move(parameters)), settings_(settings) {
  if (!(settings_.clip > 0.0)) throw UsageError("--dp-clip must be above 0");
  if (!(settings_.noise_multiplier >= 0.0))
    throw UsageError("the DP noise multiplier must be at least 0");
  if (!(settings_.sample_rate > 0.0 && settings_.sample_rate <= 1.0) || settings_.records < 1)
    throw UsageError("DP-SGD needs a sample rate in (0, 1] and at least one record");
  for (const auto& p : parameters_) sums_.push_back(torch::zeros_like(p, torch::kFloat32));
}

at::Tensor DpGradient::accumulate(const nn::grad_sample::Recorder& recorder) {
  const auto norms = recorder.norms();
  if (norms.numel() == 0) return norms;
  // min(1, C / norm) per sample, one factor over every parameter.
  const auto factors = (settings_.clip / (norms + 1e-12)).clamp_max(1.0).to(torch::kFloat32);
  for (std::size_t k = 0; k < parameters_.size(); ++k) {
    const auto per_sample = recorder.of(parameters_[k]);
    if (!per_sample.defined()) continue;
    std::vector<std::int64_t> shape(static_cast<std::size_t>(per_sample.dim()), 1);
    shape[0] = per_sample.size(0);
    sums_[k] += (per_sample.to(torch::kFloat32) * factors.view(shape)).sum(0);
  }
  samples_ += norms.size(0);
  clipped_ += norms.gt(settings_.clip).sum().item<std::int64_t>();
  return norms;
}

void DpGradient::finish(comm::Communicator& comm, std::uint64_t step) {
  const double scale = 1.0 / (settings_.sample_rate * static_cast<double>(settings_.records));
  const double sd = settings_.noise_multiplier * settings_.clip;
  std::uint64_t offset = 0;
  for (std::size_t k = 0; k < parameters_.size(); ++k) {
    auto& sum = sums_[k];
    if (comm.rank() == 0 && sd > 0.0)
      sum += sd * standard_normals(sum.numel(), settings_.noise, settings_.seed, step, offset)
                      .view(sum.sizes());
    offset += static_cast<std::uint64_t>(sum.numel());
    comm.allreduce(sum, comm::ReduceOp::sum);
    auto& parameter = parameters_[k];
    auto gradient = (sum * scale).to(parameter.scalar_type());
    if (parameter.grad().defined())
      parameter.mutable_grad().copy_(gradient);
    else
      parameter.mutable_grad() = gradient;
    sum.zero_();
  }
  samples_ = clipped_ = 0;
}

Json DpGradient::describe() const {
  return Json{{"clip", settings_.clip},
              {"noise_multiplier", settings_.noise_multiplier},
              {"sample_rate", settings_.sample_rate},
              {"records", settings_.records},
              {"noise_source", noise_source_name(settings_.noise)},
              {"formal_guarantee", settings_.noise == NoiseSource::secure},
              {"note", settings_.noise == NoiseSource::secure
                           ? "noise from the operating system's CSPRNG"
                           : "noise from the keyed stream: reproducible, not a formal guarantee"}};
}

}  // namespace kr::train
