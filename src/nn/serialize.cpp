#include "kr/nn/serialize.hpp"

#include <torch/torch.h>

#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/sha256.hpp"

namespace kr::nn {

void save_module(torch::nn::Module& module, const std::string& path) {
  PendingFile pending(path);
  torch::serialize::OutputArchive archive;
  module.save(archive);
  archive.save_to(pending.temp_path());
  pending.commit();
}

void load_module(torch::nn::Module& module, const std::string& path) {
  if (!path_exists(path)) throw Error(path + ": model file is missing");
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    module.load(archive);
  } catch (const c10::Error& error) {
    throw Error(path + ": cannot load model (corrupt, truncated or a different architecture): " +
                error.what_without_backtrace());
  }
}

std::string state_sha256(torch::nn::Module& module) {
  Sha256 hash;
  auto add = [&](const std::string& name, const at::Tensor& tensor) {
    auto contiguous = tensor.detach().contiguous();
    hash.update(name.data(), name.size());
    for (auto size : contiguous.sizes()) hash.update(&size, sizeof size);
    hash.update(contiguous.data_ptr(), contiguous.nbytes());
  };
  for (const auto& item : module.named_parameters()) add(item.key(), item.value());
  for (const auto& item : module.named_buffers()) add(item.key(), item.value());
  return hash.hex_digest();
}

}  // namespace kr::nn
