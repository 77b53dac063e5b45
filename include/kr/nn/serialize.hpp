#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <string>
#include <utility>
#include <vector>

namespace kr::nn {

// The named modules and optimisers that make up a training state: what a
// checkpoint saves and restores (train/checkpoint.hpp), declared here so that the
// layers that own a state (train/, gen/) can list it without knowing checkpoints.
struct CheckpointItems {
  std::vector<std::pair<std::string, torch::nn::Module*>> modules;
  std::vector<std::pair<std::string, torch::optim::Optimizer*>> optimizers;
};

// Writes parameters and buffers through a temporary file and rename.
void save_module(torch::nn::Module& module, const std::string& path);
// Throws kr::Error naming the file when it is missing, corrupt or of another shape.
void load_module(torch::nn::Module& module, const std::string& path);
// sha256 over every parameter and buffer (name, shape, raw bytes) in registration order.
std::string state_sha256(torch::nn::Module& module);

}  // namespace kr::nn
