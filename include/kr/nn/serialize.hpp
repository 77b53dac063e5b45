#pragma once

#include <torch/nn/module.h>

#include <string>

namespace kr::nn {

// Writes parameters and buffers through a temporary file and rename.
void save_module(torch::nn::Module& module, const std::string& path);
// Throws kr::Error naming the file when it is missing, corrupt or of another shape.
void load_module(torch::nn::Module& module, const std::string& path);
// sha256 over every parameter and buffer (name, shape, raw bytes) in registration order.
std::string state_sha256(torch::nn::Module& module);

}  // namespace kr::nn
