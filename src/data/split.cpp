#include "kr/data/split.hpp"

#include <algorithm>
#include <numeric>

#include "kr/core/error.hpp"
#include "kr/core/keyed_rng.hpp"

namespace kr::data {

std::vector<std::int64_t> stratified_quotas(const std::vector<std::int64_t>& class_sizes,
                                            std::int64_t count) {
  const std::int64_t total =
      std::accumulate(class_sizes.begin(), class_sizes.end(), std::int64_t{0});
  if (count > total) {
    throw Error("stratified split: asked for " + std::to_string(count) + " of " +
                std::to_string(total) + " images");
  }
  std::vector<std::int64_t> quotas(class_sizes.size(), 0);
  if (total == 0) return quotas;
  std::vector<std::pair<double, std::size_t>> remainders;
  std::int64_t assigned = 0;
  for (std::size_t c = 0; c < class_sizes.size(); ++c) {
    const double exact = static_cast<double>(count) * class_sizes[c] / total;
    quotas[c] = static_cast<std::int64_t>(exact);
    assigned += quotas[c];
    remainders.emplace_back(exact - quotas[c], c);
  }
  // Largest remainder first; ties broken by class id so the result is reproducible.
  std::sort(remainders.begin(), remainders.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  for (std::size_t i = 0; assigned < count; ++i) {
    const auto c = remainders[i % remainders.size()].second;
    if (quotas[c] < class_sizes[c]) {
      ++quotas[c];
      ++assigned;
    }
  }
  return quotas;
}

namespace {

std::vector<std::vector<std::int64_t>> indices_by_class(const at::Tensor& labels,
                                                        std::int64_t classes) {
  std::vector<std::vector<std::int64_t>> by_class(classes);
  auto contiguous = labels.contiguous();
  const auto* label = contiguous.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < contiguous.numel(); ++i) by_class.at(label[i]).push_back(i);
  return by_class;
}

// Fisher-Yates with our own generator: std::shuffle's algorithm is implementation-defined.
void seeded_shuffle(std::vector<std::int64_t>& values, std::uint64_t key) {
  KeyedRng rng(key);
  for (std::size_t i = values.size(); i > 1; --i) {
    std::swap(values[i - 1], values[rng.below(i)]);
  }
}

}  // namespace

std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> stratified_choice(
    const at::Tensor& labels, std::int64_t classes, std::int64_t count, std::uint64_t seed) {
  auto by_class = indices_by_class(labels, classes);
  std::vector<std::int64_t> sizes;
  for (const auto& members : by_class) sizes.push_back(static_cast<std::int64_t>(members.size()));
  const auto quotas = stratified_quotas(sizes, count);
  std::vector<std::int64_t> chosen;
  std::vector<std::int64_t> rest;
  for (std::int64_t c = 0; c < classes; ++c) {
    auto& members = by_class[c];
    seeded_shuffle(members, stream_key(seed, Purpose::split, 0, static_cast<std::uint64_t>(c)));
    chosen.insert(chosen.end(), members.begin(), members.begin() + quotas[c]);
    rest.insert(rest.end(), members.begin() + quotas[c], members.end());
  }
  std::sort(chosen.begin(), chosen.end());
  std::sort(rest.begin(), rest.end());
  return {chosen, rest};
}

std::vector<std::int64_t> per_class_choice(const at::Tensor& labels, std::int64_t classes,
                                           std::int64_t limit, std::uint64_t seed) {
  auto by_class = indices_by_class(labels, classes);
  std::vector<std::int64_t> chosen;
  for (std::int64_t c = 0; c < classes; ++c) {
    auto& members = by_class[c];
    seeded_shuffle(members, stream_key(seed, Purpose::split, 1, static_cast<std::uint64_t>(c)));
    const auto keep = std::min<std::int64_t>(limit, static_cast<std::int64_t>(members.size()));
    chosen.insert(chosen.end(), members.begin(), members.begin() + keep);
  }
  std::sort(chosen.begin(), chosen.end());
  return chosen;
}

}  // namespace kr::data
