#include "kr/gen/sampler.hpp"

#include <torch/torch.h>

#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/sha256.hpp"
#include "kr/gen/gan.hpp"
#include "kr/gen/unet.hpp"
#include "kr/nn/serialize.hpp"

namespace kr::gen {

at::Tensor keyed_normal(const std::vector<std::int64_t>& indices, std::int64_t n,
                        std::uint64_t seed, Purpose purpose, std::uint64_t step) {
  auto out = torch::empty({static_cast<std::int64_t>(indices.size()), n}, torch::kFloat32);
  auto* data = out.data_ptr<float>();
  for (std::size_t b = 0; b < indices.size(); ++b) {
    KeyedRng rng(stream_key(seed, purpose, step, static_cast<std::uint64_t>(indices[b])));
    for (std::int64_t j = 0; j < n; ++j) data[b * n + j] = static_cast<float>(rng.normal());
  }
  return out;
}

at::Tensor to_uint8(const at::Tensor& images) {
  return images.add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch::kUInt8);
}

namespace {

class GanSampler final : public Sampler {
 public:
  GanSampler(const GeneratorSpec& spec, std::shared_ptr<torch::nn::Module> model)
      : spec_(spec), model_(std::dynamic_pointer_cast<GanGeneratorImpl>(model)) {
    if (!model_) throw Error("gan sampler: model is not a GAN generator");
  }
  const GeneratorSpec& spec() const override { return spec_; }
  at::Tensor sample(const std::vector<std::int64_t>& indices, const at::Tensor& labels,
                    std::uint64_t seed) override {
    torch::NoGradGuard no_grad;
    model_->eval();
    auto z = keyed_normal(indices, spec_.latent, seed, Purpose::gan_latent, 0) * spec_.z_scale;
    return model_->forward(z, labels);
  }

 private:
  GeneratorSpec spec_;
  std::shared_ptr<GanGeneratorImpl> model_;
};

class DdpmSampler final : public Sampler {
 public:
  DdpmSampler(const GeneratorSpec& spec, std::shared_ptr<torch::nn::Module> model)
      : spec_(spec),
        model_(std::dynamic_pointer_cast<UNetImpl>(model)),
        alphas_bar_(alphas_cumprod(spec.schedule, spec.timesteps)),
        timesteps_(ddim_timesteps(spec.timesteps, spec.sample_steps)) {
    if (!model_) throw Error("ddpm sampler: model is not a UNet");
  }
  const GeneratorSpec& spec() const override { return spec_; }
  at::Tensor sample(const std::vector<std::int64_t>& indices, const at::Tensor& labels,
                    std::uint64_t seed) override {
    torch::NoGradGuard no_grad;
    model_->eval();
    const auto batch = static_cast<std::int64_t>(indices.size());
    const std::int64_t pixels = spec_.channels * spec_.height * spec_.width;
    auto x = keyed_normal(indices, pixels, seed, Purpose::ddim_noise, 0)
                 .view({batch, spec_.channels, spec_.height, spec_.width});
    auto null_labels = torch::full_like(labels, spec_.classes);
    const double w = spec_.guidance;
    for (std::size_t i = 0; i < timesteps_.size(); ++i) {
      const std::int64_t t = timesteps_[i];
      const double bar = alphas_bar_[t].item<double>();
      const double bar_prev =
          i + 1 < timesteps_.size() ? alphas_bar_[timesteps_[i + 1]].item<double>() : 1.0;
      auto times = torch::full({batch}, t, torch::kInt64);
      at::Tensor eps;
      if (w == 0.0) {
        eps = model_->forward(x, times, labels);
      } else if (spec_.guidance_batched) {
        auto both = model_->forward(torch::cat({x, x}), torch::cat({times, times}),
                                    torch::cat({labels, null_labels}));
        auto cond = both.narrow(0, 0, batch);
        auto null = both.narrow(0, batch, batch);
        eps = null + w * (cond - null);
      } else {
        auto cond = model_->forward(x, times, labels);
        auto null = model_->forward(x, times, null_labels);
        eps = null + w * (cond - null);
      }
      auto x0 = ((x - std::sqrt(1.0 - bar) * eps) / std::sqrt(bar)).clamp(-1.0, 1.0);
      eps = (x - std::sqrt(bar) * x0) / std::sqrt(1.0 - bar);
      x = std::sqrt(bar_prev) * x0 + std::sqrt(1.0 - bar_prev) * eps;
    }
    return x.clamp(-1.0, 1.0);
  }

 private:
  GeneratorSpec spec_;
  std::shared_ptr<UNetImpl> model_;
  at::Tensor alphas_bar_;
  std::vector<std::int64_t> timesteps_;
};

}  // namespace

std::shared_ptr<torch::nn::Module> make_generator_model(const GeneratorSpec& spec) {
  if (spec.model == "gan") return std::make_shared<GanGeneratorImpl>(spec);
  if (spec.model == "ddpm") return std::make_shared<UNetImpl>(spec);
  throw UsageError("--model must be gan or ddpm, got '" + spec.model + "'");
}

