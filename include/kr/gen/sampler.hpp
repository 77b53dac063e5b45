// Sampling from a trained generator, and the per-sample noise every
// generator draws.
//
// Note [Batch-independent sampling]
// Sample i's noise comes from the stream keyed by (seed, purpose, 0, i) alone,
// its conditioning class is class_of_index(i), and the networks have no batch
// statistics. Convolutions still round differently for different batch sizes,
// so sample_range() always runs batches of exactly `sample_batch` images aligned
// to global multiples of it (the last batch padded with the following indices).
// The same (generator, seed, sample batch) therefore gives byte-identical images
// whatever the block size, rank count or order of work.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kr/core/json.hpp"
#include "kr/core/keyed_rng.hpp"
#include "kr/gen/spec.hpp"

namespace torch::nn {
class Module;
}

namespace kr::gen {

// The conditioning class of global sample index i: class-balanced, deterministic.
inline std::int64_t class_of_index(std::int64_t index, std::int64_t classes) {
  return index % classes;
}

// int64 (count) conditioning classes of global indices [first, first + count).
at::Tensor classes_of_range(std::int64_t first, std::int64_t count, std::int64_t classes);

// (B, n) float32 standard normals; row b from the stream (seed, purpose, step, indices[b]).
at::Tensor keyed_normal(const std::vector<std::int64_t>& indices, std::int64_t n,
                        std::uint64_t seed, Purpose purpose, std::uint64_t step);

// Float images in [-1, 1] to uint8: round((x + 1) * 127.5), clamped.
at::Tensor to_uint8(const at::Tensor& images);

class Sampler {
 public:
  virtual ~Sampler() = default;
  virtual const GeneratorSpec& spec() const = 0;
  // Float images in [-1, 1], one batch; no gradient.
  virtual at::Tensor sample(const std::vector<std::int64_t>& indices, const at::Tensor& labels,
                            std::uint64_t seed) = 0;
};

// A sampler over a model built by make_generator_model (shared, not copied).
std::unique_ptr<Sampler> make_sampler(const GeneratorSpec& spec,
                                      std::shared_ptr<torch::nn::Module> model);
// The module that samples: GanGenerator for "gan", UNet for "ddpm".
std::shared_ptr<torch::nn::Module> make_generator_model(const GeneratorSpec& spec);

struct LoadedGenerator {
  GeneratorSpec spec;
  std::string weights;         // path of the EMA weights
  std::string weights_sha256;  // sha256 of that file
  std::shared_ptr<torch::nn::Module> model;
  std::unique_ptr<Sampler> sampler;
  // The run's DP-SGD record (dp.json beside model.json, Note [DP GAN]); null when the
  // generator was not trained privately.
  Json dp;
};
// `path`: a train-generator run directory (model.json + ema.pt) or one of its
// checkpoints (ckpt/step_<S>, whose ema.pt is used). Errors name the file.
LoadedGenerator load_generator(const std::string& path);

// uint8 images (count, C, H, W) of global indices [first, first + count), labels
// class_of_index; `first` must be a multiple of sample_batch.
at::Tensor sample_range(Sampler& sampler, std::int64_t first, std::int64_t count,
                        std::uint64_t seed, std::int64_t sample_batch);

// DDPM training loss (mean squared error of the predicted noise) on a batch; t,
// noise and the classifier-free-guidance label drop are keyed by (seed, step,
// global index).
at::Tensor ddpm_loss(torch::nn::Module& unet, const at::Tensor& alphas_bar, const at::Tensor& x0,
                     const at::Tensor& labels, const std::vector<std::int64_t>& indices,
                     std::uint64_t seed, std::uint64_t step, double cfg_drop, std::int64_t classes);

}  // namespace kr::gen
