#include <gtest/gtest.h>
#include <torch/torch.h>
#include <zip.h>

#include "fixtures.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/io/cifar.hpp"
#include "kr/io/idx.hpp"
#include "kr/io/npz.hpp"
#include "kr/io/source.hpp"

using kr::test::TempDir;

namespace {

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const kr::Error& error) {
    return error.what();
  }
  return "";
}

void write_npz(const std::string& path,
               const std::vector<std::pair<std::string, std::string>>& members,
               bool stored = false) {
  int error = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &error);
  ASSERT_NE(archive, nullptr);
  std::vector<std::string> keep;
  keep.reserve(members.size());
  for (const auto& [name, bytes] : members) {
    keep.push_back(bytes);
    zip_source_t* source = zip_source_buffer(archive, keep.back().data(), keep.back().size(), 0);
    const zip_int64_t index =
        zip_file_add(archive, (name + ".npy").c_str(), source, ZIP_FL_OVERWRITE);
    ASSERT_GE(index, 0);
    if (stored) {
      ASSERT_EQ(zip_set_file_compression(archive, index, ZIP_CM_STORE, 0), 0);
    }
  }
  ASSERT_EQ(zip_close(archive), 0);
}

std::string u8_payload(std::size_t bytes, int modulo = 256) {
  std::string payload;
  for (std::size_t i = 0; i < bytes; ++i) payload.push_back(static_cast<char>(i % modulo));
  return payload;
}

std::string labels_i64(const std::vector<std::int64_t>& labels) {
  return std::string(reinterpret_cast<const char*>(labels.data()), labels.size() * 8);
}

}  // namespace

TEST(Idx, ReadsRawAndGzipAlike) {
  TempDir dir;
  kr::test::write_bytes(dir / "raw", kr::test::idx_images(7, 28, 28));
  kr::test::write_bytes(dir / "zipped.gz", kr::test::idx_images(7, 28, 28), true);
  auto raw = kr::io::read_idx_images(dir / "raw");
  auto zipped = kr::io::read_idx_images(dir / "zipped.gz");
  EXPECT_EQ(raw.sizes(), (std::vector<std::int64_t>{7, 1, 28, 28}));
  EXPECT_TRUE(raw.equal(zipped));
}

TEST(Idx, TransposeSwapsRowsAndColumns) {
  TempDir dir;
  kr::test::write_bytes(dir / "images", kr::test::idx_images(2, 4, 3));
  auto plain = kr::io::read_idx_images(dir / "images");
  auto transposed = kr::io::read_idx_images(dir / "images", true);
  EXPECT_EQ(transposed.size(2), 3);
  EXPECT_EQ(transposed[1][0][2][1].item<int>(), plain[1][0][1][2].item<int>());
}

TEST(Idx, WrongMagicNamesFile) {
  TempDir dir;
  auto bytes = kr::test::idx_images(2, 28, 28);
  bytes[3] = 1;
  kr::test::write_bytes(dir / "images", bytes);
  const auto message = error_of([&] { kr::io::read_idx_images(dir / "images"); });
  EXPECT_NE(message.find(dir / "images"), std::string::npos) << message;
  EXPECT_NE(message.find("wrong IDX magic"), std::string::npos) << message;
}

TEST(Idx, TruncatedPayload) {
  TempDir dir;
  auto bytes = kr::test::idx_images(5, 28, 28);
  bytes.resize(bytes.size() - 100);
  kr::test::write_bytes(dir / "images", bytes);
  const auto message = error_of([&] { kr::io::read_idx_images(dir / "images"); });
  EXPECT_NE(message.find("truncated payload"), std::string::npos) << message;
}

TEST(Idx, TruncatedGzipStream) {
  TempDir dir;
  kr::test::write_bytes(dir / "images.gz", kr::test::idx_images(50, 28, 28), true);
  auto bytes = kr::read_file(dir / "images.gz");
  kr::test::write_bytes(dir / "cut.gz", bytes.substr(0, bytes.size() / 2));
  const auto message = error_of([&] { kr::io::read_idx_images(dir / "cut.gz"); });
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
}

