// Reading what earlier steps wrote: trained classifiers (teacher, student).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

#include "kr/core/json.hpp"
#include "kr/data/image_set.hpp"
#include "kr/gen/quality.hpp"
#include "kr/io/shard.hpp"
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

// A pool to read beside the prepared data set at `data_path`: its classes and image shape
// must be the data set's, else an Error naming both.
io::SyntheticPool open_matching_pool(const std::string& pool_dir, const data::DatasetInfo& info,
                                     const std::string& data_path);

// The rows of one regeneration of `pool` (its settings' count per regeneration; all of
// it for a pool that does not say).
std::int64_t regeneration_rows(const io::SyntheticPool& pool);

// Writes <run_dir>/model.json for a resnet20 classifier.
Json classifier_description(const nn::ResNetShape& shape, const std::string& params_sha256,
                            const std::string& data_sha256);

}  // namespace kr::steps
