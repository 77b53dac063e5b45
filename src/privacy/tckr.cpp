#include "kr/privacy/tckr.hpp"

#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <numeric>

#include "kr/core/error.hpp"
#include "kr/privacy/membership.hpp"

namespace kr::privacy {

namespace {

constexpr double kEps = 1e-10;

// labels (N) as a gather index (N, 1).
at::Tensor label_column(const at::Tensor& labels) {
  return labels.to(torch::kInt64).view({-1, 1});
}

// numpy's pairwise summation of a contiguous float64 run (np.sum over contiguous data):
// below 8 values in order, up to 128 in 8 interleaved partial sums, above that in halves
// split at a multiple of 8. The notebook's global moments are these sums, and its scores
// tie exactly where shadows clip to the same value: a sum in another order breaks the ties
// by an ulp, which a 1e-10 standard deviation turns into a different ranking.
double numpy_pairwise_sum(const double* a, std::int64_t n) {
  if (n < 8) {
    double sum = 0.0;
    for (std::int64_t i = 0; i < n; ++i) sum += a[i];
    return sum;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    std::int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) sum += a[i];
    return sum;
  }
  std::int64_t half = n / 2;
  half -= half % 8;
  return numpy_pairwise_sum(a, half) + numpy_pairwise_sum(a + half, n - half);
}

// The notebook's moments of scores (S, N) float64: global, np.mean and np.var(ddof=1)
// over all of them (pairwise sums; one scalar each), or per point over the shadows (sums
// row after row, ddof 0); variances floored at the smallest normal double.
std::pair<at::Tensor, at::Tensor> gaussian(const at::Tensor& scores, bool global) {
  const double tiny = std::numeric_limits<double>::min();
  const auto c = scores.to(torch::kFloat64).contiguous();
  const auto shadows = c.size(0), points = c.size(1);
  const double* x = c.data_ptr<double>();
  if (global) {
    const auto n = shadows * points;
    const double mean = numpy_pairwise_sum(x, n) / static_cast<double>(n);
    std::vector<double> dev(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) dev[i] = (x[i] - mean) * (x[i] - mean);
    const double var = numpy_pairwise_sum(dev.data(), n) / static_cast<double>(n - 1);
    return {torch::tensor(mean, torch::kFloat64),
            torch::tensor(std::max(var, tiny), torch::kFloat64)};
  }
  auto mean = torch::zeros({points}, torch::kFloat64);
  auto var = torch::zeros({points}, torch::kFloat64);
  double* m = mean.data_ptr<double>();
  double* v = var.data_ptr<double>();
  for (std::int64_t p = 0; p < points; ++p) {
    double sum = x[p];
    for (std::int64_t s = 1; s < shadows; ++s) sum += x[s * points + p];
    m[p] = sum / static_cast<double>(shadows);
    double d = (x[p] - m[p]) * (x[p] - m[p]);
    for (std::int64_t s = 1; s < shadows; ++s)
      d += (x[s * points + p] - m[p]) * (x[s * points + p] - m[p]);
    v[p] = std::max(d / static_cast<double>(shadows), tiny);
  }
  return {mean, var};
}

}  // namespace

at::Tensor tckr_point_score(const at::Tensor& outputs, const at::Tensor& labels, TckrScore score) {
  auto z = outputs.to(torch::kFloat64);
  const auto y = label_column(labels);
  switch (score) {
    case TckrScore::logit_stable: {
      auto p = z.clamp(kEps, 1.0 - kEps);
      auto log_f_y = torch::log(p.gather(1, y)).squeeze(1);
      auto others = p.scatter(1, y, 0.0).sum(1).clamp_min(kEps);
      return log_f_y - torch::log(others);
    }
    case TckrScore::logit_unstable: {
      auto f_y = z.clamp(kEps, 1.0 - kEps).gather(1, y).squeeze(1);
      return torch::log(f_y) - torch::log(1.0 - f_y);
    }
    case TckrScore::logits: {
      auto z_y = z.gather(1, y).squeeze(1);
      auto others = z.scatter(1, y, -std::numeric_limits<double>::infinity());
      return z_y - std::get<0>(others.max(1));
    }
  }
  throw Error("tckr: unknown score");
}

