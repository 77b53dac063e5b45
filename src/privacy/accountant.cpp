#include "kr/privacy/accountant.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kr/core/error.hpp"
#include "kr/core/strings.hpp"

namespace kr::privacy {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// log(exp(a) + exp(b)), with -inf as log 0.
double log_add(double a, double b) {
  const double lo = std::min(a, b), hi = std::max(a, b);
  if (lo == -kInf) return hi;
  return std::log1p(std::exp(lo - hi)) + hi;
}

// log(exp(a) - exp(b)) for a >= b.
double log_sub(double a, double b) {
  if (a < b) throw Error("accountant: log_sub of a larger term (a series went negative)");
  if (b == -kInf) return a;
  if (a == b) return -kInf;
  return std::log(std::expm1(a - b)) + b;
}

// log Phi(z), the standard normal CDF, accurate far into the lower tail: directly while
// erfc stays well above the smallest double, else the asymptotic series (error under
// 1e-11 there).
double log_ndtr(double z) {
  if (z > -30.0) return std::log(0.5 * std::erfc(-z / std::sqrt(2.0)));
  const double z2 = z * z;
  const double series =
      1.0 - 1.0 / z2 + 3.0 / (z2 * z2) - 15.0 / (z2 * z2 * z2) + 105.0 / (z2 * z2 * z2 * z2);
  return -0.5 * z2 - std::log(-z) - 0.5 * std::log(2.0 * M_PI) + std::log(series);
}

double log_erfc(double x) {
  return std::log(2.0) + log_ndtr(-x * std::sqrt(2.0));
}

double log_a_integer(double q, double sigma, std::int64_t alpha) {
  double sum = -kInf;
  const double a = static_cast<double>(alpha);
  for (std::int64_t k = 0; k <= alpha; ++k) {
    const double i = static_cast<double>(k);
    const double log_binomial = std::lgamma(a + 1) - std::lgamma(i + 1) - std::lgamma(a - i + 1);
    sum = log_add(sum, log_binomial + i * std::log(q) + (a - i) * std::log1p(-q) +
                           (i * i - i) / (2.0 * sigma * sigma));
  }
  return sum;
}

double log_a_fractional(double q, double sigma, double alpha) {
  double a0 = -kInf, a1 = -kInf;
  const double z0 = sigma * sigma * std::log(1.0 / q - 1.0) + 0.5;
  double log_coefficient = 0.0;  // log |C(alpha, i)|, built term by term
  bool positive = true;          // its sign
  for (std::int64_t k = 0;; ++k) {
    const double i = static_cast<double>(k);
    if (k > 0) {
      const double factor = (alpha - i + 1.0) / i;
      log_coefficient += std::log(std::fabs(factor));
      if (factor < 0) positive = !positive;
    }
    const double j = alpha - i;
    const double t0 = log_coefficient + i * std::log(q) + j * std::log1p(-q);
    const double t1 = log_coefficient + j * std::log(q) + i * std::log1p(-q);
    const double e0 = std::log(0.5) + log_erfc((i - z0) / (std::sqrt(2.0) * sigma));
    const double e1 = std::log(0.5) + log_erfc((z0 - j) / (std::sqrt(2.0) * sigma));
    const double s0 = t0 + (i * i - i) / (2.0 * sigma * sigma) + e0;
    const double s1 = t1 + (j * j - j) / (2.0 * sigma * sigma) + e1;
    if (positive) {
      a0 = log_add(a0, s0);
      a1 = log_add(a1, s1);
    } else {
      a0 = log_sub(a0, s0);
      a1 = log_sub(a1, s1);
    }
    if (std::max(s0, s1) < -30.0) break;
    if (k > 100000) throw Error("accountant: the fractional-order series did not converge");
  }
  return log_add(a0, a1);
}

}  // namespace

const std::vector<double>& default_orders() {
  static const std::vector<double> orders = [] {
    std::vector<double> values;
    for (int x = 1; x < 100; ++x) values.push_back(1.0 + x / 10.0);
    for (int a = 12; a < 64; ++a) values.push_back(a);
    return values;
  }();
  return orders;
}

double sampled_gaussian_rdp(double q, double sigma, double alpha) {
  if (!(q >= 0.0 && q <= 1.0)) throw UsageError("the sample rate must be in [0, 1]");
  if (!(sigma >= 0.0)) throw UsageError("the noise multiplier must be at least 0");
  if (!(alpha > 1.0)) throw UsageError("an RDP order must be above 1");
  if (q == 0.0) return 0.0;
  if (sigma == 0.0 || std::isinf(alpha)) return kInf;
  if (q == 1.0) return alpha / (2.0 * sigma * sigma);
  const double log_a = alpha == std::floor(alpha)
                           ? log_a_integer(q, sigma, static_cast<std::int64_t>(alpha))
                           : log_a_fractional(q, sigma, alpha);
  return log_a / (alpha - 1.0);
}

