#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "fixtures.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/keyed_rng.hpp"
#include "kr/core/strings.hpp"
#include "kr/data/augment.hpp"
#include "kr/data/split.hpp"
#include "kr/io/dataset_file.hpp"

using kr::test::TempDir;

namespace {
kr::data::ImageSet make_set(std::int64_t count, std::int64_t classes) {
  auto images = torch::randint(0, 256, {count, 1, 8, 8}, torch::kInt64).to(torch::kUInt8);
  auto labels = torch::arange(count, torch::kInt64).remainder(classes);
  return {images, labels};
}

kr::data::Dataset toy_dataset(std::int64_t train, std::int64_t train_classes,
                              std::int64_t classes) {
  kr::data::Dataset dataset;
  dataset.info = {"toy", classes, {}, 1, 8, 8, false, "", 0};
  for (std::int64_t c = 0; c < classes; ++c)
    dataset.info.class_names.push_back(std::string(1, 'a' + c));
  dataset.train = make_set(train, train_classes);
  dataset.val = make_set(9, classes);
  dataset.test = make_set(6, classes);
  return dataset;
}
}  // namespace

TEST(KeyedRng, StreamsDependOnEveryKeyPart) {
  const auto base = kr::stream_key(1, kr::Purpose::crop, 2, 3);
  EXPECT_EQ(base, kr::stream_key(1, kr::Purpose::crop, 2, 3));
  EXPECT_NE(base, kr::stream_key(2, kr::Purpose::crop, 2, 3));
  EXPECT_NE(base, kr::stream_key(1, kr::Purpose::flip, 2, 3));
  EXPECT_NE(base, kr::stream_key(1, kr::Purpose::crop, 3, 3));
  EXPECT_NE(base, kr::stream_key(1, kr::Purpose::crop, 2, 4));
}

TEST(KeyedRng, BelowIsUniformEnough) {
  kr::KeyedRng rng(42);
  std::vector<int> counts(5, 0);
  for (int i = 0; i < 50000; ++i) ++counts[rng.below(5)];
  for (int count : counts) EXPECT_NEAR(count, 10000, 400);
}

TEST(KeyedRng, BetaHasTheRightMeanAndVariance) {
  // Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)); a < 1 takes the boosted gamma path.
  for (const double a : {0.2, 1.0, 3.0}) {
    kr::KeyedRng rng(7);
    const int n = 40000;
    double sum = 0, sum2 = 0;
    for (int i = 0; i < n; ++i) {
      const double x = rng.beta(a, a);
      ASSERT_GE(x, 0.0);
      ASSERT_LE(x, 1.0);
      sum += x;
      sum2 += x * x;
    }
    const double mean = sum / n;
    const double variance = sum2 / n - mean * mean;
    EXPECT_NEAR(mean, 0.5, 0.01) << a;
    EXPECT_NEAR(variance, 1.0 / (4.0 * (2.0 * a + 1.0)), 0.005) << a;
  }
  kr::KeyedRng rng(3);
  double sum = 0;
  for (int i = 0; i < 40000; ++i) sum += rng.gamma(2.5);
  EXPECT_NEAR(sum / 40000, 2.5, 0.05);  // Gamma(k, 1) has mean k
}

TEST(Split, QuotasAreProportionalAndExact) {
  const auto quotas = kr::data::stratified_quotas({6000, 6000, 3000}, 5000);
  EXPECT_EQ(quotas[0] + quotas[1] + quotas[2], 5000);
  EXPECT_EQ(quotas[0], 2000);
  EXPECT_EQ(quotas[2], 1000);
  EXPECT_THROW(kr::data::stratified_quotas({1, 1}, 3), kr::Error);
}

TEST(Split, StratifiedChoiceIsSeededDisjointAndBalanced) {
  auto set = make_set(1000, 10);
  auto [chosen, rest] = kr::data::stratified_choice(set.labels, 10, 100, 7);
  auto again = kr::data::stratified_choice(set.labels, 10, 100, 7).first;
  auto other = kr::data::stratified_choice(set.labels, 10, 100, 8).first;
  EXPECT_EQ(chosen, again);
  EXPECT_NE(chosen, other);
  EXPECT_EQ(chosen.size() + rest.size(), 1000u);
  std::set<std::int64_t> all(chosen.begin(), chosen.end());
  for (auto index : rest) EXPECT_EQ(all.count(index), 0u);
  auto counts = kr::data::class_counts(kr::data::take(set, chosen).labels, 10);
  for (auto count : counts) EXPECT_EQ(count, 10);
}

TEST(Split, PerClassLimit) {
  auto set = make_set(100, 4);
  auto chosen = kr::data::per_class_choice(set.labels, 4, 3, 1);
  auto counts = kr::data::class_counts(kr::data::take(set, chosen).labels, 4);
  for (auto count : counts) EXPECT_EQ(count, 3);
}

TEST(Augment, SampleDoesNotDependOnBatchPosition) {
  auto set = make_set(16, 2);
  kr::data::Augment augment{2, true};
  auto batch = kr::data::assemble_batch(set, {3, 9, 5}, augment, 11, 4);
  auto single = kr::data::assemble_batch(set, {9}, augment, 11, 4);
  EXPECT_TRUE(batch[1].equal(single[0]));
  auto other_epoch = kr::data::assemble_batch(set, {3, 9, 5}, augment, 11, 5);
  EXPECT_FALSE(batch.equal(other_epoch));
}

