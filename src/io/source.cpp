#include "kr/io/source.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/sha256.hpp"
#include "kr/io/cifar.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/io/idx.hpp"
#include "kr/io/npz.hpp"

namespace kr::io {

namespace fs = std::filesystem;

namespace {

struct KnownSet {
  const char* name;
  bool hflip;
  std::vector<std::string> class_names;
};

const std::vector<KnownSet>& known_sets() {
  static const std::vector<KnownSet> sets = {
      {"fashion-mnist",
       true,
       {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
        "Ankle boot"}},
      {"mnist", false, {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
      {"kmnist", false, {"o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"}},
      {"cifar10",
       true,
       {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}},
      {"cifar100", true, {}},
      {"pathmnist", true, {}},
      {"dermamnist", true, {}},
      {"bloodmnist", true, {}},
      {"organamnist", false, {}},
      {"octmnist", false, {}},
      {"pneumoniamnist", false, {}},
  };
  return sets;
}

const KnownSet* find_known(const std::string& name) {
  for (const auto& set : known_sets()) {
    if (name == set.name) return &set;
  }
  return nullptr;
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return text;
}

std::string derive_name(const std::string& path) {
  fs::path p(path);
  std::string stem = lower((p.has_filename() ? p : p.parent_path()).stem().string());
  if (stem == "fashion_mnist" || stem == "fashionmnist") stem = "fashion-mnist";
  if (stem.rfind("cifar-10", 0) == 0 && stem.find("100") == std::string::npos) stem = "cifar10";
  if (stem.rfind("cifar-100", 0) == 0) stem = "cifar100";
  return stem;
}

// The IDX file in `dir` whose name contains `part` ("train-images" ...), raw or .gz.
std::string find_idx(const std::string& dir, const std::string& part) {
  std::vector<std::string> matches;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (name.find(part) != std::string::npos && name.find("idx") != std::string::npos) {
      matches.push_back(entry.path().string());
    }
  }
  if (matches.empty()) throw Error(dir + ": no IDX file matching '*" + part + "*idx*'");
  if (matches.size() > 1) {
    // Prefer the uncompressed copy when both exist; several variants are ambiguous.
    std::sort(matches.begin(), matches.end());
    const bool pair = matches.size() == 2 && matches[1] == matches[0] + ".gz";
    if (!pair)
      throw Error(dir + ": several IDX files match '" + part + "'; point --source at one variant");
  }
  return matches.front();
}

// MNIST-style names use "t10k", EMNIST uses "test".
std::string find_idx_either(const std::string& dir, const std::string& part,
                            const std::string& alternative) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    if (name.find(part) != std::string::npos) return find_idx(dir, part);
  }
  return find_idx(dir, alternative);
}

Source load_idx(const std::string& dir) {
  Source source;
  const std::string train_images = find_idx(dir, "train-images");
  const std::string train_labels = find_idx(dir, "train-labels");
  const std::string test_images = find_idx_either(dir, "t10k-images", "test-images");
  const std::string test_labels = find_idx_either(dir, "t10k-labels", "test-labels");
  const bool emnist = lower(train_images).find("emnist") != std::string::npos;
  source.train = {read_idx_images(train_images, emnist), read_idx_labels(train_labels)};
  source.test = {read_idx_images(test_images, emnist), read_idx_labels(test_labels)};
  const bool letters = emnist && lower(train_images).find("letters") != std::string::npos;
  if (letters) {  // EMNIST letters are labelled 1..26
    source.train.labels -= 1;
    source.test.labels -= 1;
  }
  for (const auto& path : {train_images, train_labels, test_images, test_labels}) {
    source.files.emplace_back(path, "");
  }
  if (source.train.images.size(0) != source.train.labels.size(0)) {
    throw Error(train_images + ": " + std::to_string(source.train.images.size(0)) + " images but " +
                train_labels + " has " + std::to_string(source.train.labels.size(0)) + " labels");
  }
  if (source.test.images.size(0) != source.test.labels.size(0)) {
    throw Error(test_images + ": " + std::to_string(source.test.images.size(0)) + " images but " +
                test_labels + " has " + std::to_string(source.test.labels.size(0)) + " labels");
  }
  return source;
}

Source load_cifar(const std::string& dir, int classes) {
  Source source;
  std::vector<std::string> train_files;
  std::string test_file;
  if (classes == 10) {
    for (int i = 1; i <= 5; ++i)
      train_files.push_back(dir + "/data_batch_" + std::to_string(i) + ".bin");
    test_file = dir + "/test_batch.bin";
  } else {
    train_files.push_back(dir + "/train.bin");
    test_file = dir + "/test.bin";
  }
  for (const auto& path : train_files) {
    if (!path_exists(path)) throw Error(path + ": missing CIFAR batch file");
  }
  if (!path_exists(test_file)) throw Error(test_file + ": missing CIFAR batch file");
  source.train = read_cifar_batches(train_files, classes);
  source.test = read_cifar_batches({test_file}, classes);
  for (const auto& path : train_files) source.files.emplace_back(path, "");
  source.files.emplace_back(test_file, "");
  const std::string names_file =
      dir + (classes == 10 ? "/batches.meta.txt" : "/fine_label_names.txt");
  if (path_exists(names_file)) {
    std::ifstream in(names_file);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) source.info.class_names.push_back(line);
    }
  }
  source.info.classes = classes;
  return source;
}