TEST(Idx, TrailingBytesAreRejected) {
  TempDir dir;
  kr::test::write_bytes(dir / "labels", kr::test::idx_labels({1, 2, 3}) + "xx");
  const auto message = error_of([&] { kr::io::read_idx_labels(dir / "labels"); });
  EXPECT_NE(message.find("unexpected bytes"), std::string::npos) << message;
}

TEST(Idx, MissingFileNamesIt) {
  const auto message = error_of([] { kr::io::read_idx_labels("/nonexistent/labels"); });
  EXPECT_NE(message.find("/nonexistent/labels"), std::string::npos) << message;
}

TEST(Source, IdxDirectoryLoads) {
  TempDir dir;
  kr::test::write_idx_dir(dir / "fashion-mnist", 200, 50, 10, true);
  kr::io::SourceOptions options;
  options.path = dir / "fashion-mnist";
  auto source = kr::io::load_source(options);
  EXPECT_EQ(source.info.name, "fashion-mnist");
  EXPECT_EQ(source.info.classes, 10);
  EXPECT_EQ(source.info.class_names.at(9), "Ankle boot");
  EXPECT_TRUE(source.info.hflip);
  EXPECT_EQ(source.train.size(), 200);
  EXPECT_EQ(source.test.size(), 50);
  EXPECT_FALSE(source.val.has_value());
  EXPECT_EQ(source.info.source_sha256.size(), 64u);
}

TEST(Source, ImageLabelCountMismatch) {
  TempDir dir;
  kr::test::write_idx_dir(dir / "set", 20, 10, 10, false);
  kr::test::write_bytes(dir / "set/train-labels-idx1-ubyte",
                        kr::test::idx_labels(kr::test::cyclic_labels(19, 10)));
  kr::io::SourceOptions options;
  options.path = dir / "set";
  const auto message = error_of([&] { kr::io::load_source(options); });
  EXPECT_NE(message.find("20 images but"), std::string::npos) << message;
  EXPECT_NE(message.find("19 labels"), std::string::npos) << message;
}

TEST(Source, LabelOutOfRangeForKnownSet) {
  TempDir dir;
  kr::test::write_idx_dir(dir / "fashion-mnist", 20, 10, 10, false);
  auto labels = kr::test::cyclic_labels(20, 10);
  labels[3] = 12;
  kr::test::write_bytes(dir / "fashion-mnist/train-labels-idx1-ubyte",
                        kr::test::idx_labels(labels));
  kr::io::SourceOptions options;
  options.path = dir / "fashion-mnist";
  const auto message = error_of([&] { kr::io::load_source(options); });
  EXPECT_NE(message.find("label out of range"), std::string::npos) << message;
}

// Issue 19, defect 6: one stray label made an unknown set a 201-class one.
TEST(Source, StrayLabelOfAnUnknownSetIsRefused) {
  TempDir dir;
  kr::test::write_idx_dir(dir / "scans", 40, 10, 10, false);
  auto labels = kr::test::cyclic_labels(40, 10);
  labels[5] = 200;
  kr::test::write_bytes(dir / "scans/train-labels-idx1-ubyte", kr::test::idx_labels(labels));
  kr::io::SourceOptions options;
  options.path = dir / "scans";
  auto message = error_of([&] { kr::io::load_source(options); });
  EXPECT_NE(message.find("labels run from 0 to 200"), std::string::npos) << message;
  EXPECT_NE(message.find("class(es) 10, 11, 12"), std::string::npos) << message;
  EXPECT_NE(message.find("(190 in all)"), std::string::npos) << message;
  EXPECT_NE(message.find("--classes"), std::string::npos) << message;
  options.classes = 10;  // the set's real class count: the stray label is refused
  message = error_of([&] { kr::io::load_source(options); });
  EXPECT_NE(message.find("label out of range"), std::string::npos) << message;
  options.classes = 0;  // without the stray label the classes are inferred as before
  labels[5] = 5;
  kr::test::write_bytes(dir / "scans/train-labels-idx1-ubyte", kr::test::idx_labels(labels));
  EXPECT_EQ(kr::io::load_source(options).info.classes, 10);
}