PrivacySpent epsilon_from_rdp(const std::vector<double>& orders, const std::vector<double>& rdp,
                              double delta) {
  if (orders.size() != rdp.size() || orders.empty())
    throw Error("accountant: one RDP value per order is needed");
  if (!(delta > 0.0 && delta < 1.0)) throw UsageError("delta must be in (0, 1)");
  PrivacySpent best{kInf, orders.front()};
  for (std::size_t k = 0; k < orders.size(); ++k) {
    const double a = orders[k];
    const double epsilon =
        rdp[k] - (std::log(delta) + std::log(a)) / (a - 1.0) + std::log((a - 1.0) / a);
    if (std::isnan(epsilon)) continue;
    if (epsilon < best.epsilon) best = PrivacySpent{epsilon, a};
  }
  return best;
}

RdpAccountant::RdpAccountant(std::vector<double> orders) : orders_(std::move(orders)) {
  if (orders_.empty()) throw Error("accountant: no orders");
}

void RdpAccountant::add(double noise_multiplier, double sample_rate, std::int64_t steps) {
  if (steps < 0) throw UsageError("accountant: steps must be at least 0");
  sampled_gaussian_rdp(sample_rate, noise_multiplier, orders_.front());  // checks the values
  history_.push_back(Entry{noise_multiplier, sample_rate, steps});
}

std::vector<double> RdpAccountant::rdp() const {
  std::vector<double> total(orders_.size(), 0.0);
  for (const auto& entry : history_)
    for (std::size_t k = 0; k < orders_.size(); ++k)
      if (entry.steps > 0)
        total[k] += static_cast<double>(entry.steps) *
                    sampled_gaussian_rdp(entry.sample_rate, entry.noise_multiplier, orders_[k]);
  return total;
}

PrivacySpent RdpAccountant::spent(double delta) const {
  return epsilon_from_rdp(orders_, rdp(), delta);
}

Json RdpAccountant::history() const {
  Json list = Json::array();
  for (const auto& entry : history_)
    list.push_back(Json{{"noise_multiplier", entry.noise_multiplier},
                        {"sample_rate", entry.sample_rate},
                        {"steps", entry.steps}});
  return list;
}

RdpAccountant RdpAccountant::from_history(const Json& history, const std::string& where) {
  RdpAccountant accountant;
  if (!history.is_array()) throw Error(where + ": the DP history is not a list");
  try {
    for (const auto& entry : history)
      accountant.add(entry.at("noise_multiplier").get<double>(),
                     entry.at("sample_rate").get<double>(), entry.at("steps").get<std::int64_t>());
  } catch (const Json::exception& error) {
    throw Error(where + ": a DP history entry is malformed: " + error.what());
  }
  return accountant;
}

double noise_multiplier_for(double target_epsilon, double sample_rate, std::int64_t steps,
                            double delta, double tolerance, const RdpAccountant& spent) {
  if (!(target_epsilon > 0.0)) throw UsageError("the target epsilon must be above 0");
  if (!(tolerance > 0.0)) throw UsageError("the epsilon tolerance must be above 0");
  const auto epsilon_at = [&](double sigma) {
    RdpAccountant accountant = spent;
    accountant.add(sigma, sample_rate, steps);
    return accountant.spent(delta).epsilon;
  };
  double low = 0.0, high = 10.0, epsilon_high = kInf;
  while (epsilon_high > target_epsilon) {
    high *= 2.0;
    epsilon_high = epsilon_at(high);
    if (high > 1048576.0)
      throw UsageError("no noise multiplier up to 2^20 reaches epsilon " +
                       number_text(target_epsilon) + " at delta " + number_text(delta));
  }
  while (target_epsilon - epsilon_high > tolerance) {
    const double sigma = 0.5 * (low + high);
    const double epsilon = epsilon_at(sigma);
    if (epsilon < target_epsilon) {
      high = sigma;
      epsilon_high = epsilon;
    } else {
      low = sigma;
    }
  }
  return high;
}

Json student_dp(const StudentCoverage& student) {
  if (student.generator_dp.is_null()) return nullptr;
  std::vector<std::string> reasons;
  if (student.filtered_pool)
    reasons.push_back(
        "the pool was filtered with the non-private teacher or against the real train split");
  if (student.targets != "hard")
    reasons.push_back("--targets " + student.targets +
                      ": the targets are the non-private teacher's predictions");
  if (student.targets == "hard" && student.mixup > 0.0)
    reasons.push_back(
        "--mixup with hard targets mixes conditioning labels only, but is not "
        "covered here");
  if (student.targets != "hard" && student.hard_weight > 0.0)
    reasons.push_back("--hard-weight mixes the teacher's targets in");
  if (student.selects_on_val)
    reasons.push_back("the epoch was selected on the private val split (use --select last)");
  Json out{{"covered", reasons.empty()}, {"reasons", reasons}};
  if (reasons.empty()) {
    out["epsilon"] = student.generator_dp.at("epsilon");
    out["delta"] = student.generator_dp.at("delta");
    out["formal_guarantee"] = student.generator_dp.value("formal_guarantee", false);
    out["covers"] =
        "the student: post-processing of the DP generator's samples and conditioning labels";
  }
  return out;
}

}  // namespace kr::privacy
