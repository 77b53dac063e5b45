// Library code that the steps call: membership-run helpers, the report's reading and
// rendering, shard bookkeeping and commit, block sampling, typed options.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <thread>
#include <tuple>

#include "fixtures.hpp"
#include "kr/cli/options.hpp"
#include "kr/core/clock.hpp"
#include "kr/core/cost.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/data/augment.hpp"
#include "kr/gen/regenerate.hpp"
#include "kr/gen/sampler.hpp"
#include "kr/io/h5.hpp"
#include "kr/io/shard.hpp"
#include "kr/privacy/membership.hpp"
#include "kr/privacy/tckr.hpp"
#include "kr/report/html.hpp"
#include "kr/report/run_report.hpp"
#include "kr/steps/step.hpp"

using kr::Json;
using kr::test::TempDir;
using kr::test::write_bytes;

namespace {

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST(Membership, KeyedSubsetIsAKeyedPrefixOfAPermutation) {
  const auto a = kr::privacy::keyed_subset(1000, 100, 7, 1);
  EXPECT_EQ(a, kr::privacy::keyed_subset(1000, 100, 7, 1));
  EXPECT_NE(a, kr::privacy::keyed_subset(1000, 100, 8, 1));
  EXPECT_NE(a, kr::privacy::keyed_subset(1000, 100, 7, 2));
  ASSERT_EQ(a.size(), 100u);
  EXPECT_EQ(std::set<std::int64_t>(a.begin(), a.end()).size(), 100u);
  EXPECT_TRUE(std::all_of(a.begin(), a.end(), [](auto x) { return x >= 0 && x < 1000; }));
  // A longer subset with the same key extends the shorter one; n > total is capped.
  const auto longer = kr::privacy::keyed_subset(1000, 200, 7, 1);
  EXPECT_TRUE(std::equal(a.begin(), a.end(), longer.begin()));
  EXPECT_EQ(kr::privacy::keyed_subset(10, 50, 7, 1).size(), 10u);
}

TEST(Membership, KeptPositionsAndRowHash) {
  auto row = torch::tensor({0, 1, 1, 0, 1}, torch::kUInt8);
  EXPECT_EQ(kr::privacy::kept_positions(row), (std::vector<std::int64_t>{1, 2, 4}));
  auto other = row.clone();
  other[0] = 1;
  EXPECT_NE(kr::privacy::keep_row_sha256(row), kr::privacy::keep_row_sha256(other));
  EXPECT_EQ(kr::privacy::keep_row_sha256(row), kr::privacy::keep_row_sha256(row.clone()));
  EXPECT_EQ(kr::privacy::run_directory("/a/mia", "run", 3), "/a/mia/run_3");
}

TEST(Membership, SummaryFiguresAopAndCsvRow) {
  torch::manual_seed(0);
  auto members = (torch::arange(400) % 2).to(torch::kUInt8);
  auto scores = torch::randn({400}, torch::kFloat64) + 2.0 * members.to(torch::kFloat64);
  const auto figures = kr::privacy::summarize_attack(scores, members, 0.9, 20, 1);
  const double auc = figures.at("auc").get<double>();
  EXPECT_GT(auc, 0.8);
  EXPECT_NEAR(figures.at("aop").get<double>(), 0.9 * 0.25 / (auc * auc), 1e-12);
  EXPECT_EQ(figures.at("members").get<std::int64_t>(), 200);
  EXPECT_EQ(figures.at("non_members").get<std::int64_t>(), 200);
  const auto& interval = figures.at("bootstrap_95").at("auc");
  ASSERT_EQ(interval.size(), 2u);
  EXPECT_LE(interval[0].get<double>(), auc);
  EXPECT_GE(interval[1].get<double>(), auc);
  // No signal below chance: AOP is capped at the accuracy (AUC counted as 0.5).
  const auto chance = kr::privacy::summarize_attack(-scores, members, 0.9, 0, 1);
  EXPECT_DOUBLE_EQ(chance.at("aop").get<double>(), 0.9);
  const auto row = kr::privacy::attack_csv_row("student", "lira", figures, 0.9);
  const auto header = kr::privacy::attack_csv_header();
  EXPECT_EQ(std::count(row.begin(), row.end(), ','), std::count(header.begin(), header.end(), ','));
  EXPECT_EQ(row.rfind("student,lira,", 0), 0u);
  EXPECT_TRUE(contains(row, ",200,200,0.900000,")) << row;
}

TEST(Membership, TckrAuditReportsTheVariantOfHighestAuc) {
  torch::manual_seed(1);
  const std::int64_t points = 60, pairs = 2;
  auto labels = torch::randint(0, 3, {points}, torch::kInt64);
  auto truth = (torch::arange(points) < points / 2).to(torch::kUInt8);
  auto shadow_in = torch::randn({pairs, points, 3});
  auto shadow_out = torch::randn({pairs, points, 3});
  auto target = torch::randn({points, 3});
  const auto audit = kr::privacy::audit_target_tckr("teacher", shadow_in, shadow_out, target,
                                                    labels, truth, 0.8, 0, 1);
  ASSERT_EQ(audit.variants.size(), 12u);
  double best = -1;
  for (const auto& item : audit.variants.items())
    best = std::max(best, item.value().at("auc").get<double>());
  EXPECT_EQ(audit.variants.at(audit.best).at("auc").get<double>(), best);
  EXPECT_EQ(std::count(audit.csv.begin(), audit.csv.end(), '\n'), 12);
  EXPECT_TRUE(contains(audit.csv, "teacher,tckr_online_global_logit_stable,"));
  // The notebook's figures are reported, kr's own ROC of the same scores beside them.
  const auto& v = audit.variants.at("offline_global_logits");
  EXPECT_TRUE(v.at("kr_roc").contains("auc"));
  EXPECT_EQ(v.at("scored_points").get<std::int64_t>(), points);
}

TEST(Membership, QueryLogitsStacksIdentityThenMirror) {
  auto images = torch::randint(0, 256, {3, 1, 4, 4}, torch::kUInt8);
  // A "classifier" that returns its input's first row of pixels: shows what it was given.
  const kr::privacy::LogitsOf first_row = [](const at::Tensor& x) {
    return x.select(1, 0).select(1, 0).clone();
  };
  const auto plain = kr::privacy::query_logits(first_row, images, false);
  const auto both = kr::privacy::query_logits(first_row, images, true);
  ASSERT_EQ(plain.sizes(), (std::vector<std::int64_t>{1, 3, 4}));
  ASSERT_EQ(both.sizes(), (std::vector<std::int64_t>{2, 3, 4}));
  EXPECT_TRUE(torch::equal(both[0], plain[0]));
  EXPECT_TRUE(torch::equal(both[1], plain[0].flip({1})));
}

TEST(Membership, QueriesAreTheTrainingCropsAndFlips) {
  // Every image the training augmentation (crop padding 1, flips) can make of a point is
  // one of its 18 queries, and every query is one of them.
  kr::data::ImageSet set;
  set.images = torch::randint(1, 256, {1, 1, 6, 5}, torch::kUInt8);
  set.labels = torch::zeros({1}, torch::kInt64);
  const kr::privacy::LogitsOf pixels = [](const at::Tensor& x) { return x.flatten(1).clone(); };
  const auto queries = kr::privacy::query_logits(pixels, set.images, true, 1);
  ASSERT_EQ(queries.size(0), 18);
  EXPECT_EQ(kr::privacy::query_count(true, 1), 18);
  EXPECT_EQ(kr::privacy::query_count(false, 2), 25);
  EXPECT_TRUE(torch::equal(queries[0][0], kr::data::to_float(set.images).flatten()));
  std::vector<bool> seen(18, false);
  for (std::uint64_t epoch = 0; epoch < 400; ++epoch) {
    kr::data::Augment augment;
    augment.crop_padding = 1;
    augment.hflip = true;
    const auto crop = kr::data::assemble_batch(set, {0}, augment, 5, epoch).flatten();
    bool found = false;
    for (std::int64_t q = 0; q < 18; ++q)
      if (torch::equal(queries[q][0], crop)) found = seen[static_cast<std::size_t>(q)] = true;
    ASSERT_TRUE(found) << "epoch " << epoch << ": a training crop no query covers";
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), true), 18);
}

