// Membership-inference scores and their evaluation (METHOD.md "Membership
// inference", Carlini et al. 2022 LiRA). Higher score = "member".
//
// Note [Leave-one-out LiRA]
// The M runs of a recipe each train on their keep-row half of the pool. Each run
// in turn is the target and the other M - 1 its shadows; the scores of all
// targets are pooled (M x P scores with membership keep[j][x]). Per-augmentation
// scores are computed then averaged (never the phi values).
//
// Note [Balanced leave-one-out shadows]
// With a balanced keep matrix (every point IN exactly M/2 runs), leaving the target out
// ties the shadow counts to the target's membership: a point the target trained on has
// M/2 - 1 IN and M/2 OUT shadows, a point it did not has M/2 IN and M/2 - 1 OUT. The mean
// fitted from fewer shadows is the noisier one, and a Gaussian likelihood ratio penalises
// the noisier fit: at no true signal the expected online score of an IN point is
// -(1/(M/2 - 1) - 1/(M/2)) / 2 below zero and an OUT point's as far above, so online LiRA
// scored below chance (AUC 0.48 global, 0.42-0.44 per-example on Fashion-MNIST at M = 8).
// Inflating the variances by (1 + 1/n) does not remove it (the normalising constants
// still differ). So each point uses the same number of IN and OUT shadows, dropping
// shadows of the majority kind. Which ones must be random per point (keyed by target run,
// shadow run and point): dropping, say, the last one makes a run serve more often as an
// OUT shadow of the target's members and as an IN shadow of its non-members, and runs
// differ as a whole (one trains better, its scores are all higher), which then reads as
// membership: AUC 0.62 for a near-chance student at M = 4. With random drops every run is
// as often IN as OUT shadow for members and non-members alike, target and shadows are
// exchangeable under no signal, and every LiRA variant is unbiased there
// (Lira.LeaveOneOutIsUnbiasedWithoutSignal, with run-level offsets, M = 4 and 8).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kr/core/json.hpp"

