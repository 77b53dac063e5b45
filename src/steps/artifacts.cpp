#include "kr/steps/artifacts.hpp"

#include <torch/torch.h>

#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/sha256.hpp"
#include "kr/nn/serialize.hpp"

namespace kr::steps {

io::SyntheticPool open_matching_pool(const std::string& pool_dir, const data::DatasetInfo& info,
                                     const std::string& data_path) {
  auto pool = io::SyntheticPool::open(pool_dir);
  const auto shape = pool.manifest().value("shape", Json::array());
  if (pool.classes() != info.classes || shape != Json{info.channels, info.height, info.width})
    throw Error(pool_dir + ": pool images or classes do not match " + data_path +
                " (pool: " + std::to_string(pool.classes()) + " classes of " + shape.dump() +
                "; data: " + std::to_string(info.classes) + " classes of " +
                std::to_string(info.channels) + "x" + std::to_string(info.height) + "x" +
                std::to_string(info.width) + ")");
  return pool;
}

std::int64_t regeneration_rows(const io::SyntheticPool& pool) {
  const Json settings = pool.manifest().value("settings", Json::object());
  return std::min(settings.value("count_per_regeneration", pool.size()), pool.size());
}

gen::ClassifierView LoadedClassifier::view() const {
  const nn::InferenceResNet network = fast;  // shares the folded weights
  return gen::ClassifierView{
      [network](const at::Tensor& images) { return network.features(images); },
      [network](const at::Tensor& features) { return network.classify(features); }};
}

Json classifier_description(const nn::ResNetShape& shape, const std::string& params_sha256,
                            const std::string& data_sha256) {
  return Json{{"arch", "resnet20"},
              {"width", shape.width},
              {"channels", shape.channels},
              {"classes", shape.classes},
              {"height", shape.height},
              {"width_pixels", shape.image_width},
              {"params_sha256", params_sha256},
              {"data_sha256", data_sha256}};
}

LoadedClassifier load_classifier(const std::string& run_dir, std::int64_t channels,
                                 std::int64_t classes) {
  const std::string description_path = run_dir + "/model.json";
  if (!path_exists(description_path))
    throw Error(run_dir +
                ": no trained classifier here (model.json missing; run the step that "
                "makes it first)");
  LoadedClassifier loaded;
  nn::ResNetShape shape;
  try {
    loaded.description = Json::parse(read_file(description_path));
    if (loaded.description.at("arch") != "resnet20")
      throw Error("unknown architecture " + loaded.description.at("arch").dump());
    shape.width = loaded.description.at("width");
    shape.channels = loaded.description.at("channels");
    shape.classes = loaded.description.at("classes");
    shape.height = loaded.description.at("height");
    shape.image_width = loaded.description.at("width_pixels");
  } catch (const std::exception& error) {
    throw Error(description_path + ": " + error.what());
  }
  if ((channels > 0 && shape.channels != channels) || (classes > 0 && shape.classes != classes))
    throw Error(description_path + ": classifier is for " + std::to_string(shape.channels) +
                " channel(s) and " + std::to_string(shape.classes) + " classes, the data has " +
                std::to_string(channels) + " and " + std::to_string(classes));
  nn::ResNet20 model(shape);
  loaded.weights = run_dir + "/model.pt";
  nn::load_module(*model, loaded.weights, loaded.description.value("params_sha256", ""));
  loaded.weights_sha256 = sha256_file(loaded.weights);
  const bool channels_last = nn::channels_last_suits(shape);
  if (channels_last) nn::to_channels_last(*model);
  model->eval();
  loaded.fast = nn::InferenceResNet(*model, channels_last);
  return loaded;
}

}  // namespace kr::steps