TEST(Membership, StratifiedSubsetKeepsEachClassShare) {
  // Candidates: rows 10..109 of labels with classes 60 / 30 / 10 among them.
  auto labels = torch::zeros({120}, torch::kInt64);
  std::vector<std::int64_t> candidates;
  for (std::int64_t row = 10; row < 110; ++row) {
    const std::int64_t k = row - 10;
    labels[row] = k < 60 ? 0 : (k < 90 ? 1 : 2);
    candidates.push_back(row);
  }
  labels.narrow(0, 0, 10).fill_(2);  // not candidates: never drawn
  const auto picked = kr::privacy::stratified_subset(labels, candidates, 20, 7, 1);
  ASSERT_EQ(picked.size(), 20u);
  std::int64_t counts[3] = {0, 0, 0};
  for (auto row : picked) {
    ASSERT_GE(row, 10);
    ASSERT_LT(row, 110);
    counts[labels[row].item<std::int64_t>()] += 1;
  }
  EXPECT_EQ(counts[0], 12);
  EXPECT_EQ(counts[1], 6);
  EXPECT_EQ(counts[2], 2);
  EXPECT_TRUE(std::is_sorted(picked.begin(), picked.end()));
  EXPECT_EQ(picked, kr::privacy::stratified_subset(labels, candidates, 20, 7, 1));
  EXPECT_NE(picked, kr::privacy::stratified_subset(labels, candidates, 20, 8, 1));
}