std::unique_ptr<Sampler> make_sampler(const GeneratorSpec& spec,
                                      std::shared_ptr<torch::nn::Module> model) {
  if (spec.model == "gan") return std::make_unique<GanSampler>(spec, std::move(model));
  return std::make_unique<DdpmSampler>(spec, std::move(model));
}

LoadedGenerator load_generator(const std::string& path) {
  std::string spec_path = path + "/model.json";
  if (!path_exists(spec_path)) spec_path = path + "/../../model.json";  // a checkpoint directory
  if (!path_exists(spec_path))
    throw Error(path + ": not a generator run or checkpoint (no model.json here or two levels up)");
  Json json;
  try {
    json = Json::parse(read_file(spec_path));
  } catch (const std::exception& error) {
    throw Error(spec_path + ": cannot parse: " + error.what());
  }
  LoadedGenerator loaded;
  loaded.spec = GeneratorSpec::from_json(json, spec_path);
  loaded.weights = path + "/ema.pt";
  if (!path_exists(loaded.weights)) throw Error(loaded.weights + ": missing generator weights");
  loaded.model = make_generator_model(loaded.spec);
  nn::load_module(*loaded.model, loaded.weights);
  loaded.weights_sha256 = sha256_file(loaded.weights);
  loaded.sampler = make_sampler(loaded.spec, loaded.model);
  const std::string dp_path = spec_path.substr(0, spec_path.size() - 10) + "dp.json";
  loaded.dp = nullptr;
  if (path_exists(dp_path)) {
    try {
      loaded.dp = Json::parse(read_file(dp_path));
    } catch (const std::exception& error) {
      throw Error(dp_path + ": cannot parse: " + error.what());
    }
  }
  return loaded;
}

at::Tensor classes_of_range(std::int64_t first, std::int64_t count, std::int64_t classes) {
  std::vector<std::int64_t> labels(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i)
    labels[static_cast<std::size_t>(i)] = class_of_index(first + i, classes);
  return torch::tensor(labels, torch::kInt64);
}

at::Tensor sample_range(Sampler& sampler, std::int64_t first, std::int64_t count,
                        std::uint64_t seed, std::int64_t sample_batch) {
  if (sample_batch <= 0 || first % sample_batch != 0)
    throw Error("sample_range: first index " + std::to_string(first) +
                " is not a multiple of the sample batch " + std::to_string(sample_batch));
  const auto& spec = sampler.spec();
  auto out = torch::empty({count, spec.channels, spec.height, spec.width}, torch::kUInt8);
  for (std::int64_t begin = 0; begin < count; begin += sample_batch) {
    std::vector<std::int64_t> indices(static_cast<std::size_t>(sample_batch));
    for (std::int64_t b = 0; b < sample_batch; ++b) indices[b] = first + begin + b;
    auto images = to_uint8(
        sampler.sample(indices, classes_of_range(first + begin, sample_batch, spec.classes), seed));
    const auto used = std::min(sample_batch, count - begin);
    out.narrow(0, begin, used).copy_(images.narrow(0, 0, used));
  }
  return out;
}

at::Tensor ddpm_loss(torch::nn::Module& unet, const at::Tensor& alphas_bar, const at::Tensor& x0,
                     const at::Tensor& labels, const std::vector<std::int64_t>& indices,
                     std::uint64_t seed, std::uint64_t step, double cfg_drop,
                     std::int64_t classes) {
  auto* model = dynamic_cast<UNetImpl*>(&unet);
  if (!model) throw Error("ddpm_loss: model is not a UNet");
  const auto batch = x0.size(0);
  const std::int64_t timesteps = alphas_bar.size(0);
  std::vector<std::int64_t> t(indices.size());
  std::vector<std::int64_t> conditioning(indices.size());
  const auto* label = labels.data_ptr<std::int64_t>();
  for (std::size_t b = 0; b < indices.size(); ++b) {
    const auto index = static_cast<std::uint64_t>(indices[b]);
    t[b] = static_cast<std::int64_t>(
        KeyedRng(stream_key(seed, Purpose::diffusion_time, step, index)).below(timesteps));
    const bool drop =
        KeyedRng(stream_key(seed, Purpose::label_drop, step, index)).uniform() < cfg_drop;
    conditioning[b] = drop ? classes : label[b];
  }
  auto times = torch::tensor(t, torch::kInt64);
  auto noise =
      keyed_normal(indices, x0[0].numel(), seed, Purpose::diffusion_noise, step).view(x0.sizes());
  auto bar = alphas_bar.index_select(0, times).to(torch::kFloat32).view({batch, 1, 1, 1});
  auto noisy = torch::sqrt(bar) * x0 + torch::sqrt(1 - bar) * noise;
  auto predicted = model->forward(noisy, times, torch::tensor(conditioning, torch::kInt64));
  return torch::mse_loss(predicted, noise);
}

}  // namespace kr::gen
