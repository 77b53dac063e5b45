#include "kr/nn/serialize.hpp"

#include <torch/torch.h>

#include <sstream>

#include "kr/core/cost.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/sha256.hpp"

namespace kr::nn {

namespace {
// The archive key under which save_module records state_sha256 of what it saved.
constexpr const char* kStateKey = "kr_state_sha256";
}  // namespace

std::string archive_bytes(torch::serialize::OutputArchive& archive) {
  std::ostringstream out(std::ios::binary);
  archive.save_to(out);
  if (!out) throw Error("cannot serialise a model archive");
  return out.str();
}

std::string module_bytes(torch::nn::Module& module) {
  torch::serialize::OutputArchive archive;
  module.save(archive);
  archive.write(kStateKey, c10::IValue(state_sha256(module)));
  return archive_bytes(archive);
}

void save_module(torch::nn::Module& module, const std::string& path) {
  write_file_atomic(path, module_bytes(module));
}

void load_module(torch::nn::Module& module, const std::string& path,
                 const std::string& expected_sha256) {
  const cost::Scope io(cost::Part::io);
  if (!path_exists(path)) throw Error(path + ": model file is missing");
  std::string recorded;
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    module.load(archive);
    c10::IValue value;
    if (archive.try_read(kStateKey, value) && value.isString()) recorded = value.toStringRef();
  } catch (const c10::Error& error) {
    throw Error(path + ": cannot load model (corrupt, truncated or a different architecture): " +
                error.what_without_backtrace());
  }
  // LibTorch does not check the zip CRCs: the weights themselves are hashed.
  const std::string actual = state_sha256(module);
  if (recorded.empty() && expected_sha256.empty())
    throw Error(path + ": carries no weights checksum (not written by this kr); cannot verify it");
  if (!recorded.empty() && recorded != actual)
    throw Error(path + ": weights fail their checksum (sha256 " + actual.substr(0, 16) +
                ", saved " + recorded.substr(0, 16) + "): the file is corrupt");
  if (!expected_sha256.empty() && expected_sha256 != actual)
    throw Error(path + ": weights are not the ones described (sha256 " + actual.substr(0, 16) +
                ", expected " + expected_sha256.substr(0, 16) + ")");
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