TEST(Cifar, ReadsRecordsAndRejectsTruncation) {
  TempDir dir;
  std::string record(1 + 3072, '\0');
  std::string bytes;
  for (int i = 0; i < 4; ++i) {
    record[0] = static_cast<char>(i);
    record[1] = static_cast<char>(10 * i);  // first red pixel
    bytes += record;
  }
  kr::test::write_bytes(dir / "batch.bin", bytes);
  auto set = kr::io::read_cifar_batches({dir / "batch.bin"}, 10);
  EXPECT_EQ(set.images.sizes(), (std::vector<std::int64_t>{4, 3, 32, 32}));
  EXPECT_EQ(set.labels[3].item<std::int64_t>(), 3);
  EXPECT_EQ(set.images[2][0][0][0].item<int>(), 20);

  kr::test::write_bytes(dir / "cut.bin", bytes.substr(0, bytes.size() - 5));
  const auto message = error_of([&] { kr::io::read_cifar_batches({dir / "cut.bin"}, 10); });
  EXPECT_NE(message.find("not a multiple"), std::string::npos) << message;
}

TEST(Cifar, LabelOutOfRange) {
  TempDir dir;
  std::string record(1 + 3072, '\0');
  record[0] = 11;
  kr::test::write_bytes(dir / "batch.bin", record);
  const auto message = error_of([&] { kr::io::read_cifar_batches({dir / "batch.bin"}, 10); });
  EXPECT_NE(message.find("label 11"), std::string::npos) << message;
}

TEST(Cifar100, UsesFineLabel) {
  TempDir dir;
  std::string record(2 + 3072, '\0');
  record[0] = 3;
  record[1] = 77;
  kr::test::write_bytes(dir / "train.bin", record);
  auto set = kr::io::read_cifar_batches({dir / "train.bin"}, 100);
  EXPECT_EQ(set.labels[0].item<std::int64_t>(), 77);
}

TEST(Npz, MedMnistStyleArchiveLoads) {
  TempDir dir;
  const std::string path = dir / "pathmnist.npz";
  write_npz(path,
            {{"train_images", kr::test::npy("|u1", {6, 28, 28, 3}, u8_payload(6 * 28 * 28 * 3))},
             {"train_labels", kr::test::npy("<i8", {6, 1}, labels_i64({0, 1, 2, 0, 1, 2}))},
             {"val_images", kr::test::npy("|u1", {3, 28, 28, 3}, u8_payload(3 * 28 * 28 * 3))},
             {"val_labels", kr::test::npy("<i8", {3, 1}, labels_i64({0, 1, 2}))},
             {"test_images", kr::test::npy("|u1", {3, 28, 28, 3}, u8_payload(3 * 28 * 28 * 3))},
             {"test_labels", kr::test::npy("<i8", {3, 1}, labels_i64({2, 1, 0}))}});
  kr::io::SourceOptions options;
  options.path = path;
  auto source = kr::io::load_source(options);
  EXPECT_EQ(source.info.name, "pathmnist");
  EXPECT_EQ(source.info.classes, 3);
  EXPECT_EQ(source.info.channels, 3);
  ASSERT_TRUE(source.val.has_value());
  EXPECT_EQ(source.val->size(), 3);
  // HWC -> CHW: pixel (h=0, w=0, c=1) is payload byte 1.
  EXPECT_EQ(source.train.images[0][1][0][0].item<int>(), 1);
  EXPECT_EQ(source.test.labels[0].item<std::int64_t>(), 2);
}

