#include "kr/comm/dp_sgd.hpp"

#include <torch/torch.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <string>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/core/keyed_rng.hpp"

namespace kr::comm {

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
      const auto [first, second] = box_muller(uniform);
      values[k] = first;
      if (k + 1 < n) values[k + 1] = second;
    }
  }
  return out;
}

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

at::Tensor DpGradient::accumulate(const std::vector<at::Tensor>& per_sample) {
  if (per_sample.size() != parameters_.size())
    throw std::logic_error("DpGradient::accumulate: " + std::to_string(per_sample.size()) +
                           " per-sample gradients for " + std::to_string(parameters_.size()) +
                           " parameters");
  std::int64_t batch = -1;
  at::Tensor squares;
  for (const auto& g : per_sample) {
    if (!g.defined()) continue;
    const auto k = static_cast<std::size_t>(&g - per_sample.data());
    if (g.dim() != parameters_[k].dim() + 1 || g.sizes().slice(1) != parameters_[k].sizes())
      throw std::logic_error("DpGradient::accumulate: per-sample gradient " + std::to_string(k) +
                             " does not have its parameter's shape");
    if (batch < 0) {
      batch = g.size(0);
      squares = torch::zeros({batch}, torch::kFloat64);
    } else if (g.size(0) != batch) {
      throw std::logic_error("DpGradient::accumulate: per-sample gradients of different batches");
    }
    squares += g.reshape({batch, -1}).to(torch::kFloat64).pow(2).sum(1);
  }
  if (batch <= 0) return torch::zeros({0}, torch::kFloat64);
  const auto norms = squares.sqrt();
  // min(1, C / norm) per sample, one factor over every parameter.
  const auto factors = (settings_.clip / (norms + 1e-12)).clamp_max(1.0).to(torch::kFloat32);
  for (std::size_t k = 0; k < parameters_.size(); ++k) {
    const auto& g = per_sample[k];
    if (!g.defined()) continue;
    std::vector<std::int64_t> shape(static_cast<std::size_t>(g.dim()), 1);
    shape[0] = batch;
    sums_[k] += (g.to(torch::kFloat32) * factors.view(shape)).sum(0);
  }
  samples_ += batch;
  clipped_ += norms.gt(settings_.clip).sum().item<std::int64_t>();
  return norms;
}

void DpGradient::finish(Communicator& comm, std::uint64_t step, bool add) {
  const double scale = 1.0 / (settings_.sample_rate * static_cast<double>(settings_.records));
  const double sd = settings_.noise_multiplier * settings_.clip;
  std::uint64_t offset = 0;
  for (std::size_t k = 0; k < parameters_.size(); ++k) {
    auto& sum = sums_[k];
    if (comm.rank() == 0 && sd > 0.0)
      sum += sd * standard_normals(sum.numel(), settings_.noise, settings_.seed, step, offset)
                      .to(torch::kFloat32)
                      .view(sum.sizes());
    offset += static_cast<std::uint64_t>(sum.numel());
    comm.allreduce(sum, ReduceOp::sum);
    auto& parameter = parameters_[k];
    auto gradient = (sum * scale).to(parameter.scalar_type());
    if (parameter.grad().defined() && add)
      parameter.mutable_grad().add_(gradient);
    else if (parameter.grad().defined())
      parameter.mutable_grad().copy_(gradient);
    else
      parameter.mutable_grad() = gradient;
    sum.zero_();
  }
  samples_ = clipped_ = 0;
}

Json describe(const DpSettings& settings) {
  return Json{{"clip", settings.clip},
              {"noise_multiplier", settings.noise_multiplier},
              {"sample_rate", settings.sample_rate},
              {"records", settings.records},
              {"noise_source", noise_source_name(settings.noise)},
              {"formal_guarantee", settings.noise == NoiseSource::secure},
              {"note", settings.noise == NoiseSource::secure
                           ? "noise from the operating system's CSPRNG"
                           : "noise from the keyed stream: reproducible, not a formal guarantee"}};
}

Json DpGradient::describe() const {
  return comm::describe(settings_);
}

}  // namespace kr::comm
