// Seeded, class-stratified splits and subsets.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "kr/data/image_set.hpp"

namespace kr::data {

// Per-class quotas summing to `count`, proportional to `class_sizes` (largest remainder).
std::vector<std::int64_t> stratified_quotas(const std::vector<std::int64_t>& class_sizes,
                                            std::int64_t count);

// Chooses `count` indices class-stratified with a seeded shuffle inside each class.
// Returns (chosen, rest), each in increasing index order.
std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> stratified_choice(
    const at::Tensor& labels, std::int64_t classes, std::int64_t count, std::uint64_t seed);

// At most `limit` images of each class, chosen with a seeded shuffle.
std::vector<std::int64_t> per_class_choice(const at::Tensor& labels, std::int64_t classes,
                                           std::int64_t limit, std::uint64_t seed);

}  // namespace kr::data