at::Tensor tckr_fit_predict(const at::Tensor& shadow_in, const at::Tensor& shadow_out,
                            const at::Tensor& target, const at::Tensor& labels, bool online,
                            TckrScore score, bool global_variance, at::Tensor* kept) {
  const auto scores_of = [&](const at::Tensor& shadows) {
    std::vector<at::Tensor> rows;
    for (std::int64_t s = 0; s < shadows.size(0); ++s)
      rows.push_back(tckr_point_score(shadows[s], labels, score));
    return torch::stack(rows);  // (S, N)
  };
  const auto x = tckr_point_score(target, labels, score);
  const auto [mu_out, var_out] = gaussian(scores_of(shadow_out), global_variance);
  const auto sigma_out = var_out.sqrt().clamp_min(kEps);
  const double two_pi = 2.0 * M_PI;
  at::Tensor lr;
  if (online) {
    const auto [mu_in, var_in] = gaussian(scores_of(shadow_in), global_variance);
    const auto sigma_in = var_in.sqrt().clamp_min(kEps);
    lr = -0.5 * torch::log(two_pi * sigma_in.pow(2)) - 0.5 * (x - mu_in).pow(2) / sigma_in.pow(2) +
         0.5 * torch::log(two_pi * sigma_out.pow(2)) + 0.5 * (x - mu_out).pow(2) / sigma_out.pow(2);
  } else {
    lr = -0.5 * (x - mu_out).pow(2) / sigma_out.pow(2);
  }
  lr = lr.clamp(-1e10, 1e10);  // NaN stays NaN, as np.clip leaves it
  if (kept) *kept = lr.isnan().logical_not();
  return lr;
}

TckrEvaluation tckr_evaluate(const at::Tensor& scores, const at::Tensor& members) {
  const auto s = scores.to(torch::kFloat64).contiguous();
  const auto m = members.to(torch::kFloat64).contiguous();
  const auto n = s.numel();
  if (n == 0) throw Error("tckr: no scored points");
  const double* sp = s.data_ptr<double>();
  const double* mp = m.data_ptr<double>();
  // roc_curve: descending scores; one point per distinct score (the last index of each run).
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](auto a, auto b) { return sp[a] < sp[b]; });
  std::reverse(order.begin(), order.end());
  std::vector<double> tps, fps;
  double tp = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    tp += mp[order[i]];
    if (i + 1 == n || sp[order[i + 1]] != sp[order[i]]) {
      tps.push_back(tp);
      fps.push_back(static_cast<double>(i + 1) - tp);
    }
  }
  if (tps.size() > 2) {  // drop_intermediate: keep the corners (second differences != 0)
    std::vector<double> keep_tps = {tps.front()}, keep_fps = {fps.front()};
    for (std::size_t i = 1; i + 1 < tps.size(); ++i)
      if (fps[i + 1] - 2 * fps[i] + fps[i - 1] != 0 || tps[i + 1] - 2 * tps[i] + tps[i - 1] != 0) {
        keep_tps.push_back(tps[i]);
        keep_fps.push_back(fps[i]);
      }
    keep_tps.push_back(tps.back());
    keep_fps.push_back(fps.back());
    tps = std::move(keep_tps);
    fps = std::move(keep_fps);
  }
  tps.insert(tps.begin(), 0.0);
  fps.insert(fps.begin(), 0.0);
  std::vector<double> fpr(fps.size()), tpr(tps.size());
  for (std::size_t i = 0; i < fps.size(); ++i) {
    fpr[i] = fps[i] / fps.back();
    tpr[i] = tps[i] / tps.back();
  }
  TckrEvaluation evaluation;
  evaluation.auc = 0;
  for (std::size_t i = 1; i < fpr.size(); ++i)
    evaluation.auc += (fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1]) / 2.0;
  const auto at = [&](double f) {
    const auto idx = static_cast<std::size_t>(std::lower_bound(fpr.begin(), fpr.end(), f) -
                                              fpr.begin());  // np.searchsorted, side left
    return idx < tpr.size() ? tpr[idx] : 0.0;
  };
  evaluation.tpr_at_0_1 = at(0.001);
  evaluation.tpr_at_1 = at(0.01);
  evaluation.tpr_at_10 = at(0.1);
  return evaluation;
}

