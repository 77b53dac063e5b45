#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/output-archive.h>

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

// Parameters and buffers as archive bytes, with state_sha256 of them recorded inside.
std::string module_bytes(torch::nn::Module& module);
// Any archive (an optimiser's state) as bytes, for checked writes.
std::string archive_bytes(torch::serialize::OutputArchive& archive);
// Writes module_bytes through a temporary file and rename (every write checked).
void save_module(torch::nn::Module& module, const std::string& path);
// Loads and verifies: the weights' state_sha256 must equal the one the file records
// (LibTorch ignores the zip CRCs, so a flipped byte in a tensor would load silently) and
// `expected_sha256` when given (model.json's params_sha256). Throws kr::Error naming the
// file when it is missing, corrupt, of another shape or fails either checksum.
void load_module(torch::nn::Module& module, const std::string& path,
                 const std::string& expected_sha256 = "");
// sha256 over every parameter and buffer (name, shape, raw bytes) in registration order.
std::string state_sha256(torch::nn::Module& module);

}  // namespace kr::nn