TEST(Membership, WriteTensorsMakesGroupsAndLeavesNoPartialFile) {
  TempDir dir;
  const std::string path = dir / "scores.h5";
  auto keep = torch::tensor({1, 0, 1}, torch::kUInt8);
  auto scores = torch::randn({3});
  kr::privacy::write_tensors(path, {{"keep", keep}, {"student/lira", scores}}, "a note");
  EXPECT_EQ(files_in(dir.path()), (std::vector<std::string>{"scores.h5"}));
  auto file = kr::io::h5::File::open_read(path);
  EXPECT_TRUE(torch::equal(kr::io::h5::read_tensor(file, "keep", torch::kUInt8, 1), keep));
  EXPECT_TRUE(
      torch::equal(kr::io::h5::read_tensor(file, "student/lira", torch::kFloat32, 1), scores));
  EXPECT_EQ(kr::io::h5::get_string_attr(file, "/", "note"), "a note");
}

TEST(Report, EscapeAndBase64) {
  EXPECT_EQ(kr::report::escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
  // RFC 4648 section 10.
  const std::pair<const char*, const char*> vectors[] = {{"", ""},
                                                         {"f", "Zg=="},
                                                         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},
                                                         {"foob", "Zm9vYg=="},
                                                         {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) EXPECT_EQ(kr::report::base64(plain), encoded);
  EXPECT_EQ(kr::report::percent(Json(0.12345)), "12.35 %");
  EXPECT_EQ(kr::report::percent(Json(nullptr)), "-");
  EXPECT_EQ(kr::report::number(Json(2.0), "%.1f"), "2.0");
}

TEST(Report, SvgPlotHasOneLinePerSeries) {
  const auto svg = kr::report::svg_plot(
      "t <1>", "x", "y", {{"a", {0.001, 0.1, 1}, {0.01, 0.5, 1}}, {"b", {0.001, 1}, {0.001, 1}}},
      true, true);
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  std::size_t lines = 0;
  for (auto at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1))
    ++lines;
  EXPECT_EQ(lines, 2u);
  EXPECT_TRUE(contains(svg, "t &lt;1&gt;"));
  EXPECT_TRUE(contains(svg, "stroke-dasharray"));  // the chance diagonal
}