namespace kr::privacy {

// phi = log p_y - log(sum_{k != y} p_k) from logits (..., K) in float64.
at::Tensor logit_scaled_confidence(const at::Tensor& logits, const at::Tensor& labels);

// Per-point membership scores from logits (..., P, K), float64 (..., P):
// stable = phi above (log-sum-exp in float64); unstable = log p_y - log(1 - p_y) from
// float32 softmax (saturates for confident points, as naive code does); margin =
// z_y - max_{k != y} z_k (the logit margin).
enum class ScoreKind { stable, unstable, margin };
at::Tensor point_score(const at::Tensor& logits, const at::Tensor& labels, ScoreKind kind);

// LiRA fitted on shadow scores (S, A, P) with in_mask (S, P) (1: that shadow trained on
// the point) and applied to the target's scores (A, P); each result is (P), averaged over
// the A augmentations. A point with no IN shadow uses its OUT mean plus the mean IN - OUT
// shift of the points that have both (Note [Degenerate LiRA fits]). Given balance_keys
// (S, P), each point's online fit uses as many IN shadows as OUT ones, those of lowest key
// (Note [Balanced leave-one-out shadows]).
//
// Note [Degenerate LiRA fits]
// A Gaussian's variance needs two shadows of its kind at a point. No score comes from a
// fit without them: per-example variants need every point (that has shadows of the kind)
// to have two; a global variance needs one degree of freedom pooled over the points, and
// when the balanced online fit has none (M = 4: one IN and one OUT shadow per point) its
// variance is pooled over all the leave-one-out shadows instead, which `notes` says.
// Offline LiRA uses every OUT shadow of a point, never the balanced subset. A variant
// that cannot be fitted is left undefined and named in `refused` with the reason.
struct LiraScores {
  at::Tensor online_global, online_per_example, offline_global, offline_per_example;
  std::vector<std::pair<std::string, std::string>> refused;  // variant, why
  std::vector<std::pair<std::string, std::string>> notes;    // variant, how it was computed
  at::Tensor online_shadows;  // (S, P) uint8: 1 IN, 2 OUT shadow of the online fit, 0 unused
  // The four variants by name (online_global, ...), in that order; undefined when refused.
  std::vector<std::pair<std::string, const at::Tensor*>> variants() const;
};
LiraScores lira(const at::Tensor& shadow_scores, const at::Tensor& in_mask,
                const at::Tensor& target, const at::Tensor& balance_keys = {});

// Inputs for one attacked recipe: logits[j] of run j on the pool, shape (A, P, K)
// (A query augmentations), pool labels (P), keep (M, P) bool.
struct AttackInputs {
  std::vector<at::Tensor> logits;
  at::Tensor labels;
  at::Tensor keep;
  // RMIA population: logits of every run on points no run trained on (A, Z, K), and their labels.
  std::vector<at::Tensor> population_logits;
  at::Tensor population_labels;
  double rmia_a =
      -1;  // RMIA's offline correction; < 0: chosen from reference models (Note [RMIA's a])
  std::string target = "target";  // names the attacked models in errors
};

// What attack_scores could not compute, and how it computed what it did differently.
struct AttackNotes {
  std::vector<std::pair<std::string, std::string>> refused;  // attack, why
  std::vector<std::pair<std::string, std::string>> notes;    // attack, how
  at::Tensor online_shadows;   // (M, M, P) uint8: [target run][shadow run][point], 1 IN, 2 OUT
  std::vector<double> rmia_a;  // RMIA's a for each target run
};

// Scores (M, P) float64 of every attack, by name: lira_online_global,
// lira_online_per_example, lira_offline_global, lira_offline_per_example,
// loss, confidence, entropy, modified_entropy, rmia_offline; an attack whose fit is
// degenerate for any target run is left out and named in `notes` (Note [Degenerate LiRA
// fits]). Non-finite logits or scores are an Error naming the target, the run and the point.
std::vector<std::pair<std::string, at::Tensor>> attack_scores(const AttackInputs& inputs,
                                                              AttackNotes* notes = nullptr);

// Note [Generator membership]
// GAN-Leaks' full black-box attack (Chen et al. 2020) on a released generator: a real
// image x is scored by d(x), its distance to the nearest of n images sampled from the
// generator (kr: L2 in pixels in [0, 1], to the samples of x's own class, as a
// class-conditional generator lets the attacker ask for x's class). distances (M, P):
// d of pool point x under run j's generator, the runs of a leave-one-out audit (Note
// [Leave-one-out LiRA]). Scores (M, P) float64, higher = member:
// - gan_leaks: -d, the uncalibrated attack;
// - gan_leaks_calibrated: mean of d over the OUT runs i != j minus d_j: Chen et al.'s
//   calibration by a reference generator, the other runs' generators not trained on x
//   as the references;
// - lira_*: the four LiRA variants on the statistic -log max(d, kDistanceFloor), as
//   attack_scores fits them on phi (one query).
// Refused attacks and notes go to `notes` as for attack_scores.
constexpr double kDistanceFloor = 1e-6;
std::vector<std::pair<std::string, at::Tensor>> distance_attack_scores(
    const at::Tensor& distances, const at::Tensor& keep, const std::string& target = "generator",
    AttackNotes* notes = nullptr);

struct RocSummary {
  double auc = 0.5;
  double balanced_accuracy = 0.5;
  double tpr_at_0_1 = 0, tpr_at_1 = 0, tpr_at_10 = 0;  // TPR at FPR <= 0.1 %, 1 %, 10 %
  std::int64_t members = 0, non_members = 0;
  std::vector<double> fpr, tpr;  // the curve, thinned to at most ~400 points
};

// ROC of scores (higher = member) against membership (both flattened).
RocSummary roc(const at::Tensor& scores, const at::Tensor& members, bool keep_curve = true);

// Rank-based AUC (ties count one half).
double roc_auc(const at::Tensor& scores, const at::Tensor& members);
// Largest TPR over thresholds whose FPR does not exceed `fpr`.
double tpr_at_fpr(const at::Tensor& scores, const at::Tensor& members, double fpr);

// Note [Point bootstrap]
// The M x P scores of a leave-one-out audit are not M x P independent rows: the M scores
// of one point share its difficulty. The bootstrap resamples points (clusters) with
// replacement and keeps every run's score of a drawn point; round r draws the same
// points for every target, so two targets' differences are paired.
//
// 95 % intervals of AUC and TPR at 0.1 % and 1 % FPR; scores and members are (P) or
// (M, P); `rounds` resamples keyed by seed; says how many distinct points and scores.
Json bootstrap_intervals(const at::Tensor& scores, const at::Tensor& members, int rounds,
                         std::uint64_t seed);
// A minus B on the same resampled points: the point differences of AUC and TPR at 0.1 %
// and 1 % FPR, their 95 % intervals and whether each interval excludes 0.
Json paired_difference(const at::Tensor& scores_a, const at::Tensor& members_a,
                       const at::Tensor& scores_b, const at::Tensor& members_b, int rounds,
                       std::uint64_t seed);

// A keep matrix (M, P) with every column IN for exactly M / 2 runs (M even), keyed by seed.
at::Tensor balanced_keep_matrix(std::int64_t runs, std::int64_t points, std::uint64_t seed);

}  // namespace kr::privacy
