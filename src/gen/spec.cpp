#include "kr/gen/spec.hpp"

#include "kr/core/error.hpp"

namespace kr::gen {

Json GeneratorSpec::to_json() const {
  return Json{{"model", model},
              {"channels", channels},
              {"classes", classes},
              {"height", height},
              {"width", width},
              {"latent", latent},
              {"g_width", g_width},
              {"d_width", d_width},
              {"z_scale", z_scale},
              {"unet_width", unet_width},
              {"schedule", schedule},
              {"timesteps", timesteps},
              {"sample_steps", sample_steps},
              {"guidance", guidance},
              {"guidance_batched", guidance_batched}};
}

GeneratorSpec GeneratorSpec::from_json(const Json& json, const std::string& what) {
  GeneratorSpec spec;
  try {
    spec.model = json.at("model");
    spec.channels = json.at("channels");
    spec.classes = json.at("classes");
    spec.height = json.at("height");
    spec.width = json.at("width");
    spec.latent = json.at("latent");
    spec.g_width = json.at("g_width");
    spec.d_width = json.at("d_width");
    spec.z_scale = json.at("z_scale");
    spec.unet_width = json.at("unet_width");
    spec.schedule = json.at("schedule");
    spec.timesteps = json.at("timesteps");
    spec.sample_steps = json.at("sample_steps");
    spec.guidance = json.at("guidance");
    spec.guidance_batched = json.at("guidance_batched");
  } catch (const std::exception& error) {
    throw Error(what + ": not a generator description: " + error.what());
  }
  if (spec.model != "gan" && spec.model != "ddpm")
    throw Error(what + ": unknown generator model '" + spec.model + "'");
  if (spec.channels <= 0 || spec.classes <= 0 || spec.height <= 0 || spec.width <= 0)
    throw Error(what + ": invalid generator shape");
  return spec;
}

}  // namespace kr::gen