TEST(Report, ReadsResultsFilesAndNamesABadOne) {
  TempDir dir;
  kr::make_dirs(dir / "results");
  EXPECT_THROW(kr::report::load_run(dir.path()), kr::Error);  // neither teacher nor student
  kr::write_file_atomic(dir / "results/teacher.json",
                        R"({"dataset": "fmnist", "test_accuracy": 0.9, "history": []})");
  kr::write_file_atomic(dir / "results/distill.json",
                        R"({"test_accuracy": 0.8, "gap_points": 10.0, "targets": "soft",
                            "history": [{"epoch": 1, "val_accuracy": 0.7}]})");
  kr::write_file_atomic(dir / "results/mia.json",
                        R"({"protocol": "LiRA", "runs": 4, "pool_size": 10, "targets": {"student":
          {"mean_test_accuracy": 0.8, "attacks": {"lira_online_global": {"auc": 0.55,
          "balanced_accuracy": 0.52, "tpr_at_0.1%": 0.0, "tpr_at_1%": 0.01, "tpr_at_10%": 0.1,
          "non_members": 20, "aop": 0.66, "bootstrap_95": {"auc": [0.5, 0.6]},
          "roc": {"fpr": [0, 1], "tpr": [0, 1]}}}}}})");
  const auto run = kr::report::load_run(dir.path());
  const auto summary = kr::report::summarize_run(run);
  EXPECT_EQ(summary.at("dataset"), "fmnist");
  EXPECT_EQ(summary.at("mia_student").at("lira_online_auc").get<double>(), 0.55);
  EXPECT_FALSE(summary.contains("mia_teacher"));
  EXPECT_EQ(kr::report::csv_row(summary), dir.path() + ",\"fmnist\",0.9,0.8,10.0,,0.55,0.0,0.66\n");
  const auto section = kr::report::run_section(run, summary);
  EXPECT_TRUE(contains(section, "0.5000 to 0.6000"));  // the interval is shown
  EXPECT_TRUE(contains(section, "LiRA online ROC"));
  EXPECT_TRUE(contains(section, "Training curves"));
  const auto page = kr::report::page(section);
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_FALSE(contains(page, "<script"));
  kr::write_file_atomic(dir / "results/generator.json", "{not json");
  try {
    kr::report::load_run(dir.path());
    FAIL() << "unparsable results file accepted";
  } catch (const kr::Error& error) {
    EXPECT_TRUE(contains(error.what(), "generator.json")) << error.what();
  }
}

namespace {

kr::io::Shard tiny_shard(std::int64_t n) {
  kr::io::Shard shard;
  shard.images = torch::randint(0, 256, {n, 1, 4, 4}, torch::kUInt8);
  shard.labels = torch::arange(n, torch::kInt64) % 2;
  return shard;
}

}  // namespace