// Issue 19, defect 3: a member whose bytes no longer match its CRC-32 was ingested.
TEST(Npz, CorruptMemberFailsItsCrc) {
  TempDir dir;
  const std::string path = dir / "bloodmnist.npz";
  const auto images = [](int n) {
    return kr::test::npy("|u1", {n, 28, 28}, u8_payload(n * 784, 7));
  };
  write_npz(path,
            {{"train_images", images(6)},
             {"train_labels", kr::test::npy("<i8", {6}, labels_i64({0, 1, 2, 0, 1, 2}))},
             {"test_images", images(3)},
             {"test_labels", kr::test::npy("<i8", {3}, labels_i64({2, 1, 0}))}},
            /*stored=*/true);
  kr::io::SourceOptions options;
  options.path = path;
  EXPECT_NO_THROW(kr::io::load_source(options));
  // One pixel of the first member changes value (stored, so the archive stays readable).
  auto bytes = kr::read_file(path);
  const auto header = bytes.find("'descr': '|u1'");
  ASSERT_NE(header, std::string::npos);
  bytes[header + 300] ^= 0x04;
  kr::test::write_bytes(path, bytes);
  const auto message = error_of([&] { kr::io::load_source(options); });
  EXPECT_NE(message.find("corrupt member (CRC-32"), std::string::npos) << message;
  EXPECT_NE(message.find("bloodmnist.npz:train_images.npy"), std::string::npos) << message;
}

TEST(Npz, NonUint8ImagesAreRefused) {
  TempDir dir;
  const std::string path = dir / "bad.npz";
  write_npz(path, {{"train_images",
                    kr::test::npy("<f4", {2, 28, 28}, std::string(2 * 28 * 28 * 4, '\0'))},
                   {"train_labels", kr::test::npy("<i8", {2}, labels_i64({0, 1}))},
                   {"test_images", kr::test::npy("|u1", {1, 28, 28}, u8_payload(784))},
                   {"test_labels", kr::test::npy("<i8", {1}, labels_i64({0}))}});
  kr::io::SourceOptions options;
  options.path = path;
  const auto message = error_of([&] { kr::io::load_source(options); });
  EXPECT_NE(message.find("must be uint8"), std::string::npos) << message;
  EXPECT_NE(message.find("train_images"), std::string::npos) << message;
}

TEST(Npz, TruncatedArrayIsRefused) {
  auto blob = kr::test::npy("|u1", {4, 28, 28}, u8_payload(4 * 784));
  blob.resize(blob.size() - 10);
  const auto message = error_of([&] { kr::io::parse_npy(blob, "x.npz:train_images"); });
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
}

TEST(Npz, NotAZipArchive) {
  TempDir dir;
  kr::test::write_bytes(dir / "broken.npz", "this is not a zip archive");
  kr::io::SourceOptions options;
  options.path = dir / "broken.npz";
  const auto message = error_of([&] { kr::io::load_source(options); });
  EXPECT_NE(message.find("broken.npz"), std::string::npos) << message;
}

TEST(Npz, NegativeLabelIsOutOfRange) {
  TempDir dir;
  const std::string path = dir / "neg.npz";
  write_npz(path, {{"train_images", kr::test::npy("|u1", {2, 28, 28}, u8_payload(2 * 784))},
                   {"train_labels", kr::test::npy("<i8", {2}, labels_i64({0, -1}))},
                   {"test_images", kr::test::npy("|u1", {1, 28, 28}, u8_payload(784))},
                   {"test_labels", kr::test::npy("<i8", {1}, labels_i64({0}))}});
  kr::io::SourceOptions options;
  options.path = path;
  const auto message = error_of([&] { kr::io::load_source(options); });
  EXPECT_NE(message.find("label out of range"), std::string::npos) << message;
}

TEST(FashionMnist, DebianPackageHasTheExpectedClassCounts) {
  if (!kr::path_exists(kr::io::kDefaultSource))
    GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  auto source = kr::io::load_source(kr::io::SourceOptions{});
  ASSERT_EQ(source.info.classes, 10);
  EXPECT_EQ(source.train.size(), 60000);
  EXPECT_EQ(source.test.size(), 10000);
  auto train = torch::bincount(source.train.labels);
  auto test = torch::bincount(source.test.labels);
  for (int c = 0; c < 10; ++c) {
    EXPECT_EQ(train[c].item<std::int64_t>(), 6000);
    EXPECT_EQ(test[c].item<std::int64_t>(), 1000);
  }
}
