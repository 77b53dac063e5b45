// The privacy accountant of DP-SGD (issue 24): Renyi differential privacy of the
// subsampled Gaussian mechanism, composed over steps and converted to (epsilon, delta).
//
// Note [RDP accountant]
// One step of DP-SGD is the sampled Gaussian mechanism: each record joins the batch with
// probability q (Poisson sampling), the clipped sum gets Gaussian noise of standard
// deviation sigma times the clip norm. Its RDP at order alpha is log(A_alpha) / (alpha - 1)
// (Mironov, Talwar and Zhang 2019): for integer alpha the binomial sum
//   A_alpha = sum_i C(alpha, i) (1 - q)^(alpha - i) q^i exp((i^2 - i) / (2 sigma^2)),
// for fractional alpha their two-sided series with erfc terms, summed in log space until
// both terms fall under exp(-30). RDP composes by addition over steps (and over
// mechanisms: a noisy histogram is the Gaussian mechanism at q = 1, alpha / (2 sigma^2)
// in units of its sensitivity). The conversion to (epsilon, delta) is Balle et al. 2020's,
//   epsilon = rdp - (log delta + log alpha) / (alpha - 1) + log((alpha - 1) / alpha),
// minimised over the orders; the default orders are Opacus' (1.1, 1.2, ..., 10.9 and
// 12, ..., 63). This is what Opacus' and TF Privacy's RDP accountants compute.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kr/core/json.hpp"

namespace kr::privacy {

// Opacus' default orders: 1 + x / 10 for x in 1..99, then 12..63.
const std::vector<double>& default_orders();

// RDP of one step of the sampled Gaussian mechanism at order alpha > 1 (q in [0, 1],
// sigma >= 0; sigma = 0 is infinite).
double sampled_gaussian_rdp(double sample_rate, double noise_multiplier, double order);

struct PrivacySpent {
  double epsilon = 0.0;
  double order = 0.0;  // the order that gave it
};

// (epsilon, delta) from the RDP at each order (Balle et al. 2020); delta in (0, 1).
PrivacySpent epsilon_from_rdp(const std::vector<double>& orders, const std::vector<double>& rdp,
                              double delta);

// Composed mechanisms: `steps` steps at sample rate q and noise multiplier sigma each.
class RdpAccountant {
 public:
  explicit RdpAccountant(std::vector<double> orders = default_orders());
  void add(double noise_multiplier, double sample_rate, std::int64_t steps);
  // The RDP of everything added, per order.
  std::vector<double> rdp() const;
  PrivacySpent spent(double delta) const;
  // What was added, for run.json: [{noise_multiplier, sample_rate, steps}, ...].
  Json history() const;
  // An accountant holding `history` (as history() writes it); errors name `where`.
  static RdpAccountant from_history(const Json& history, const std::string& where);

 private:
  struct Entry {
    double noise_multiplier, sample_rate;
    std::int64_t steps;
  };
  std::vector<double> orders_;
  std::vector<Entry> history_;
};

// The noise multiplier whose epsilon after `steps` steps at sample rate q does not exceed
// `target_epsilon`, as Opacus' get_noise_multiplier searches: from 10, doubled until its
// epsilon is under the target, then bisected from 0 until within `tolerance` under it.
// An unreachable target (sigma past 2^20 still over it) is a UsageError.
// `spent`: what was already spent on the same data (PrivImage's semantic query),
// composed with the steps searched for, so the total stays under the target.
double noise_multiplier_for(double target_epsilon, double sample_rate, std::int64_t steps,
                            double delta, double tolerance = 0.01,
                            const RdpAccountant& spent = RdpAccountant());

// Note [What DP covers]
// A generator trained with DP-SGD (Note [DP GAN]) carries its (epsilon, delta) into the
// pools it samples and the students trained on them only while nothing else reads the
// private data. A student is covered when (1) its pool is the generator's samples as
// drawn, not filtered (the confidence filter asks the non-private teacher, the
// re-identification filter measures against the real train split), (2) its targets are
// the conditioning labels (--targets hard, no mixup): soft or stored targets are the
// predictions of the teacher trained on the private data without DP, and (3) its epoch
// is not chosen on the private val split (--select last). Anything else is refused an
// epsilon, and the reasons are said. (A DP teacher, its epsilon composed with the
// generator's, would cover soft targets; kr has none yet.)
struct StudentCoverage {
  Json generator_dp;  // null: the pool's generator was not trained privately
  std::string targets;
  double mixup = 0.0;
  double hard_weight = 0.0;
  bool filtered_pool = false;
  bool selects_on_val = true;
};
// null for a non-private generator; else {"covered", "reasons", and when covered the
// generator's "epsilon", "delta", "formal_guarantee"}.
Json student_dp(const StudentCoverage& student);

}  // namespace kr::privacy
