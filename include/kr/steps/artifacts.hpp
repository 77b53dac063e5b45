// Reading what earlier steps wrote: trained classifiers (teacher, student).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "kr/core/json.hpp"
#include "kr/gen/quality.hpp"
#include "kr/nn/inference.hpp"
#include "kr/nn/resnet.hpp"

namespace kr::steps {

struct LoadedClassifier {
  // The trained network folded (Note [Inference fast path]); the trainable module
  // is not kept: nothing after loading trains or differentiates through it.
  nn::InferenceResNet fast;
  Json description;  // model.json
  std::string weights;
  std::string weights_sha256;

  // Both through the folded network: eval-mode predictions, no gradient.
  at::Tensor logits(const at::Tensor& images) const { return fast.forward(images); }
  gen::ClassifierView view() const;
};

// A classifier run directory (model.json + model.pt), checked against the data
// shape when `classes` > 0. Errors name the file.
LoadedClassifier load_classifier(const std::string& run_dir, std::int64_t channels = 0,
                                 std::int64_t classes = 0);

// Writes <run_dir>/model.json for a resnet20 classifier.
Json classifier_description(const nn::ResNetShape& shape, const std::string& params_sha256,
                            const std::string& data_sha256);

}  // namespace kr::steps