std::vector<TckrVariant> tckr_variants(const at::Tensor& shadow_in, const at::Tensor& shadow_out,
                                       const at::Tensor& target, const at::Tensor& labels,
                                       const at::Tensor& members) {
  if (shadow_in.size(0) < 1 || shadow_out.size(0) < 1)
    throw Error("tckr: needs at least one IN and one OUT shadow");
  const std::pair<const char*, TckrScore> scores[] = {{"logit_stable", TckrScore::logit_stable},
                                                      {"logit_unstable", TckrScore::logit_unstable},
                                                      {"logits", TckrScore::logits}};
  std::vector<TckrVariant> variants;
  for (const bool online : {false, true})
    for (const auto& [score_name, score] : scores)
      for (const bool global : {true, false}) {
        TckrVariant v;
        v.name = std::string(online ? "online" : "offline") +
                 (global ? "_global_" : "_per_example_") + score_name;
        v.scores =
            tckr_fit_predict(shadow_in, shadow_out, target, labels, online, score, global, &v.kept);
        v.evaluation = tckr_evaluate(v.scores.masked_select(v.kept),
                                     members.to(torch::kBool).masked_select(v.kept));
        variants.push_back(std::move(v));
      }
  return variants;
}

std::size_t tckr_best(const std::vector<TckrVariant>& variants) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < variants.size(); ++i)
    if (variants[i].evaluation.auc > variants[best].evaluation.auc) best = i;
  return best;
}

TckrAudit audit_target_tckr(const std::string& target, const at::Tensor& shadow_in,
                            const at::Tensor& shadow_out, const at::Tensor& target_outputs,
                            const at::Tensor& labels, const at::Tensor& members, double accuracy,
                            int bootstrap, std::uint64_t seed) {
  TckrAudit audit;
  const auto variants = tckr_variants(shadow_in, shadow_out, target_outputs, labels, members);
  for (const auto& v : variants) {
    const auto kept_members = members.to(torch::kBool).masked_select(v.kept);
    // kr's own ROC of the same scores (and its point-bootstrap intervals) beside the
    // notebook's figures, which are the ones reported.
    Json kr_roc =
        summarize_attack(v.scores.masked_select(v.kept), kept_members, accuracy, bootstrap, seed);
    Json figures = kr_roc;
    figures.erase("roc");
    figures["auc"] = v.evaluation.auc;
    figures["tpr_at_0.1%"] = v.evaluation.tpr_at_0_1;
    figures["tpr_at_1%"] = v.evaluation.tpr_at_1;
    figures["tpr_at_10%"] = v.evaluation.tpr_at_10;
    figures["aop"] = accuracy * std::pow(0.5 / std::max(v.evaluation.auc, 0.5), 2.0);
    figures["bootstrap_95"] = Json::object();  // not computed for the notebook's figures
    figures["scored_points"] = kept_members.numel();
    kr_roc.erase("roc");
    figures["kr_roc"] = kr_roc;
    audit.csv += attack_csv_row(target, "tckr_" + v.name, figures, accuracy);
    audit.variants[v.name] = std::move(figures);
  }
  audit.best = variants[tckr_best(variants)].name;
  return audit;
}

}  // namespace kr::privacy