TEST(Shards, ShardsToMakeFindsMissingAndBrokenOnes) {
  TempDir dir;
  EXPECT_EQ(kr::io::shard_count(100, 30), 4);
  EXPECT_EQ(kr::io::shard_count(90, 30), 3);
  // Blocks of 30 over 100 indices: 0, 30, 60, 90 (10). 0 and 60 good, 30 corrupt, 90 missing.
  for (const std::int64_t first : {0, 30, 60})
    kr::io::write_shard(dir / kr::io::shard_file_name(first, 30), tiny_shard(30),
                        {first, 30, "settings", "gen", 1}, Json::object());
  const auto broken = dir / kr::io::shard_file_name(30, 30);
  write_bytes(broken, kr::read_file(broken).substr(0, 100));
  std::int64_t kept = -1;
  EXPECT_TRUE(kr::io::shards_to_make(dir.path(), 100, 30, 0, 2, "settings", kept).empty());
  EXPECT_EQ(kept, 2);  // blocks 0 and 2
  EXPECT_EQ(kr::io::shards_to_make(dir.path(), 100, 30, 1, 2, "settings", kept),
            (std::vector<std::int64_t>{1, 3}));
  EXPECT_EQ(kept, 0);
  // Other settings: every existing shard is remade.
  EXPECT_EQ(kr::io::shards_to_make(dir.path(), 100, 30, 0, 1, "other", kept),
            (std::vector<std::int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(kept, 0);
}

TEST(Shards, CommitPoolWritesAManifestThatVerifies) {
  TempDir dir;
  kr::io::PoolDescription pool;
  pool.total = 50;
  pool.block = 30;
  pool.classes = 2;
  pool.image_shape = {1, 4, 4};
  pool.settings_hash = "settings";
  pool.settings = Json{{"seed", 1}};
  pool.layout = Json{{"world_size", 2}};
  for (const auto& [first, n] : {std::pair<std::int64_t, std::int64_t>{0, 30}, {30, 20}}) {
    kr::io::write_shard(dir / kr::io::shard_file_name(first, n), tiny_shard(n),
                        {first, n, "settings", "gen", 1}, Json::object());
    pool.made.push_back(kr::io::shard_file_name(first, n));
  }
  kr::io::commit_pool(dir.path(), pool);
  const auto manifest = Json::parse(kr::read_file(dir / "manifest.json"));
  EXPECT_EQ(manifest.at("layout").at("world_size"), 2);
  auto opened = kr::io::SyntheticPool::open(dir.path());
  EXPECT_EQ(opened.size(), 50);
  EXPECT_EQ(opened.classes(), 2);
  // A shard changed after the commit is named when the pool is opened.
  const auto second = dir / kr::io::shard_file_name(30, 20);
  kr::io::write_shard(second, tiny_shard(20), {30, 20, "settings", "gen", 1}, Json::object());
  try {
    kr::io::SyntheticPool::open(dir.path());
    FAIL() << "changed shard accepted";
  } catch (const kr::Error& error) {
    EXPECT_TRUE(contains(error.what(), kr::io::shard_file_name(30, 20))) << error.what();
  }
}

TEST(Regenerate, SampleBlockIsTheSampledRangeLabelledByTheTeacher) {
  torch::manual_seed(2);
  kr::gen::GeneratorSpec spec;
  spec.model = "gan";
  spec.g_width = spec.d_width = 8;
  spec.latent = 16;
  auto network = kr::gen::make_generator_model(spec);
  auto sampler = kr::gen::make_sampler(spec, network);
  kr::gen::RegenerationTimers timers;
  int calls = 0;
  const kr::gen::Labeller teacher = [&](const at::Tensor& x) {
    ++calls;
    return x.flatten(1).narrow(1, 0, spec.classes).clone();
  };
  const auto block = kr::gen::sample_block(*sampler, teacher, 20, 12, 5, 4, timers);
  EXPECT_TRUE(torch::equal(block.images, kr::gen::sample_range(*sampler, 20, 12, 5, 4)));
  EXPECT_TRUE(torch::equal(block.labels, kr::gen::classes_of_range(20, 12, spec.classes)));
  ASSERT_TRUE(block.teacher_logits.defined());
  EXPECT_EQ(block.teacher_logits.sizes(), (std::vector<std::int64_t>{12, spec.classes}));
  EXPECT_EQ(calls, 1);
  EXPECT_GT(timers.sampling, 0.0);
  const auto unlabelled = kr::gen::sample_block(*sampler, {}, 20, 12, 5, 4, timers);
  EXPECT_FALSE(unlabelled.teacher_logits.defined());
}

TEST(TypedOptions, EveryStepParsesItsDefaultsIntoItsStruct) {
  for (const auto& step : kr::steps::registry()) {
    kr::cli::DeclaredOptions declared(step);
    boost::program_options::variables_map values;
    std::vector<std::string> args;
    if (!step.positional.empty()) args = {"--" + step.positional, "x"};
    boost::program_options::store(
        boost::program_options::command_line_parser(args).options(declared.all).run(), values);
    EXPECT_NO_THROW(boost::program_options::notify(values)) << step.name;
    EXPECT_TRUE(declared.specific_table.storage() != nullptr) << step.name;
  }
}

namespace {
// The UsageError message `kr <step> args` gets from its declared bounds, "" if none.
std::string bound_error(const std::string& step_name, const std::vector<std::string>& args) {
  const auto* step = kr::steps::find_step(step_name);
  if (!step) return "no step " + step_name;
  kr::cli::DeclaredOptions declared(*step);
  boost::program_options::variables_map values;
  try {
    boost::program_options::store(
        boost::program_options::command_line_parser(args).options(declared.all).run(), values);
    boost::program_options::notify(values);
    declared.validate(values);
  } catch (const kr::UsageError& error) {
    return error.what();
  } catch (const boost::program_options::error& error) {
    return std::string("parse: ") + error.what();
  }
  return "";
}
}  // namespace

TEST(TypedOptions, EveryStepsDefaultsAreWithinTheirBounds) {
  for (const auto& step : kr::steps::registry()) {
    std::vector<std::string> args;
    if (!step.positional.empty()) args = {"--" + step.positional, "x"};
    EXPECT_EQ(bound_error(step.name, args), "") << step.name;
  }
}

// Issue 19, defect 5: these crashed with SIGFPE (136), printed LibTorch backtraces, or
// started 100,000 threads; each is now a usage error naming the option.
TEST(TypedOptions, CountsSizesAndRatesAreRefusedWhereDeclared) {
  const std::vector<std::tuple<std::string, std::vector<std::string>, std::string>> cases = {
      {"train-teacher", {"--batch", "0"}, "--batch must be at least 1, got 0"},
      {"distill", {"--batch", "0"}, "--batch must be at least 1, got 0"},
      {"sample", {"--sample-batch", "0"}, "--sample-batch must be at least 1, got 0"},
      {"train-teacher", {"--threads", "100000"}, "--threads must be between 0 and 1024"},
      {"train-teacher", {"--eval-batch", "0"}, "--eval-batch must be at least 1"},
      {"train-teacher", {"--lr", "nan"}, "--lr must be a finite number, got nan"},
      {"train-generator", {"--lr", "inf"}, "--lr must be a finite number, got inf"},
      {"train-teacher", {"--epochs", "0"}, "--epochs must be at least 1"},
      {"generate", {"--count", "-5"}, "--count must be at least 0, got -5"},
      {"train-teacher", {"--comm-timeout", "-1"}, "--comm-timeout must be at least 0.1"},
      {"mia", {"--runs", "1"}, "--runs must be at least 2"},
      {"prepare",
       {"--seed", "-1"},
       "--seed must be between 0 and 9223372036854775808, got a negative number"},
  };
  for (const auto& [step, args, expected] : cases) {
    const auto message = bound_error(step, args);
    EXPECT_NE(message.find(expected), std::string::npos)
        << step << " " << args[0] << " " << args[1] << ": " << message;
  }
  EXPECT_EQ(bound_error("train-teacher", {"--batch", "1", "--threads", "2", "--lr", "0.05"}), "");
}

TEST(TypedOptions, OperationalNamesAreTheOnesTheHashLeftOut) {
  // The names config_hash leaves out, as declared; before typed options this was a hand
  // list in step.cpp, and config hashes (checkpoint compatibility) must not move.
  std::set<std::string> declared_operational;
  for (const auto& step : kr::steps::registry()) {
    kr::cli::DeclaredOptions declared(step);
    const auto names = declared.operational();
    declared_operational.insert(names.begin(), names.end());
  }
  const std::set<std::string> expected = {
      "config",
      "workdir",
      "threads",
      "comm",
      "comm-timeout",
      "comm-warn",
      "umask",
      "resume",
      "allow-reshard",
      "stop-at-step",
      "progress-every",
      "checkpoint-every-steps",
      "checkpoint-every-minutes",
      "keep",
      "fault-rank",
      "fault-step",
      "fault-action",
      "out",
      "data",
      "overwrite",
      "help",
      "list",   // kr run --list (kr run writes no record)
      "json"};  // kr bench --json, the file it appends to (kr bench writes no record)
  EXPECT_EQ(declared_operational, expected);
  const Json config{{"epochs", 3}, {"out", "/a"}, {"resume", "never"}};
  const std::set<std::string> operational = {"out", "resume"};
  EXPECT_EQ(kr::steps::config_hash(config, operational),
            kr::steps::config_hash(Json{{"epochs", 3}, {"out", "/b"}}, operational));
  EXPECT_NE(kr::steps::config_hash(config, operational),
            kr::steps::config_hash(Json{{"epochs", 4}, {"out", "/a"}}, operational));
}

TEST(TypedOptions, ValuesAndSwitchesLandInTheirFields) {
  struct Fields {
    std::int64_t epochs = 0;
    std::string out;
    bool flag = false;
  } fields;
  boost::program_options::options_description description;
  kr::steps::OptionTable table(description);
  table("epochs", &fields.epochs, 5, "e")("out", &fields.out, "", "o")
      .operational()("flag", &fields.flag, "f");
  boost::program_options::variables_map values;
  const std::vector<std::string> args = {"--out", "/x", "--flag"};
  boost::program_options::store(
      boost::program_options::command_line_parser(args).options(description).run(), values);
  boost::program_options::notify(values);
  EXPECT_EQ(fields.epochs, 5);
  EXPECT_EQ(fields.out, "/x");
  EXPECT_TRUE(fields.flag);
  EXPECT_EQ(table.operational_names(), (std::set<std::string>{"out"}));
  const std::vector<std::string> misspelt = {"--epcohs", "3"};
  EXPECT_THROW(
      boost::program_options::store(
          boost::program_options::command_line_parser(misspelt).options(description).run(), values),
      boost::program_options::error);
}

TEST(Membership, RunRecordRoundTripsAndNamesABadFile) {
  TempDir dir;
  kr::privacy::MembershipRun record;
  record.run = 3;
  record.keep_row_sha256 = "ab";
  record.members = 500;
  record.seed = 4;
  record.targets = {{"teacher", {"ef", std::nan("")}},  // its results file said none
                    {"student", {"cd", 0.75}}};
  record.seconds = 12.5;
  record.status = "complete";
  record.write(dir / "run.json");
  const auto back = kr::privacy::MembershipRun::read(dir / "run.json");
  EXPECT_EQ(back.to_json().dump(), record.to_json().dump());  // fields and their order
  EXPECT_EQ(back.target("student")->test_accuracy, 0.75);
  EXPECT_TRUE(std::isnan(back.target("teacher")->test_accuracy));
  EXPECT_EQ(back.target("student_hard"), nullptr);
  EXPECT_FALSE(back.to_json().contains("generator_sha256"));  // trained none
  kr::write_file_atomic(dir / "bad.json", R"({"run": 1})");
  try {
    kr::privacy::MembershipRun::read(dir / "bad.json");
    FAIL() << "record without its fields accepted";
  } catch (const kr::Error& error) {
    EXPECT_TRUE(contains(error.what(), "bad.json")) << error.what();
  }
}

TEST(CostSplit, NestedScopesChargeTheInnerPartAndThePartsAddUpToTheWallTime) {
  using kr::cost::Part;
  using kr::cost::Scope;
  const auto nap = [](int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); };
  const auto wall_start = kr::Clock::now();
  const auto before = kr::cost::snapshot();
  nap(50);  // compute: outside every scope
  {
    const Scope io(Part::io);
    nap(50);
    {
      const Scope comm(Part::comm);  // a collective inside a file write: communication only
      nap(200);
    }
    nap(50);
  }
  {
    const Scope data(Part::data);
    nap(50);
  }
  const auto split = kr::cost::snapshot() - before;
  const double wall = kr::seconds_since(wall_start);
  const auto seconds = [&](Part part) { return split.seconds[static_cast<int>(part)]; };
  EXPECT_GE(seconds(Part::comm), 0.2);
  EXPECT_GE(seconds(Part::io), 0.1);
  EXPECT_LT(seconds(Part::io), 0.2) << "the nested communication was charged to I/O as well";
  EXPECT_GE(seconds(Part::data), 0.05);
  EXPECT_GE(seconds(Part::compute), 0.05);
  EXPECT_LT(seconds(Part::compute), 0.2) << "scoped time leaked into compute";
  EXPECT_NEAR(split.total(), wall, 0.01);
  const Json json = split.to_json();
  EXPECT_NEAR(json.at("comm_share").get<double>(), seconds(Part::comm) / split.total(), 1e-12);
  EXPECT_NEAR(json.at("wall_seconds").get<double>(), split.total(), 1e-12);
}
