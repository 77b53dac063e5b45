#include "kr/io/dataset_file.hpp"

#include <torch/torch.h>

#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/io/h5.hpp"

namespace kr::io {

namespace {

const char* const kSplits[] = {"train", "val", "test"};

void write_split(const h5::File& file, const std::string& split, const data::ImageSet& set) {
  h5::create_group(file, "/" + split);
  const auto plane = set.images.size(1) * set.images.size(2) * set.images.size(3);
  // About 512 KiB of images per chunk.
  const hsize_t rows = static_cast<hsize_t>(
      std::max<std::int64_t>(1, (512 * 1024) / std::max<std::int64_t>(1, plane)));
  h5::WriteOptions image_options{
      {rows, static_cast<hsize_t>(set.images.size(1)), static_cast<hsize_t>(set.images.size(2)),
       static_cast<hsize_t>(set.images.size(3))},
      4,
      true};
  h5::write_tensor(file, "/" + split + "/images", set.images, image_options);
  h5::write_tensor(file, "/" + split + "/labels", set.labels, h5::WriteOptions{{65536}, 4, true});
}

}  // namespace

void write_dataset(const data::Dataset& dataset, const std::string& path) {
  const auto& info = dataset.info;
  data::check_image_set(dataset.train, info.classes, "train split");
  data::check_image_set(dataset.val, info.classes, "val split");
  data::check_image_set(dataset.test, info.classes, "test split");
  PendingFile pending(path);
  {
    auto file = h5::File::create(pending.temp_path());
    write_split(file, "train", dataset.train);
    write_split(file, "val", dataset.val);
    write_split(file, "test", dataset.test);
    h5::set_attr(file, "/", "schema_version", kDatasetSchemaVersion);
    h5::set_attr(file, "/", "name", info.name);
    h5::set_attr(file, "/", "classes", info.classes);
    h5::set_attr(file, "/", "class_names", info.class_names);
    h5::set_attr(file, "/", "channels", info.channels);
    h5::set_attr(file, "/", "height", info.height);
    h5::set_attr(file, "/", "width", info.width);
    h5::set_attr(file, "/", "hflip", static_cast<std::int64_t>(info.hflip));
    h5::set_attr(file, "/", "source_sha256", info.source_sha256);
    h5::set_attr(file, "/", "split_seed", static_cast<std::int64_t>(info.split_seed));
    file.close();
  }
  pending.commit();
}

data::DatasetInfo read_dataset_info(const std::string& path) {
  auto file = h5::File::open_read(path);
  data::DatasetInfo info;
  if (!h5::has_attr(file, "/", "schema_version"))
    throw Error(path + ": not a kr data set (no schema_version)");
  const auto schema = h5::get_int_attr(file, "/", "schema_version");
  if (schema != kDatasetSchemaVersion) {
    throw Error(path + ": data set schema " + std::to_string(schema) + ", this kr reads " +
                std::to_string(kDatasetSchemaVersion));
  }
  info.name = h5::get_string_attr(file, "/", "name");
  info.classes = h5::get_int_attr(file, "/", "classes");
  info.class_names = h5::get_strings_attr(file, "/", "class_names");
  info.channels = h5::get_int_attr(file, "/", "channels");
  info.height = h5::get_int_attr(file, "/", "height");
  info.width = h5::get_int_attr(file, "/", "width");
  info.hflip = h5::get_int_attr(file, "/", "hflip") != 0;
  info.source_sha256 = h5::get_string_attr(file, "/", "source_sha256");
  info.split_seed = static_cast<std::uint64_t>(h5::get_int_attr(file, "/", "split_seed"));
  if (info.classes <= 0 || info.channels <= 0 || info.height <= 0 || info.width <= 0) {
    throw Error(path + ": invalid classes or image shape attributes");
  }
  return info;
}

data::Dataset read_dataset(const std::string& path) {
  data::Dataset dataset;
  dataset.info = read_dataset_info(path);
  auto file = h5::File::open_read(path);
  data::ImageSet* targets[] = {&dataset.train, &dataset.val, &dataset.test};
  for (int s = 0; s < 3; ++s) {
    const std::string split = kSplits[s];
    auto& set = *targets[s];
    set.images = h5::read_tensor(file, "/" + split + "/images", torch::kUInt8, 4);
    set.labels = h5::read_tensor(file, "/" + split + "/labels", torch::kInt64, 1);
    const auto& info = dataset.info;
    if (set.images.size(1) != info.channels || set.images.size(2) != info.height ||
        set.images.size(3) != info.width) {
      throw Error(path + ": /" + split +
                  "/images shape does not match the channels/height/width attributes");
    }
    data::check_image_set(set, info.classes, path + ": /" + split);
  }
  return dataset;
}

}  // namespace kr::io