data::ImageSet npz_split(const std::map<std::string, NpyArray>& arrays, const std::string& path,
                         const std::string& split) {
  const auto images = arrays.find(split + "_images");
  const auto labels = arrays.find(split + "_labels");
  if (images == arrays.end() || labels == arrays.end()) {
    throw Error(path + ": missing " + split + "_images.npy or " + split + "_labels.npy");
  }
  data::ImageSet set{npy_images(images->second, path + ":" + split + "_images"),
                     npy_labels(labels->second, path + ":" + split + "_labels")};
  if (set.images.size(0) != set.labels.size(0)) {
    throw Error(path + ": " + split + "_images has " + std::to_string(set.images.size(0)) +
                " images but " + split + "_labels has " + std::to_string(set.labels.size(0)) +
                " labels");
  }
  return set;
}

Source load_npz(const std::string& path) {
  const auto arrays = read_npz(path);
  Source source;
  source.train = npz_split(arrays, path, "train");
  source.test = npz_split(arrays, path, "test");
  if (arrays.count("val_images")) source.val = npz_split(arrays, path, "val");
  source.files.emplace_back(path, "");
  return source;
}

Source load_canonical(const std::string& path) {
  auto dataset = read_dataset(path);
  Source source;
  source.info = dataset.info;
  source.train = dataset.train;
  source.val = dataset.val;
  source.test = dataset.test;
  source.files.emplace_back(path, "");
  return source;
}

std::int64_t max_label(const data::ImageSet& set) {
  return set.labels.numel() ? set.labels.max().item<std::int64_t>() : -1;
}

}  // namespace

std::string detect_format(const std::string& path) {
  if (!path_exists(path)) throw Error(path + ": source does not exist");
  if (fs::is_directory(path)) {
    if (path_exists(path + "/data_batch_1.bin")) return "cifar10";
    if (path_exists(path + "/train.bin") && path_exists(path + "/test.bin")) return "cifar100";
    for (const auto& entry : fs::directory_iterator(path)) {
      if (entry.path().filename().string().find("idx") != std::string::npos) return "idx";
    }
    throw Error(path + ": directory holds no IDX files and no CIFAR batches");
  }
  const auto extension = lower(fs::path(path).extension().string());
  if (extension == ".npz") return "npz";
  if (extension == ".h5" || extension == ".hdf5") return "h5";
  throw Error(path +
              ": cannot tell the format from the name; pass --format idx|cifar10|cifar100|npz|h5");
}

