// NumPy .npy arrays and .npz archives (MedMNIST), parsed without Python.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kr::io {

struct NpyArray {
  std::string descr;  // e.g. "|u1", "<i8"
  std::vector<std::int64_t> shape;
  std::string payload;  // raw C-order bytes
};

// Parses one .npy blob; `what` names it in errors.
NpyArray parse_npy(const std::string& bytes, const std::string& what);

// The arrays of an .npz archive, by name without the ".npy" suffix.
std::map<std::string, NpyArray> read_npz(const std::string& path);

// uint8 images: (N,H,W) -> (N,1,H,W); (N,H,W,C) -> (N,C,H,W). Other dtypes are refused.
at::Tensor npy_images(const NpyArray& array, const std::string& what);
// Integer labels of shape (N) or (N,1) -> int64 (N).
at::Tensor npy_labels(const NpyArray& array, const std::string& what);

}  // namespace kr::io