TEST(Augment, MixupBlendsNeighboursWithKeyedWeights) {
  auto set = make_set(16, 2);
  const std::vector<std::int64_t> rows{3, 9, 5, 1, 12};
  const std::vector<std::int64_t> keys{103, 109, 105, 101, 112};
  auto plain = kr::data::assemble_batch(set, rows, kr::data::Augment{}, 11, 4);
  auto mixed = plain.clone();
  const auto mix = kr::data::mix_pairs(mixed, keys, 0.4, 11, 4);
  const std::vector<std::int64_t> partners{1, 0, 3, 2, 4};  // the odd last row stays itself
  for (std::size_t b = 0; b < rows.size(); ++b) {
    const auto p = partners[b];
    EXPECT_EQ(mix.partner[b].item<std::int64_t>(), p);
    const float lambda = mix.lambda[b].item<float>();
    EXPECT_GE(lambda, 0.0f);
    EXPECT_LE(lambda, 1.0f);
    EXPECT_TRUE(mixed[b].allclose(plain[b] * lambda + plain[p] * (1.0f - lambda))) << b;
  }
  EXPECT_EQ(mix.lambda[4].item<float>(), 1.0f);
  EXPECT_FALSE(mixed.narrow(0, 0, 4).allclose(plain.narrow(0, 0, 4)));
  // Rank slices of even size mix the same pairs with the same weights as the whole batch.
  auto slice = plain.narrow(0, 2, 2).clone();
  kr::data::mix_pairs(slice, {105, 101}, 0.4, 11, 4);
  EXPECT_TRUE(slice.equal(mixed.narrow(0, 2, 2)));
}

TEST(Augment, NoAugmentationIsPlainScaling) {
  auto set = make_set(4, 2);
  auto batch = kr::data::assemble_batch(set, {0, 1, 2, 3}, kr::data::Augment{}, 0, 0);
  EXPECT_TRUE(batch.allclose(kr::data::to_float(set.images)));
  EXPECT_LE(batch.max().item<float>(), 1.0f);
  EXPECT_GE(batch.min().item<float>(), -1.0f);
}

TEST(DatasetFile, RoundTrip) {
  TempDir dir;
  auto dataset = toy_dataset(30, 3, 3);
  dataset.info.hflip = true;
  dataset.info.split_seed = 5;
  kr::io::write_dataset(dataset, dir / "data.h5");
  auto loaded = kr::io::read_dataset(dir / "data.h5");
  EXPECT_EQ(loaded.info.name, "toy");
  EXPECT_EQ(loaded.info.class_names, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(loaded.info.hflip);
  EXPECT_EQ(loaded.info.split_seed, 5u);
  EXPECT_TRUE(loaded.train.images.equal(dataset.train.images));
  EXPECT_TRUE(loaded.test.labels.equal(dataset.test.labels));
  // Nothing but the final file is left in the directory.
  int entries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
    entries += entry.exists();
  EXPECT_EQ(entries, 1);
}

TEST(DatasetFile, FailedWriteLeavesNothing) {
  TempDir dir;
  const auto dataset = toy_dataset(10, 3, 2);  // train label 2 is out of range for 2 classes
  EXPECT_THROW(kr::io::write_dataset(dataset, dir / "data.h5"), kr::Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(DatasetFile, TruncatedFileIsAnError) {
  TempDir dir;
  const auto dataset = toy_dataset(3000, 3, 3);
  kr::io::write_dataset(dataset, dir / "data.h5");
  const auto bytes = kr::read_file(dir / "data.h5");
  kr::test::write_bytes(dir / "cut.h5", bytes.substr(0, bytes.size() / 2));
  try {
    kr::io::read_dataset(dir / "cut.h5");
    FAIL() << "truncated file was read";
  } catch (const kr::Error& error) {
    EXPECT_NE(std::string(error.what()).find("cut.h5"), std::string::npos) << error.what();
  }
}

TEST(Strings, ListsSplitOnCommasAndSpacesAndIntegersAreChecked) {
  EXPECT_EQ(kr::split_list("a,b, c,,d "), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_TRUE(kr::split_list("").empty());
  EXPECT_EQ(kr::parse_int_list("7,250, 999", "indices"), (std::vector<std::int64_t>{7, 250, 999}));
  EXPECT_THROW(kr::parse_int_list("7,x", "indices"), kr::UsageError);
  EXPECT_THROW(kr::parse_int_list("12abc", "indices"), kr::UsageError);
}

TEST(Strings, GridsAreListsOrCountedRanges) {
  EXPECT_EQ(kr::parse_grid("1, 1.5,2", "g"), (std::vector<double>{1, 1.5, 2}));
  EXPECT_EQ(kr::parse_grid("1:2:0.25", "g"), (std::vector<double>{1, 1.25, 1.5, 1.75, 2}));
  // Counted, not accumulated: GaFi's tau grid ends at 0.9 exactly, with 10 values.
  const auto taus = kr::parse_grid("0:0.9:0.1", "g");
  ASSERT_EQ(taus.size(), 10u);
  EXPECT_EQ(taus.back(), 0.9);
  EXPECT_EQ(taus[3], 0.3);
  EXPECT_EQ(kr::parse_grid("1.0:2.0:0.05", "g").size(), 21u);
  EXPECT_EQ(kr::parse_grid("1:1.9:0.5", "g"), (std::vector<double>{1, 1.5}));
  for (const char* bad : {"", "1:2", "1:2:0", "2:1:0.5", "1:2:x", "a", "1:2:3:4"})
    EXPECT_THROW(kr::parse_grid(bad, "g"), kr::UsageError) << bad;
  EXPECT_EQ(kr::number_text(0.3), "0.3");
  EXPECT_EQ(kr::number_text(2.0), "2");
  EXPECT_EQ(std::stod(kr::number_text(0.1 + 0.2)), 0.1 + 0.2);  // 17 digits when needed
}