namespace {
// Inferred classes must all occur in train: a label of 200 in a ten-class set would
// otherwise make 191 classes without an image.
void refuse_empty_classes(const data::ImageSet& train, std::int64_t classes,
                          const std::string& path) {
  const auto counts = data::class_counts(train.labels, classes);
  std::vector<std::int64_t> empty;
  for (std::int64_t c = 0; c < classes; ++c)
    if (counts[static_cast<std::size_t>(c)] == 0) empty.push_back(c);
  if (empty.empty()) return;
  std::string list;
  for (std::size_t i = 0; i < empty.size() && i < 8; ++i)
    list += (i ? ", " : "") + std::to_string(empty[i]);
  if (empty.size() > 8) list += ", ... (" + std::to_string(empty.size()) + " in all)";
  throw UsageError(path + ": labels run from 0 to " + std::to_string(classes - 1) +
                   " but class(es) " + list +
                   " have no train image; pass --classes N if the set has N classes (labels "
                   "at or above N are then refused), or fix the labels");
}
}  // namespace

Source load_source(const SourceOptions& options) {
  const std::string format =
      options.format == "auto" ? detect_format(options.path) : options.format;
  Source source;
  if (format == "idx") {
    source = load_idx(options.path);
  } else if (format == "cifar10") {
    source = load_cifar(options.path, 10);
  } else if (format == "cifar100") {
    source = load_cifar(options.path, 100);
  } else if (format == "npz") {
    source = load_npz(options.path);
  } else if (format == "h5") {
    source = load_canonical(options.path);
  } else {
    throw UsageError("unknown --format '" + format +
                     "' (expected auto, idx, cifar10, cifar100, npz, h5)");
  }

  auto& info = source.info;
  if (!options.name.empty()) {
    info.name = options.name;
  } else if (info.name.empty()) {
    info.name = derive_name(options.path);
  }
  const KnownSet* known = find_known(info.name);
  if (format != "h5") {
    std::int64_t highest = std::max(max_label(source.train), max_label(source.test));
    if (source.val) highest = std::max(highest, max_label(*source.val));
    if (options.classes > 0) {
      if (known && !known->class_names.empty() &&
          options.classes != static_cast<std::int64_t>(known->class_names.size()))
        throw UsageError("--classes " + std::to_string(options.classes) + ": " + info.name +
                         " has " + std::to_string(known->class_names.size()) + " classes");
      if (known && !known->class_names.empty()) info.class_names = known->class_names;
      info.classes = options.classes;  // check_image_set rejects labels at or above it
    } else if (known && !known->class_names.empty()) {
      info.class_names =
          known->class_names;  // a known set fixes its classes; check_image_set rejects others
      info.classes = static_cast<std::int64_t>(known->class_names.size());
    } else {
      info.classes = std::max<std::int64_t>(info.classes, highest + 1);
      refuse_empty_classes(source.train, info.classes, options.path);
    }
    info.hflip = known && known->hflip;
  }
  if (options.hflip == "yes") info.hflip = true;
  if (options.hflip == "no") info.hflip = false;
  if (info.class_names.size() != static_cast<std::size_t>(info.classes)) {
    info.class_names.clear();
    for (std::int64_t c = 0; c < info.classes; ++c) info.class_names.push_back(std::to_string(c));
  }
  info.channels = source.train.images.size(1);
  info.height = source.train.images.size(2);
  info.width = source.train.images.size(3);
  const auto check_shape = [&](const data::ImageSet& set, const std::string& split) {
    if (set.images.size(1) != info.channels || set.images.size(2) != info.height ||
        set.images.size(3) != info.width) {
      throw Error(options.path + ": " + split + " images have a different shape than train images");
    }
    data::check_image_set(set, info.classes, options.path + ": " + split);
  };
  check_shape(source.train, "train");
  check_shape(source.test, "test");
  if (source.val) check_shape(*source.val, "val");

  // The source hash covers every input file, in a fixed order.
  std::string combined;
  for (auto& [path, sha] : source.files) {
    sha = sha256_file(path);
    combined += fs::path(path).filename().string() + ":" + sha + "\n";
  }
  info.source_sha256 = sha256_string(combined);
  return source;
}

}  // namespace kr::io
