// What a generator is: its family, its shape and its sampling settings. Saved
// as <run>/model.json by train-generator and read by every consumer.
#pragma once

#include <cstdint>
#include <string>

#include "kr/core/json.hpp"

namespace kr::gen {

struct GeneratorSpec {
  std::string model = "gan";  // gan or ddpm
  std::int64_t channels = 1;
  std::int64_t classes = 10;
  std::int64_t height = 28;
  std::int64_t width = 28;
  // GAN
  std::int64_t latent = 64;
  std::int64_t g_width = 32;
  std::int64_t d_width = 32;
  double z_scale = 1.0;  // z ~ N(0, z_scale^2 I) at sampling time
  // DDPM
  std::int64_t unet_width = 32;
  std::string schedule = "linear";  // linear or cosine
  std::int64_t timesteps = 1000;
  std::int64_t sample_steps = 50;  // DDIM steps
  double guidance = 2.0;           // classifier-free guidance scale w
  bool guidance_batched = true;    // one forward over [cond; null] instead of two

  Json to_json() const;
  static GeneratorSpec from_json(const Json& json, const std::string& what);
};

}  // namespace kr::gen
