#include "kr/io/cifar.hpp"

#include <torch/torch.h>

#include <cstring>

#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"

namespace kr::io {

data::ImageSet read_cifar_batches(const std::vector<std::string>& paths, int classes) {
  if (classes != 10 && classes != 100) throw Error("CIFAR reader: classes must be 10 or 100");
  const std::size_t label_bytes = classes == 10 ? 1 : 2;
  const std::size_t pixels = 3 * 32 * 32;
  const std::size_t record = label_bytes + pixels;
  std::vector<at::Tensor> images;
  std::vector<at::Tensor> labels;
  for (const auto& path : paths) {
    const std::string bytes = read_file(path);
    if (bytes.empty() || bytes.size() % record != 0) {
      throw Error(path + ": size " + std::to_string(bytes.size()) + " is not a multiple of the " +
                  std::to_string(record) + "-byte CIFAR record (truncated or wrong format)");
    }
    const std::int64_t count = static_cast<std::int64_t>(bytes.size() / record);
    auto image = torch::empty({count, 3, 32, 32}, torch::kUInt8);
    auto label = torch::empty({count}, torch::kInt64);
    auto* image_data = image.data_ptr<std::uint8_t>();
    auto* label_data = label.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < count; ++i) {
      const auto* row = reinterpret_cast<const unsigned char*>(bytes.data()) + i * record;
      const int value = row[label_bytes - 1];
      if (value >= classes) {
        throw Error(path + ": record " + std::to_string(i) + " has label " + std::to_string(value) +
                    ", expected 0.." + std::to_string(classes - 1));
      }
      label_data[i] = value;
      std::memcpy(image_data + i * pixels, row + label_bytes, pixels);
    }
    images.push_back(image);
    labels.push_back(label);
  }
  return data::ImageSet{torch::cat(images), torch::cat(labels)};
}

}  // namespace kr::io
