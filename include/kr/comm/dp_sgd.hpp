// DP-SGD (Abadi et al. 2016) on the data-parallel core (issue 24; Note [DP-SGD]): the
// private counterpart of DataParallel's reducer, beside it in comm.
//
// Note [DP-SGD]
// A logical batch is Poisson-sampled over the global data set: record i joins step t's
// batch when the uniform of the keyed stream (seed, dp_sampling, t, i) is under q, so the
// batch is the same for any rank count; its members are dealt to ranks by position and a
// rank may split its share into physical batches. Per physical batch, the per-sample
// gradients (from nn::grad_sample, Note [Per-sample gradients]) are each clipped to norm C over
// all trained parameters and summed. At the step's end the clipped sums are all-reduced;
// Gaussian noise N(0, sigma^2 C^2) is added once to the global sum (rank 0 adds it before
// the all-reduce, never every rank), and the result divided by the expected batch size
// q N, as Opacus' mean reduction does, is each parameter's gradient (or is added to it,
// when a step also has a gradient that touches no private record, as a GAN's fake term). The noise
// comes from the keyed stream (seed, dp_noise, t, element) for reproducible tests, or from the
// operating system's CSPRNG (std::random_device) for real runs; results made with the
// keyed stream are labelled "not a formal guarantee" (the seed decides the noise).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kr/core/json.hpp"

namespace kr::comm {

class Communicator;

enum class NoiseSource { keyed, secure };
NoiseSource noise_source(const std::string& name);  // keyed or secure, else UsageError
const char* noise_source_name(NoiseSource source);

struct DpSettings {
  double clip = 1.0;              // C
  double noise_multiplier = 1.0;  // sigma
  double sample_rate = 0.0;       // q
  std::int64_t records = 0;       // N, over every rank
  NoiseSource noise = NoiseSource::secure;
  std::uint64_t seed = 0;
};

// (n) float64 standard normals: the keyed stream of (seed, dp_noise, step, offset), or
// the OS CSPRNG (the seed and step unused).
at::Tensor standard_normals(std::int64_t n, NoiseSource source, std::uint64_t seed,
                            std::uint64_t step, std::uint64_t offset = 0);

// What run.json records: C, sigma, q, N, the noise source and whether it is a formal
// guarantee.
Json describe(const DpSettings& settings);

// The global indices of step `step`'s Poisson-sampled logical batch, ascending.
std::vector<std::int64_t> poisson_batch(std::int64_t records, double sample_rate,
                                        std::uint64_t seed, std::uint64_t step);
// This rank's share of a batch: positions rank, rank + size, ...
std::vector<std::int64_t> rank_share(const std::vector<std::int64_t>& batch, int rank, int size);

// One step's clipped gradient sum, accumulated over physical batches.
class DpGradient {
 public:
  DpGradient(std::vector<at::Tensor> parameters, DpSettings settings);
  // Adds one physical batch's per-sample gradients (B, parameter shape...), one per
  // parameter in the constructor's order (undefined: the batch did not use it), each
  // sample's clipped to C over every parameter; returns their norms before clipping,
  // (B) float64.
  at::Tensor accumulate(const std::vector<at::Tensor>& per_sample);
  // Collective: the global clipped sum plus the noise, over q N, into each parameter's
  // grad (added to the grad already there when `add` is set); the accumulated sums are
  // reset for the next step.
  void finish(Communicator& comm, std::uint64_t step, bool add = false);
  // This step's counts so far on this rank.
  std::int64_t samples() const { return samples_; }
  std::int64_t clipped() const { return clipped_; }
  const DpSettings& settings() const { return settings_; }
  Json describe() const;  // comm::describe(settings())

 private:
  std::vector<at::Tensor> parameters_;
  std::vector<at::Tensor> sums_;
  DpSettings settings_;
  std::int64_t samples_ = 0, clipped_ = 0;
};

}  // namespace kr::comm
