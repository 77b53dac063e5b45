#include "kr/data/augment.hpp"

#include <torch/torch.h>

#include "kr/core/cost.hpp"
#include "kr/core/keyed_rng.hpp"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

namespace kr::data {

at::Tensor to_float(const at::Tensor& images_uint8) {
  const cost::Scope data(cost::Part::data);
  return images_uint8.to(torch::kFloat32).div_(127.5f).sub_(1.0f);
}

at::Tensor assemble_batch(const ImageSet& set, const std::vector<std::int64_t>& indices,
                          const Augment& augment, std::uint64_t seed, std::uint64_t epoch,
                          const std::vector<std::int64_t>* keys) {
  const cost::Scope data(cost::Part::data);
  const std::int64_t channels = set.images.size(1);
  const std::int64_t height = set.images.size(2);
  const std::int64_t width = set.images.size(3);
  const std::int64_t batch = static_cast<std::int64_t>(indices.size());
  auto out = torch::empty({batch, channels, height, width}, torch::kFloat32);
  const auto* source = set.images.data_ptr<std::uint8_t>();
  auto* target = out.data_ptr<float>();
  const std::int64_t plane = height * width;
  const int pad = augment.crop_padding;

  for (std::int64_t b = 0; b < batch; ++b) {
    const auto index = static_cast<std::uint64_t>(keys ? (*keys)[b] : indices[b]);
    int shift_y = 0;
    int shift_x = 0;
    if (pad > 0) {
      KeyedRng crop(stream_key(seed, Purpose::crop, epoch, index));
      shift_y = static_cast<int>(crop.below(2 * pad + 1)) - pad;
      shift_x = static_cast<int>(crop.below(2 * pad + 1)) - pad;
    }
    bool flip = false;
    if (augment.hflip)
      flip = (KeyedRng(stream_key(seed, Purpose::flip, epoch, index)).next() >> 63) != 0;

    const std::uint8_t* image = source + indices[b] * channels * plane;
    float* result = target + b * channels * plane;
    for (std::int64_t c = 0; c < channels; ++c) {
      for (std::int64_t y = 0; y < height; ++y) {
        const std::int64_t sy = y + shift_y;
        for (std::int64_t x = 0; x < width; ++x) {
          const std::int64_t cx = flip ? width - 1 - x : x;
          const std::int64_t sx = cx + shift_x;
          const bool inside = sy >= 0 && sy < height && sx >= 0 && sx < width;
          const float pixel = inside ? image[c * plane + sy * width + sx] : 0.0f;
          result[c * plane + y * width + x] = pixel / 127.5f - 1.0f;
        }
      }
    }
  }
  return out;
}

at::Tensor shift_images(const at::Tensor& images, int dy, int dx) {
  const cost::Scope data(cost::Part::data);
  const std::int64_t pad = std::max(std::abs(dy), std::abs(dx));
  if (pad == 0) return images;
  const auto height = images.size(2);
  const auto width = images.size(3);
  // Fill -1: the float value of pixel 0, the training crop's zero padding.
  return torch::constant_pad_nd(images, {pad, pad, pad, pad}, -1.0)
      .narrow(2, pad + dy, height)
      .narrow(3, pad + dx, width)
      .contiguous();
}

Mix mix_pairs(at::Tensor& batch, const std::vector<std::int64_t>& keys, double alpha,
              std::uint64_t seed, std::uint64_t epoch) {
  const cost::Scope data(cost::Part::data);
  const auto rows = batch.size(0);
  if (static_cast<std::int64_t>(keys.size()) != rows)
    throw std::invalid_argument("mix_pairs: one key per row needed");
  std::vector<float> lambda(static_cast<std::size_t>(rows), 1.0f);
  std::vector<std::int64_t> partner(static_cast<std::size_t>(rows));
  for (std::int64_t b = 0; b < rows; ++b) {
    const std::int64_t other = b ^ 1;
    partner[b] = other < rows ? other : b;
    if (partner[b] != b)
      lambda[b] = static_cast<float>(
          KeyedRng(stream_key(seed, Purpose::mix, epoch, static_cast<std::uint64_t>(keys[b])))
              .beta(alpha, alpha));
  }
  Mix mix{torch::tensor(lambda), torch::tensor(partner, torch::kInt64)};
  const auto shape = std::vector<std::int64_t>{rows, 1, 1, 1};
  auto weight = mix.lambda.view(shape);
  auto partners = batch.index_select(0, mix.partner);
  batch = batch * weight + partners * (1.0f - weight);
  return mix;
}

at::Tensor gather_labels(const ImageSet& set, const std::vector<std::int64_t>& indices) {
  const cost::Scope data(cost::Part::data);
  return set.labels.index_select(0, torch::tensor(indices, torch::kInt64));
}

}  // namespace kr::data
