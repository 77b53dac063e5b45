// Membership-inference maths, distillation targets and the synthetic shards.
#include <gtest/gtest.h>

#include <torch/torch.h>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <set>

#include "fixtures.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/privacy/membership.hpp"
#include "kr/io/shard.hpp"
#include "kr/privacy/attacks.hpp"
#include "kr/privacy/tckr.hpp"
#include "kr/train/distillation.hpp"

using kr::test::TempDir;
using kr::test::write_bytes;

TEST(Roc, IdenticalDistributionsGiveAucNearOneHalf) {
  torch::manual_seed(0);
  auto scores = torch::randn({20000}, torch::kFloat64);
  auto members = torch::rand({20000}) < 0.5;
  EXPECT_NEAR(kr::privacy::roc_auc(scores, members), 0.5, 0.02);
}

TEST(Roc, SeparatedDistributionsApproachOne) {
  torch::manual_seed(0);
  auto members = torch::rand({4000}) < 0.5;
  auto scores = torch::randn({4000}, torch::kFloat64) + 6.0 * members.to(torch::kFloat64);
  EXPECT_GT(kr::privacy::roc_auc(scores, members), 0.999);
  EXPECT_LT(kr::privacy::roc_auc(-scores, members), 0.001);
}

TEST(Roc, HandComputedCase) {
  // Scores high to low: M N M M N N N N N N (3 members, 7 non-members).
  auto scores = torch::tensor({10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0}, torch::kFloat64);
  auto members = torch::tensor({1, 0, 1, 1, 0, 0, 0, 0, 0, 0}).to(torch::kBool);
  EXPECT_NEAR(kr::privacy::tpr_at_fpr(scores, members, 0.0), 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(kr::privacy::tpr_at_fpr(scores, members, 0.1), 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(kr::privacy::tpr_at_fpr(scores, members, 1.0 / 7.0), 1.0, 1e-12);
  // Pairs ranked correctly: member 1 beats 7, members 2 and 3 beat 6 each: 19 of 21.
  EXPECT_NEAR(kr::privacy::roc_auc(scores, members), 19.0 / 21.0, 1e-12);
  const auto summary = kr::privacy::roc(scores, members);
  EXPECT_NEAR(summary.balanced_accuracy, 0.5 * (1.0 + 6.0 / 7.0), 1e-12);
  // Ties count one half.
  EXPECT_NEAR(kr::privacy::roc_auc(torch::ones({4}, torch::kFloat64),
                                   torch::tensor({1, 0, 1, 0}).to(torch::kBool)),
              0.5, 1e-12);
}

TEST(Roc, BootstrapIntervalContainsTheEstimate) {
  torch::manual_seed(1);
  auto members = torch::rand({2000}) < 0.5;
  auto scores = torch::randn({2000}, torch::kFloat64) + members.to(torch::kFloat64);
  const double auc = kr::privacy::roc_auc(scores, members);
  const auto ci = kr::privacy::bootstrap_intervals(scores, members, 50, 3).at("auc");
  EXPECT_LT(ci[0].get<double>(), auc);
  EXPECT_GT(ci[1].get<double>(), auc);
}

// Issue 20: the bootstrap resampled the M x P rows as if independent; the M scores of a
// point belong together (Note [Point bootstrap]). Here a score is its point's alone (no
// membership signal, points far apart): a resample of whole points holds, for every
// point drawn, as many member as non-member copies of the same score, so AUC is exactly
// 1/2 in every round; resampling rows breaks that up.
TEST(Roc, PointBootstrapKeepsEveryRunOfADrawnPoint) {
  const std::int64_t runs = 8, points = 300;
  auto keep = kr::privacy::balanced_keep_matrix(runs, points, 2).to(torch::kBool);
  auto scores = torch::arange(points, torch::kFloat64).unsqueeze(0).expand({runs, points});
  const auto clustered = kr::privacy::bootstrap_intervals(scores, keep, 100, 7);
  EXPECT_EQ(clustered.at("points").get<std::int64_t>(), points);
  EXPECT_EQ(clustered.at("scores").get<std::int64_t>(), runs * points);
  EXPECT_NEAR(clustered.at("auc")[0].get<double>(), 0.5, 1e-12) << clustered.dump();
  EXPECT_NEAR(clustered.at("auc")[1].get<double>(), 0.5, 1e-12) << clustered.dump();
  const auto rows =
      kr::privacy::bootstrap_intervals(scores.flatten(), keep.flatten(), 100, 7).at("auc");
  EXPECT_GT(rows[1].get<double>() - rows[0].get<double>(), 0.01) << rows.dump();
}

TEST(Roc, PairedDifferenceExcludesZeroOnlyWhenOneTargetLeaksMore) {
  torch::manual_seed(6);
  const std::int64_t runs = 8, points = 1000;
  auto keep = kr::privacy::balanced_keep_matrix(runs, points, 3).to(torch::kBool);
  auto noise = torch::randn({runs, points}, torch::kFloat64);
  auto leaky = noise + keep.to(torch::kFloat64) * 1.0;
  const auto same = kr::privacy::paired_difference(leaky, keep, leaky, keep, 100, 1);
  EXPECT_EQ(same.at("auc").get<double>(), 0.0);
  EXPECT_FALSE(same.at("auc_95_excludes_0").get<bool>());
  const auto more = kr::privacy::paired_difference(leaky, keep, noise, keep, 100, 1);
  EXPECT_GT(more.at("auc").get<double>(), 0.2);
  EXPECT_TRUE(more.at("auc_95_excludes_0").get<bool>()) << more.dump();
  EXPECT_GT(more.at("auc_95")[0].get<double>(), 0.0);
}

TEST(Lira, PhiIsTheLogOddsOfTheTrueClass) {
  auto logits = torch::tensor({{2.0, 0.0, -1.0}}, torch::kFloat64);
  auto p = torch::softmax(logits, 1);
  const double expected = std::log(p[0][0].item<double>()) - std::log(1 - p[0][0].item<double>());
  EXPECT_NEAR(kr::privacy::logit_scaled_confidence(logits, torch::tensor({0})).item<double>(),
              expected, 1e-12);
}

TEST(Lira, KeepMatrixPutsEveryPointInExactlyHalfTheRuns) {
  auto keep = kr::privacy::balanced_keep_matrix(8, 1000, 4);
  EXPECT_TRUE(keep.sum(0).eq(4).all().item<bool>());
  EXPECT_FALSE(torch::equal(keep[0], keep[1]));
  EXPECT_THROW(kr::privacy::balanced_keep_matrix(3, 10, 0), kr::UsageError);
}

namespace {

// Synthetic logits: members get a higher true-class logit by `gap` (with per-point difficulty).
kr::privacy::AttackInputs synthetic_runs(double gap, std::int64_t runs, std::int64_t points) {
  torch::manual_seed(5);
  kr::privacy::AttackInputs inputs;
  inputs.keep = kr::privacy::balanced_keep_matrix(runs, points, 9);
  inputs.labels = torch::randint(0, 10, {points}, torch::kInt64);
  auto difficulty = torch::randn({points}) * 2.0;
  for (std::int64_t j = 0; j < runs; ++j) {
    auto logits = torch::randn({1, points, 10}) * 0.3;
    auto boost =
        difficulty + gap * inputs.keep[j].to(torch::kFloat32) + torch::randn({points}) * 0.3;
    logits.index_put_({0, torch::arange(points), inputs.labels}, boost);
    inputs.logits.push_back(logits);
    inputs.population_logits.push_back(torch::randn({1, 50, 10}));
  }
  inputs.population_labels = torch::randint(0, 10, {50}, torch::kInt64);
  return inputs;
}

}  // namespace

TEST(Lira, RmiaAIsChosenFromReferenceRunsNeverTheTarget) {
  auto inputs = synthetic_runs(1.5, 6, 400);
  kr::privacy::AttackNotes notes;
  const auto scores = kr::privacy::attack_scores(inputs, &notes);
  ASSERT_EQ(notes.rmia_a.size(), 6u);
  for (double a : notes.rmia_a) {
    EXPECT_GE(a, 0.0);
    EXPECT_LE(a, 1.0);
    EXPECT_NEAR(a * 10.0, std::round(a * 10.0), 1e-9);  // on the grid 0, 0.1, ..., 1
  }
  // Run 0's a depends on neither its logits nor its membership.
  auto changed = inputs;
  changed.logits[0] = torch::randn_like(inputs.logits[0]) * 5.0;
  changed.population_logits[0] = torch::randn_like(inputs.population_logits[0]) * 5.0;
  kr::privacy::AttackNotes again;
  kr::privacy::attack_scores(changed, &again);
  EXPECT_EQ(again.rmia_a[0], notes.rmia_a[0]);
  // A fixed a is used as given.
  auto fixed = inputs;
  fixed.rmia_a = 0.3;
  kr::privacy::AttackNotes given;
  kr::privacy::attack_scores(fixed, &given);
  EXPECT_EQ(given.rmia_a, std::vector<double>(6, 0.3));
  // The online shadow selection: per target, equal IN and OUT shadows, the target unused.
  ASSERT_EQ(notes.online_shadows.sizes(), (std::vector<std::int64_t>{6, 6, 400}));
  for (std::int64_t j = 0; j < 6; ++j) {
    EXPECT_EQ(notes.online_shadows[j][j].sum().item<std::int64_t>(), 0);
    const auto in = notes.online_shadows[j].eq(1).sum(0);
    const auto out = notes.online_shadows[j].eq(2).sum(0);
    EXPECT_TRUE(torch::equal(in, out));
    EXPECT_TRUE(in.eq(2).all().item<bool>());  // M / 2 - 1 of each
  }
}

TEST(Lira, DetectsMembershipWhenPresentAndNotWhenAbsent) {
  for (double gap : {0.0, 1.5}) {
    auto inputs = synthetic_runs(gap, 8, 2000);
    for (const auto& [name, scores] : kr::privacy::attack_scores(inputs)) {
      const double auc = kr::privacy::roc_auc(scores, inputs.keep);
      if (gap == 0.0) {
        EXPECT_NEAR(auc, 0.5, 0.03) << name;
      } else if (name == "lira_online_global" || name == "lira_offline_global") {
        EXPECT_GT(auc, 0.85) << name;  // calibrated per point: sees through the difficulty
      }
    }
    if (gap > 0) {
      auto scores = kr::privacy::attack_scores(inputs);
      const double lira = kr::privacy::roc_auc(scores[0].second, inputs.keep);
      const double loss = kr::privacy::roc_auc(scores[4].second, inputs.keep);
      EXPECT_GT(lira, loss + 0.05);  // per-example calibration beats a global threshold
    }
  }
}

TEST(Lira, LeaveOneOutIsUnbiasedWithoutSignal) {
  // Note [Balanced leave-one-out shadows]: no membership signal; per-point means spread
  // like real ones, run-to-run noise of the same order, and each run offset as a whole
  // (runs train to different accuracies). Unbalanced leave-one-out scored online LiRA at
  // AUC 0.473 (global) and 0.439 (per-example) at M = 8; balancing by dropping the last
  // shadow of the majority kind scored 0.62 at M = 4 once runs differ. With 2 x 10^5
  // scores the AUC's noise is ~0.0013.
  for (const std::int64_t runs : {4, 8}) {
    torch::manual_seed(11);
    const std::int64_t points = 200000 / runs;
    kr::privacy::AttackInputs inputs;
    inputs.keep = kr::privacy::balanced_keep_matrix(runs, points, 3);
    inputs.labels = torch::zeros({points}, torch::kInt64);
    auto difficulty = torch::randn({points}) * 3.0 + 2.0;
    for (std::int64_t j = 0; j < runs; ++j) {
      // Two classes: phi is exactly the logit difference.
      auto phi = difficulty + 1.5 * static_cast<double>(j) +
                 torch::randn({points}) * (0.5 + difficulty.abs() * 0.2);
      inputs.logits.push_back(torch::stack({phi, torch::zeros_like(phi)}, -1).unsqueeze(0));
    }
    for (const auto& [name, scores] : kr::privacy::attack_scores(inputs))
      EXPECT_NEAR(kr::privacy::roc_auc(scores, inputs.keep), 0.5, 0.008)
          << name << " at M = " << runs;
  }
}

namespace {

// Distances of P points to M runs' generators: each point's own typical distance (some
// images are far from anything a generator makes), each run's offset (one generator is
// closer to everything), noise, and members closer by the factor `shrink`.
at::Tensor synthetic_distances(const at::Tensor& keep, double shrink, std::uint64_t seed) {
  torch::manual_seed(seed);
  const auto runs = keep.size(0), points = keep.size(1);
  auto typical = torch::rand({points}, torch::kFloat64) * 6.0 + 1.0;
  auto d = torch::empty({runs, points}, torch::kFloat64);
  for (std::int64_t j = 0; j < runs; ++j) {
    auto member = keep[j].to(torch::kFloat64);
    d[j] = typical * (1.0 + 0.01 * static_cast<double>(j)) *
           torch::exp(torch::randn({points}, torch::kFloat64) * 0.03) *
           (1.0 - (1.0 - shrink) * member);
  }
  return d;
}

}  // namespace

TEST(GeneratorMembership, CalibrationSeesThroughEachImagesTypicalDistance) {
  // Note [Generator membership]: with no signal every attack is at chance; with members
  // 8 % closer, the uncalibrated score is weak (the typical distance varies 7-fold) and the
  // calibrated and LiRA scores, referenced per point by the OUT runs, are strong.
  for (const std::int64_t runs : {4, 8})
    for (double shrink : {1.0, 0.92}) {
      const auto keep = kr::privacy::balanced_keep_matrix(runs, 32000 / runs, 2);
      kr::privacy::AttackNotes notes;
      const auto scores = kr::privacy::distance_attack_scores(synthetic_distances(keep, shrink, 4),
                                                              keep, "g", &notes);
      std::map<std::string, double> auc;
      for (const auto& [name, values] : scores) {
        ASSERT_EQ(values.sizes(), keep.sizes()) << name;
        auc[name] = kr::privacy::roc_auc(values, keep);
      }
      for (const char* name :
           {"gan_leaks", "gan_leaks_calibrated", "lira_online_global", "lira_offline_global"})
        ASSERT_TRUE(auc.count(name)) << name;
      if (shrink == 1.0) {
        for (const auto& [name, value] : auc)
          EXPECT_NEAR(value, 0.5, 0.02) << name << " M " << runs;
      } else {
        EXPECT_LT(auc["gan_leaks"], 0.6) << runs;
        // A difference of distances, not of their logs: a far image's noise is larger.
      EXPECT_GT(auc["gan_leaks_calibrated"], 0.85) << runs;
        EXPECT_GT(auc["lira_online_global"], 0.9) << runs;
        EXPECT_GT(auc["lira_offline_global"], 0.9) << runs;
      }
    }
}

TEST(GeneratorMembership, CopiesScoreFiniteAndBadDistancesAreRefused) {
  const auto keep = kr::privacy::balanced_keep_matrix(4, 50, 1);
  auto d = synthetic_distances(keep, 0.9, 3);
  d[1][7] = 0.0;  // a member copied exactly by run 1's generator
  const auto scores = kr::privacy::distance_attack_scores(d, keep);
  for (const auto& [name, values] : scores)
    EXPECT_TRUE(torch::isfinite(values).all().item<bool>()) << name;
  const auto audit = kr::privacy::audit_generator_target("generator", d, keep, 0.9, 10, 0);
  EXPECT_TRUE(audit.attacks.contains("gan_leaks_calibrated"));
  EXPECT_NE(audit.csv.find("generator,gan_leaks,"), std::string::npos);
  auto bad = d.clone();
  bad[2][3] = std::nan("");
  try {
    kr::privacy::distance_attack_scores(bad, keep, "generator2");
    FAIL() << "a NaN distance was accepted";
  } catch (const kr::Error& e) {
    EXPECT_NE(std::string(e.what()).find("generator2: membership run 2, pool point 3"),
              std::string::npos)
        << e.what();
  }
  bad[2][3] = -1.0;
  EXPECT_THROW(kr::privacy::distance_attack_scores(bad, keep), kr::Error);
  EXPECT_THROW(kr::privacy::distance_attack_scores(d.narrow(1, 0, 10), keep), kr::Error);
}

TEST(Tckr, ScoreKindsMatchHandComputedValues) {
  auto logits = torch::tensor({{{2.0, 0.5, -1.0}, {0.0, 3.0, 1.0}}}, torch::kFloat64);  // (1, 2, 3)
  auto labels = torch::tensor({0, 2});
  auto margin = kr::privacy::point_score(logits, labels, kr::privacy::ScoreKind::margin);
  EXPECT_NEAR(margin[0][0].item<double>(), 1.5, 1e-12);
  EXPECT_NEAR(margin[0][1].item<double>(), -2.0, 1e-12);
  auto stable = kr::privacy::point_score(logits, labels, kr::privacy::ScoreKind::stable);
  auto unstable = kr::privacy::point_score(logits, labels, kr::privacy::ScoreKind::unstable);
  EXPECT_TRUE(torch::allclose(stable, unstable, 1e-4, 1e-4));
  // A very confident point: float32 1 - p_y underflows, the unstable score saturates
  // while the stable one keeps the true log-odds.
  auto confident = torch::tensor({{{200.0, 0.0, 0.0}}}, torch::kFloat64);
  auto label0 = torch::tensor({0});
  EXPECT_NEAR(
      kr::privacy::point_score(confident, label0, kr::privacy::ScoreKind::stable).item<double>(),
      200.0 - std::log(2.0), 1e-9);
  EXPECT_LT(
      kr::privacy::point_score(confident, label0, kr::privacy::ScoreKind::unstable).item<double>(),
      100.0);
}

TEST(Tckr, PointsWithoutInShadowsAreStillScoredByTheMeanShift) {
  // Half the points (like TCKR's train members) were never IN a shadow; the target has
  // them as members. Scores: point difficulty d, +2 when trained on.
  torch::manual_seed(3);
  const std::int64_t shadows = 8, points = 2000, half = points / 2;
  auto difficulty = torch::randn({points}, torch::kFloat64) * 2.0;
  auto keep_test = kr::privacy::balanced_keep_matrix(shadows, half, 1);
  auto in = torch::cat({torch::zeros({shadows, half}, torch::kUInt8), keep_test}, 1);
  auto shadow = difficulty + 2.0 * in.to(torch::kFloat64) +
                0.3 * torch::randn({shadows, points}, torch::kFloat64);
  auto truth =
      torch::cat({torch::ones({half}, torch::kUInt8), torch::zeros({half}, torch::kUInt8)});
  auto target =
      difficulty + 2.0 * truth.to(torch::kFloat64) + 0.3 * torch::randn({points}, torch::kFloat64);
  const auto scores = kr::privacy::lira(shadow.unsqueeze(1), in, target.unsqueeze(0));
  EXPECT_GT(kr::privacy::roc_auc(scores.online_global, truth), 0.95);
  EXPECT_GT(kr::privacy::roc_auc(scores.offline_global, truth), 0.95);
  EXPECT_GT(kr::privacy::roc_auc(scores.online_per_example, truth), 0.9);
  // No membership signal in the target: every variant near chance.
  auto blind = difficulty + 0.3 * torch::randn({points}, torch::kFloat64);
  const auto none = kr::privacy::lira(shadow.unsqueeze(1), in, blind.unsqueeze(0));
  EXPECT_NEAR(kr::privacy::roc_auc(none.offline_global, truth), 0.5, 0.05);
}

// Note [TCKR notebook]: tests/reference/tckr_notebook.py transcribes the notebook's scoring
// and ran it (with scikit-learn's roc_curve) on the fixed arrays stored beside its figures.
TEST(Tckr, MatchesTheNotebookTranscription) {
  const auto reference =
      kr::Json::parse(kr::read_file(std::string(KR_TEST_REFERENCE_DIR) + "/tckr_notebook.json"));
  const auto tensor = [&](const char* key, std::vector<std::int64_t> shape) {
    std::vector<double> flat;
    std::function<void(const kr::Json&)> walk = [&](const kr::Json& j) {
      if (j.is_array())
        for (const auto& x : j) walk(x);
      else
        flat.push_back(j.get<double>());
    };
    walk(reference.at(key));
    return torch::tensor(flat, torch::kFloat64).to(torch::kFloat32).reshape(shape);
  };
  const auto labels_list = reference.at("labels").get<std::vector<std::int64_t>>();
  const auto n = static_cast<std::int64_t>(labels_list.size());
  const auto pairs = static_cast<std::int64_t>(reference.at("shadow_in").size());
  const auto k = static_cast<std::int64_t>(reference.at("target")[0].size());
  const auto labels = torch::tensor(labels_list, torch::kInt64);
  const auto members =
      torch::tensor(reference.at("membership").get<std::vector<double>>(), torch::kFloat64);
  const auto variants = kr::privacy::tckr_variants(tensor("shadow_in", {pairs, n, k}),
                                                   tensor("shadow_out", {pairs, n, k}),
                                                   tensor("target", {n, k}), labels, members);
  ASSERT_EQ(variants.size(), reference.at("variants").size());
  for (std::size_t i = 0; i < variants.size(); ++i) {
    const auto& expected = reference.at("variants")[i];
    const auto& got = variants[i];
    EXPECT_EQ(got.name, expected.at("name").get<std::string>());
    EXPECT_EQ(got.kept.sum().item<std::int64_t>(), expected.at("kept").get<std::int64_t>());
    EXPECT_NEAR(got.evaluation.auc, expected.at("auc").get<double>(), 1e-12) << got.name;
    EXPECT_NEAR(got.evaluation.tpr_at_0_1, expected.at("tpr_at_0.1%").get<double>(), 1e-12)
        << got.name;
    EXPECT_NEAR(got.evaluation.tpr_at_1, expected.at("tpr_at_1%").get<double>(), 1e-12) << got.name;
    EXPECT_NEAR(got.evaluation.tpr_at_10, expected.at("tpr_at_10%").get<double>(), 1e-12)
        << got.name;
  }
  EXPECT_EQ(variants[kr::privacy::tckr_best(variants)].name,
            reference.at("best").get<std::string>());
}

TEST(Tckr, NotebookTprIsReadPastTheFprAskedFor) {
  // 500 non-members with distinct scores and one member tied with the top one: the ROC's
  // first point after (0, 0) is (FPR 0.002, TPR 1). The notebook reads TPR at 0.1 % FPR at
  // the first point whose FPR is >= 0.001, so 1; kr's ROC (FPR <= 0.001) gives 0.
  std::vector<double> scores, members;
  for (int i = 0; i < 500; ++i) {
    scores.push_back(500.0 - i);
    members.push_back(0);
  }
  scores.push_back(500.0);
  members.push_back(1);
  const auto s = torch::tensor(scores, torch::kFloat64);
  const auto m = torch::tensor(members, torch::kFloat64);
  const auto notebook = kr::privacy::tckr_evaluate(s, m);
  EXPECT_DOUBLE_EQ(notebook.tpr_at_0_1, 1.0);
  EXPECT_EQ(kr::privacy::tpr_at_fpr(s, m, 0.001), 0.0);
  EXPECT_NEAR(notebook.auc, 499.5 / 500.0, 1e-12);
  EXPECT_NEAR(notebook.auc, kr::privacy::roc_auc(s, m), 1e-12);
}

// Issue 20: log(0.5 erfc(-z / sqrt 2)) is exactly 0 from z ~ 8.3 on, so the most confident
// members tied with outlying non-members at the top offline score: TPR at 1 % FPR 0.
TEST(Lira, OfflineUpperTailDoesNotSaturate) {
  torch::manual_seed(2);
  const std::int64_t points = 1000, members = 100, outliers = 10, shadows = 6;
  // Every point's OUT shadows: mean 0, standard deviation 1 (no IN shadows).
  auto column = torch::tensor({-1.5, -0.5, 0.0, 0.0, 0.5, 1.5}, torch::kFloat64);
  auto shadow = column.view({shadows, 1, 1}).expand({shadows, 1, points}).contiguous();
  auto in = torch::zeros({shadows, points}, torch::kUInt8);
  auto target = torch::randn({points}, torch::kFloat64);
  target.slice(0, 0, members).uniform_(9.0, 12.0);                  // confident members
  target.slice(0, members, members + outliers).uniform_(8.4, 8.9);  // outlying non-members
  auto truth = torch::zeros({points}, torch::kUInt8);
  truth.slice(0, 0, members).fill_(1);
  const auto scores = kr::privacy::lira(shadow, in, target.unsqueeze(0));
  ASSERT_TRUE(scores.offline_global.defined());
  // Strictly ordered by z and below 0 in the upper tail.
  auto top = scores.offline_global.slice(0, 0, members + outliers);
  auto order = target.slice(0, 0, members + outliers).argsort();
  auto sorted = top.index_select(0, order);
  EXPECT_TRUE((sorted.slice(0, 1) - sorted.slice(0, 0, -1)).gt(0).all().item<bool>());
  EXPECT_TRUE(top.lt(0).all().item<bool>());
  EXPECT_DOUBLE_EQ(kr::privacy::tpr_at_fpr(scores.offline_global, truth, 0.01), 1.0);
  EXPECT_DOUBLE_EQ(kr::privacy::tpr_at_fpr(scores.offline_per_example, truth, 0.01), 1.0);
}

// Issue 20: offline LiRA needs OUT shadows only; it used the balanced subset.
TEST(Lira, OfflineUsesEveryOutShadow) {
  // Two points, three shadows: one IN (value 5), two OUT (0 and 2: mean 1, variance 2).
  auto shadow = torch::tensor({5.0, 0.0, 2.0}, torch::kFloat64).view({3, 1, 1}).expand({3, 1, 2});
  auto in = torch::tensor({1, 0, 0}, torch::kUInt8).view({3, 1}).expand({3, 2}).contiguous();
  auto keys = torch::tensor({{0.1, 0.1}, {0.2, 0.9}, {0.9, 0.2}}, torch::kFloat64);
  auto target = torch::tensor({{1.0, 3.0}}, torch::kFloat64);
  const auto scores = kr::privacy::lira(shadow.contiguous(), in, target, keys);
  ASSERT_TRUE(scores.offline_global.defined());
  ASSERT_TRUE(scores.offline_per_example.defined());
  const double sd = std::sqrt(2.0);
  const auto log_phi = [](double z) { return std::log(0.5 * std::erfc(-z / std::sqrt(2.0))); };
  for (const auto& offline : {scores.offline_global, scores.offline_per_example}) {
    EXPECT_NEAR(offline[0].item<double>(), log_phi(0.0), 1e-12);
    EXPECT_NEAR(offline[1].item<double>(), log_phi(2.0 / sd), 1e-12);
  }
}

// Issue 20: at M = 4 (balanced: one IN and one OUT shadow per point) per-example rows
// silently equalled the global ones and the variance fell to its 1e-6 floor.
TEST(Lira, DegenerateFitsAreRefusedOrPooledAndSaySo) {
  auto inputs = synthetic_runs(1.5, 4, 400);
  kr::privacy::AttackNotes notes;
  const auto scores = kr::privacy::attack_scores(inputs, &notes);
  std::set<std::string> names;
  for (const auto& [name, values] : scores) names.insert(name);
  EXPECT_FALSE(names.count("lira_online_per_example"));
  EXPECT_FALSE(names.count("lira_offline_per_example"));
  ASSERT_TRUE(names.count("lira_online_global") && names.count("lira_offline_global"));
  std::map<std::string, std::string> refused(notes.refused.begin(), notes.refused.end());
  std::map<std::string, std::string> how(notes.notes.begin(), notes.notes.end());
  EXPECT_NE(refused["lira_online_per_example"].find("--runs >= 6"), std::string::npos);
  EXPECT_NE(refused["lira_offline_per_example"].find("only 1 OUT shadow"), std::string::npos)
      << refused["lira_offline_per_example"];
  EXPECT_NE(how["lira_online_global"].find("pooled over all 3 shadows"), std::string::npos)
      << how["lira_online_global"];
  // Not a sign test: the global online scores keep the members' order of magnitude.
  for (const auto& [name, values] : scores)
    if (name == "lira_online_global") {
      EXPECT_LT(values.abs().max().item<double>(), 1e3) << "variance at its floor";
      EXPECT_GT(kr::privacy::roc_auc(values, inputs.keep), 0.8);
    }
  // M = 8: every variant fitted, nothing refused.
  kr::privacy::AttackNotes eight;
  EXPECT_EQ(kr::privacy::attack_scores(synthetic_runs(1.5, 8, 400), &eight).size(), 9u);
  EXPECT_TRUE(eight.refused.empty());
}

// Issue 20: a NaN in one run's logits broke the sort silently.
TEST(Lira, NonFiniteLogitsNameTheRunAndThePoint) {
  auto inputs = synthetic_runs(1.5, 4, 50);
  inputs.target = "student";
  inputs.logits[1][0][7][3] = std::numeric_limits<float>::quiet_NaN();
  try {
    kr::privacy::attack_scores(inputs);
    FAIL() << "NaN logits accepted";
  } catch (const kr::Error& error) {
    EXPECT_NE(std::string(error.what()).find("student: membership run 1, pool point 7"),
              std::string::npos)
        << error.what();
  }
}

TEST(Distillation, SoftTargetsAreTheTemperedSoftmaxAndSmoothingMixesUniform) {
  auto logits = torch::tensor({{1.0, 2.0, 4.0}, {0.0, 0.0, 0.0}});
  EXPECT_TRUE(
      torch::allclose(kr::train::soft_targets(logits, 2.0, 0.0), torch::softmax(logits / 2.0, 1)));
  auto smoothed = kr::train::soft_targets(logits, 1.0, 0.3);
  EXPECT_TRUE(torch::allclose(smoothed, 0.7 * torch::softmax(logits, 1) + 0.1));
  EXPECT_TRUE(torch::allclose(smoothed.sum(1), torch::ones({2})));
  // The loss is minimal (equal to T^2 times the targets' entropy) when the student matches.
  auto q = kr::train::soft_targets(logits, 2.0, 0.0);
  const double at_match = kr::train::distillation_loss(logits, q, 2.0).item<double>();
  const double entropy = -(q * q.log()).sum(1).mean().item<double>() * 4.0;
  EXPECT_NEAR(at_match, entropy, 1e-5);
  EXPECT_GT(kr::train::distillation_loss(logits.flip({1}), q, 2.0).item<double>(), at_match);
}

TEST(Distillation, RegenerationReadsDisjointPartsEachEpoch) {
  EXPECT_EQ(kr::train::pool_part(0, 1), 0);
  EXPECT_EQ(kr::train::pool_part(1, 1), 1);
  EXPECT_EQ(kr::train::pool_part(5, 2), 2);
  EXPECT_EQ(kr::train::pool_part(7, 0), 0);  // no regeneration: one fixed set
}

namespace {

// A tiny synthetic pool part: 12 images 1x8x8 of 3 classes, first global index 500.
kr::data::ImageSet tiny_part() {
  torch::manual_seed(5);
  kr::data::ImageSet part;
  part.images = torch::randint(0, 256, {12, 1, 8, 8}, torch::kInt64).to(torch::kUInt8);
  part.labels = torch::arange(12, torch::kInt64).remainder(3);
  return part;
}

kr::train::DistillSettings tiny_settings(kr::train::TargetKind kind) {
  kr::train::DistillSettings settings;
  settings.kind = kind;
  settings.temperature = 2.0;
  settings.augment = kr::data::Augment{2, true};
  settings.seed = 9;
  settings.classes = 3;
  return settings;
}

}  // namespace

TEST(Distillation, SoftTargetsAreTheTeacherOnTheExactAugmentedMixedBatch) {
  auto part = tiny_part();
  torch::nn::Linear teacher(64, 3);
  at::Tensor seen;
  auto teacher_fn = [&](const at::Tensor& images) {
    seen = images.clone();
    return teacher(images.flatten(1));
  };
  auto settings = tiny_settings(kr::train::TargetKind::soft);
  settings.mixup = 0.4;
  const std::vector<std::int64_t> local{7, 2, 11, 4};
  const auto batch = kr::train::make_distill_batch(settings, part, 500, local, 3, teacher_fn, {});
  // Recompute: the same keyed crops, flips and mixing weights, by global index 500 + row.
  const std::vector<std::int64_t> global{507, 502, 511, 504};
  auto images = kr::data::assemble_batch(part, local, settings.augment, 9, 3, &global);
  kr::data::mix_pairs(images, global, 0.4, 9, 3);
  EXPECT_TRUE(batch.images.equal(images));
  EXPECT_TRUE(seen.equal(images));  // the teacher labelled exactly what the student sees
  EXPECT_FALSE(images.equal(kr::data::to_float(part.images.index_select(
      0, torch::tensor(local, torch::kInt64)))));  // augmented and mixed, not the raw rows
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(batch.targets.allclose(torch::softmax(teacher(images.flatten(1)) / 2.0, 1)));
  EXPECT_FALSE(batch.targets.requires_grad());
}

TEST(Distillation, StoredTargetsAreTheShardLogitsOnUnaugmentedImages) {
  auto part = tiny_part();
  auto stored = torch::randn({12, 3});
  auto settings = tiny_settings(kr::train::TargetKind::stored);
  const std::vector<std::int64_t> local{0, 5, 9};
  auto no_teacher = [](const at::Tensor&) -> at::Tensor {
    throw std::logic_error("stored targets must not run the teacher");
  };
  const auto batch = kr::train::make_distill_batch(settings, part, 0, local, 1, no_teacher, stored);
  const auto rows = torch::tensor(local, torch::kInt64);
  EXPECT_TRUE(batch.images.equal(kr::data::to_float(part.images.index_select(0, rows))));
  EXPECT_TRUE(batch.targets.allclose(torch::softmax(stored.index_select(0, rows) / 2.0, 1)));
  settings.mixup = 0.2;
  EXPECT_THROW(kr::train::make_distill_batch(settings, part, 0, local, 1, no_teacher, stored),
               kr::UsageError);
}

TEST(Distillation, HardTargetsAreTheConditioningLabels) {
  auto part = tiny_part();
  auto settings = tiny_settings(kr::train::TargetKind::hard);
  settings.smoothing = 0.3;
  const std::vector<std::int64_t> local{1, 2, 3, 4, 8};
  auto no_teacher = [](const at::Tensor&) -> at::Tensor {
    throw std::logic_error("hard targets must not run the teacher");
  };
  auto batch = kr::train::make_distill_batch(settings, part, 0, local, 0, no_teacher, {});
  auto labels = part.labels.index_select(0, torch::tensor(local, torch::kInt64));
  EXPECT_TRUE(batch.targets.argmax(1).equal(labels));
  EXPECT_TRUE(batch.targets.allclose(torch::one_hot(labels, 3).to(torch::kFloat32) * 0.7 + 0.1));
  // With mixup the label targets mix like the images: lambda y_b + (1 - lambda) y_partner.
  settings.mixup = 1.0;
  settings.smoothing = 0.0;
  batch = kr::train::make_distill_batch(settings, part, 0, local, 0, no_teacher, {});
  EXPECT_TRUE(batch.targets.sum(1).allclose(torch::ones({5})));
  EXPECT_NEAR(batch.targets[4][labels[4].item<std::int64_t>()].item<float>(), 1.0f, 1e-6);
  const float lambda = batch.targets[0][labels[0].item<std::int64_t>()].item<float>();
  EXPECT_NEAR(batch.targets[0][labels[1].item<std::int64_t>()].item<float>(), 1.0f - lambda, 1e-6);
}

TEST(Distillation, StudentOnSoftTargetsComesToAgreeWithAFixedTeacher) {
  // A fixed random teacher over 2x4x4 inputs; a student of the same form trained
  // only on the teacher's soft predictions over fresh inputs each step.
  torch::manual_seed(3);
  torch::nn::Sequential teacher(torch::nn::Flatten(), torch::nn::Linear(32, 16), torch::nn::Tanh(),
                                torch::nn::Linear(16, 4));
  torch::nn::Sequential student(torch::nn::Flatten(), torch::nn::Linear(32, 16), torch::nn::Tanh(),
                                torch::nn::Linear(16, 4));
  auto held_out = torch::randn({2000, 2, 4, 4});
  auto agreement = [&] {
    torch::NoGradGuard no_grad;
    return student->forward(held_out)
        .argmax(1)
        .eq(teacher->forward(held_out).argmax(1))
        .to(torch::kFloat64)
        .mean()
        .item<double>();
  };
  const double before = agreement();
  kr::train::DistillSettings settings;
  settings.temperature = 2.0;
  torch::optim::Adam adam(student->parameters(), torch::optim::AdamOptions(1e-2));
  for (int step = 0; step < 300; ++step) {
    auto inputs = torch::randn({64, 2, 4, 4});
    kr::train::DistillBatch batch;
    {
      torch::NoGradGuard no_grad;
      batch.targets = kr::train::soft_targets(teacher->forward(inputs), 2.0, 0.0);
    }
    auto loss = kr::train::distill_loss(settings, student->forward(inputs), batch);
    adam.zero_grad();
    loss.backward();
    adam.step();
  }
  const double after = agreement();
  EXPECT_GT(after, before + 0.3);
  EXPECT_GT(after, 0.9);
}

TEST(Shards, RoundTripAndCorruptionIsNamed) {
  TempDir dir;
  kr::io::Shard shard;
  shard.images = torch::randint(0, 256, {30, 1, 28, 28}, torch::kUInt8);
  shard.labels = torch::arange(30, torch::kInt64) % 10;
  shard.teacher_logits = torch::randn({30, 10});
  const std::string path = dir / kr::io::shard_file_name(60, 30);
  kr::io::write_shard(path, shard, {60, 30, "settings", "gen", 1}, kr::Json::object());
  auto back = kr::io::read_shard(path, 60, 30, "settings");
  EXPECT_TRUE(torch::equal(back.images, shard.images));
  EXPECT_TRUE(torch::equal(back.labels, shard.labels));
  EXPECT_TRUE(torch::equal(back.teacher_logits, shard.teacher_logits));
  EXPECT_NE(kr::io::check_shard(path, 60, 30, "other settings"), "");
  EXPECT_NE(kr::io::check_shard(path, 0, 30, "settings"), "");
  // Truncation: the error names the file.
  const auto bytes = kr::read_file(path);
  write_bytes(path, bytes.substr(0, bytes.size() / 2));
  try {
    kr::io::read_shard(path);
    FAIL() << "truncated shard accepted";
  } catch (const kr::Error& error) {
    EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << error.what();
  }
}
