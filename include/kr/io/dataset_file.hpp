// The canonical data set file written by `kr prepare` (DESIGN.md "Data formats"):
// /train, /val, /test groups each with images uint8 (N,C,H,W) and labels int64,
// and root attributes describing the set.
#pragma once

#include <string>

#include "kr/data/image_set.hpp"

namespace kr::io {

constexpr std::int64_t kDatasetSchemaVersion = 1;

// Writes through a temporary name and rename (Note [Rename-based commit]).
void write_dataset(const data::Dataset& dataset, const std::string& path);

data::DatasetInfo read_dataset_info(const std::string& path);
// Reads and validates every split (shapes, dtypes, label range, counts).
data::Dataset read_dataset(const std::string& path);

}  // namespace kr::io
