// Membership runs of an audit (`kr mia`): which points a run trains on, dealing and
// resuming runs over ranks, the logits a run leaves behind, and the figures of every
// attack (Note [Leave-one-out LiRA], Note [TCKR protocol]).
//
// Note [Membership runs]
// An audit trains M runs (the recipe on its keep-row half of a pool, or for TCKR's
// protocol a teacher on its half of test). Runs are independent: run j goes whole to
// rank j % world, on that rank's own one-rank communicator (no all-reduce between
// runs), so M runs on R ranks take ceil(M / R) run times. Each run leaves
// <out>/<prefix>_<j>/logits.h5 and a run.json with status "complete"; a rerun, at any
// rank count, skips complete runs and replays the rest (their steps resume from their
// own checkpoints). comm::deal_jobs (Note [Dealt jobs]) is the one loop that deals and
// resumes for both protocols. Scoring then happens on rank 0 over every run's logits.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kr/core/json.hpp"
#include "kr/privacy/attacks.hpp"

namespace kr::comm {
class Communicator;
}

namespace kr::privacy {

// The first min(n, total) of a keyed random permutation of 0..total-1 (`tag` names the use).
std::vector<std::int64_t> keyed_subset(std::int64_t total, std::int64_t n, std::uint64_t seed,
                                       std::uint64_t tag);

// The positions where keep row `row` (uint8, one per point) is set.
std::vector<std::int64_t> kept_positions(const at::Tensor& row);

// sha256 of a keep row's bytes (uint8), as recorded in a run's run.json.
std::string keep_row_sha256(const at::Tensor& row);

// <out>/<prefix>_<j>
std::string run_directory(const std::string& out, const std::string& prefix, std::int64_t run);

// A membership run's record, <out>/<prefix>_<j>/run.json (one schema, written by the
// run and read by the scoring): which keep row it trained on, what each of its models
// is (weights, test accuracy), what it took. status "complete" marks it done.
struct RunTarget {
  std::string weights_sha256;
  double test_accuracy = 0.0;  // NaN when the model's results file said none
};
struct MembershipRun {
  std::int64_t run = 0;
  std::string keep_row_sha256;
  std::uint64_t members = 0;
  std::uint64_t seed = 0;
  // teacher, student, student_hard: in the order the run recorded them (run.json keeps it)
  std::vector<std::pair<std::string, RunTarget>> targets;
  std::string generator_sha256;  // "" when the run trained none
  std::string pool_manifest_sha256;
  double seconds = 0.0;
  std::string status;

  const RunTarget* target(const std::string& name) const;  // nullptr when not trained
  Json to_json() const;
  // Errors name `path` and the missing or mistyped field.
  static MembershipRun from_json(const Json& json, const std::string& path);
  static MembershipRun read(const std::string& path);
  void write(const std::string& path) const;  // atomic
};

// Logits (A, N, K), float32, of `logits_of` (float images in, logits out) on uint8 images
// under the query augmentations: every crop shift (dy, dx) in [-shift, shift]^2 (the
// image moved, zero fill, as the training crop does), each also mirrored when `mirror`;
// A = query_count(mirror, shift), identity first.
using LogitsOf = std::function<at::Tensor(const at::Tensor&)>;
std::int64_t query_count(bool mirror, int shift);
at::Tensor query_logits(const LogitsOf& logits_of, const at::Tensor& images, bool mirror,
                        int shift = 0);

// n of `candidates` (row indices into labels), drawn at random (keyed by seed and tag) and
// stratified by class: each class's share of n is its share of the candidates (largest
// remainders); sorted.
std::vector<std::int64_t> stratified_subset(const at::Tensor& labels,
                                            const std::vector<std::int64_t>& candidates,
                                            std::int64_t n, std::uint64_t seed, std::uint64_t tag);
// floor(fraction x count) of each class's candidates, drawn at random (keyed); sorted. As
// TCKR's get_stratified_splits takes its train part (Note [TCKR notebook]).
std::vector<std::int64_t> stratified_fraction(const at::Tensor& labels,
                                              const std::vector<std::int64_t>& candidates,
                                              double fraction, std::uint64_t seed,
                                              std::uint64_t tag);

// An HDF5 file of named tensors and a root "note", written through a pending file so
// a crash leaves no file that looks complete (keep.h5, logits.h5).
struct NamedTensor {
  std::string name;
  at::Tensor tensor;
};
void write_tensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                   const std::string& note = "");

// One attack's figures: ROC summary, 95 % bootstrap intervals, the ROC curve, and
// AOP = accuracy * (0.5 / max(AUC, 0.5))^2.
Json summarize_attack(const at::Tensor& scores, const at::Tensor& members, double accuracy,
                      int bootstrap, std::uint64_t seed);

// results/mia.csv: its header and one row of summarize_attack's figures.
std::string attack_csv_header();
std::string attack_csv_row(const std::string& target, const std::string& attack,
                           const Json& figures, double accuracy);

// What a leave-one-out audit reports for one target (teacher, student, ...): every
// attack of attack_scores summarised, and its scores (M, P) for scores.h5.
struct TargetAudit {
  Json attacks = Json::object();
  Json refused = Json::object();  // attack -> why it was not computed (Note [Degenerate LiRA fits])
  Json notes = Json::object();    // attack -> how it was computed, where that differs
  std::vector<std::pair<std::string, at::Tensor>> raw;  // attack -> (M, P) float64 scores
  at::Tensor online_shadows;   // (M, M, P) uint8, AttackNotes::online_shadows
  std::vector<double> rmia_a;  // per target run (Note [RMIA's a])
  std::vector<NamedTensor> scores;
  std::string csv;
};
TargetAudit audit_target(const std::string& target, const AttackInputs& inputs, double accuracy,
                         int bootstrap, std::uint64_t seed);
// The same for a generator from its distances (M, P) (Note [Generator membership]);
// `accuracy`: of the students trained on its pools, for AOP and the table.
TargetAudit audit_generator_target(const std::string& target, const at::Tensor& distances,
                                   const at::Tensor& keep, double accuracy, int bootstrap,
                                   std::uint64_t seed);

}  // namespace kr::privacy
