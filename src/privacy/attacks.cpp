#include "kr/privacy/attacks.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kr/core/error.hpp"
#include "kr/core/keyed_rng.hpp"

namespace kr::privacy {

namespace {

constexpr double kLogTwoPi = 1.8378770664093453;

at::Tensor log_normal_pdf(const at::Tensor& x, const at::Tensor& mean, const at::Tensor& std) {
  auto z = (x - mean) / std;
  return -0.5 * z * z - torch::log(std) - 0.5 * kLogTwoPi;
}

// log of the standard normal CDF, stable in both tails.
at::Tensor log_normal_cdf(const at::Tensor& z) {
  return torch::log(0.5 * torch::erfc(-z / std::sqrt(2.0)).clamp_min(1e-300));
}

// labels (P) as a gather index (..., P, 1) over logits (..., P, K).
at::Tensor label_index(const at::Tensor& logits, const at::Tensor& labels) {
  std::vector<std::int64_t> shape(logits.sizes().begin(), logits.sizes().end());
  shape.back() = 1;
  std::vector<std::int64_t> view(logits.dim(), 1);
  view[logits.dim() - 2] = labels.size(0);
  return labels.to(torch::kInt64).view(view).expand(shape).contiguous();
}

at::Tensor probabilities(const at::Tensor& logits) {
  return torch::softmax(logits.to(torch::kFloat64), -1);
}

}  // namespace

at::Tensor logit_scaled_confidence(const at::Tensor& logits, const at::Tensor& labels) {
  auto z = logits.to(torch::kFloat64);
  auto index = label_index(z, labels);
  auto z_y = z.gather(-1, index).squeeze(-1);
  auto others = z.scatter(-1, index, -std::numeric_limits<double>::infinity());
  return z_y - torch::logsumexp(others, -1);
}

at::Tensor point_score(const at::Tensor& logits, const at::Tensor& labels, ScoreKind kind) {
  switch (kind) {
    case ScoreKind::stable:
      return logit_scaled_confidence(logits, labels);
    case ScoreKind::unstable: {
      // log p_y - log(1 - p_y) from float32 probabilities: saturates as p_y -> 1.
      auto p = torch::softmax(logits.to(torch::kFloat32), -1);
      auto p_y = p.gather(-1, label_index(logits, labels)).squeeze(-1);
      const double tiny = std::numeric_limits<float>::min();
      return (torch::log(p_y.clamp_min(tiny)) - torch::log((1.0f - p_y).clamp_min(tiny)))
          .to(torch::kFloat64);
    }
    case ScoreKind::margin: {
      auto z = logits.to(torch::kFloat64);
      auto index = label_index(z, labels);
      auto z_y = z.gather(-1, index).squeeze(-1);
      auto others = z.scatter(-1, index, -std::numeric_limits<double>::infinity());
      return z_y - std::get<0>(others.max(-1));
    }
  }
  throw Error("point_score: unknown score kind");
}

namespace {

// Uniform keys (S, P) that pick which shadows of the majority kind a point keeps when
// run `target` is scored (Note [Balanced leave-one-out shadows]); keyed, so reproducible.
at::Tensor shadow_drop_keys(const std::vector<std::int64_t>& shadows, std::int64_t target,
                            std::int64_t points) {
  auto keys = torch::empty({static_cast<std::int64_t>(shadows.size()), points}, torch::kFloat64);
  auto access = keys.accessor<double, 2>();
  for (std::size_t s = 0; s < shadows.size(); ++s)
    for (std::int64_t x = 0; x < points; ++x) {
      KeyedRng rng(stream_key(static_cast<std::uint64_t>(target), Purpose::shadow_drop,
                              static_cast<std::uint64_t>(shadows[s]),
                              static_cast<std::uint64_t>(x)));
      access[static_cast<std::int64_t>(s)][x] = rng.uniform();
    }
  return keys;
}

}  // namespace

LiraScores lira(const at::Tensor& shadow_scores, const at::Tensor& in_mask,
                const at::Tensor& target, const at::Tensor& balance_keys) {
  auto shadow = shadow_scores.to(torch::kFloat64);  // (S, A, P)
  auto in = in_mask.to(torch::kFloat64);            // (S, P)
  auto out = 1.0 - in;
  if (balance_keys.defined()) {
    // Note [Balanced leave-one-out shadows]: per point, the n lowest-keyed shadows of
    // each kind, n = the minority kind's count.
    auto n = torch::minimum(in.sum(0), out.sum(0));  // (P)
    auto keep_all = n.eq(0.0);                       // no pairs: keep every shadow
    auto keys = balance_keys.to(torch::kFloat64);
    const double never = std::numeric_limits<double>::infinity();
    auto lowest = [&](const at::Tensor& kind) {
      auto rank = torch::where(kind.gt(0.5), keys, torch::full_like(keys, never))
                      .argsort(/*dim=*/0, /*descending=*/false)
                      .argsort(/*dim=*/0, /*descending=*/false);
      return kind * torch::logical_or(rank.lt(n), keep_all).to(torch::kFloat64);
    };
    in = lowest(in);
    out = lowest(out);
  }
  in = in.unsqueeze(1);  // (S, 1, P)
  out = out.unsqueeze(1);
  auto has_in = in.sum(0).gt(0.0);  // (1, P)
  auto has_out = out.sum(0).gt(0.0);
  auto n_in = in.sum(0).clamp_min(1.0);  // (1, P)
  auto n_out = out.sum(0).clamp_min(1.0);
  auto mean_in = (shadow * in).sum(0) / n_in;  // (A, P)
  auto mean_out = (shadow * out).sum(0) / n_out;
  // A point no shadow trained on (TCKR's train members) takes its OUT mean plus the
  // average IN - OUT shift of the points that have both (per augmentation).
  auto both = has_in.logical_and(has_out).to(torch::kFloat64);  // (1, P)
  auto shift = ((mean_in - mean_out) * both).sum(1, true) / both.sum().clamp_min(1.0);
  mean_in = torch::where(has_in, mean_in, mean_out + shift);
  auto dev_in = (shadow - mean_in.unsqueeze(0)).pow(2) * in;
  auto dev_out = (shadow - mean_out.unsqueeze(0)).pow(2) * out;
  // Global variance: pooled over points, per augmentation (each point's mean costs a degree).
  auto var_in_global = (dev_in.sum(at::IntArrayRef{0, 2}) /
                        (in.sum(at::IntArrayRef{0, 2}) - has_in.sum()).clamp_min(1.0))
                           .unsqueeze(1);
  auto var_out_global = (dev_out.sum(at::IntArrayRef{0, 2}) /
                         (out.sum(at::IntArrayRef{0, 2}) - has_out.sum()).clamp_min(1.0))
                            .unsqueeze(1);
  auto var_in_example = torch::where(in.sum(0).gt(1.0), dev_in.sum(0) / (n_in - 1.0).clamp_min(1.0),
                                     var_in_global.expand_as(mean_in));
  auto var_out_example =
      torch::where(out.sum(0).gt(1.0), dev_out.sum(0) / (n_out - 1.0).clamp_min(1.0),
                   var_out_global.expand_as(mean_out));
  auto t = target.to(torch::kFloat64);  // (A, P)
  auto floor = [](const at::Tensor& v) { return v.clamp_min(1e-6).sqrt(); };
  LiraScores scores;
  scores.online_global = (log_normal_pdf(t, mean_in, floor(var_in_global)) -
                          log_normal_pdf(t, mean_out, floor(var_out_global)))
                             .mean(0);
  scores.online_per_example = (log_normal_pdf(t, mean_in, floor(var_in_example)) -
                               log_normal_pdf(t, mean_out, floor(var_out_example)))
                                  .mean(0);
  scores.offline_global = log_normal_cdf((t - mean_out) / floor(var_out_global)).mean(0);
  scores.offline_per_example = log_normal_cdf((t - mean_out) / floor(var_out_example)).mean(0);
  return scores;
}

std::vector<std::pair<std::string, at::Tensor>> tckr_variants(
    const std::vector<at::Tensor>& shadow_logits, const at::Tensor& in_mask,
    const at::Tensor& target_logits, const at::Tensor& labels) {
  if (shadow_logits.size() < 2) throw Error("tckr: needs at least 2 shadows");
  std::vector<std::pair<std::string, at::Tensor>> variants;
  const std::pair<const char*, ScoreKind> kinds[] = {{"stable", ScoreKind::stable},
                                                     {"unstable", ScoreKind::unstable},
                                                     {"margin", ScoreKind::margin}};
  for (const auto& [name, kind] : kinds) {
    std::vector<at::Tensor> shadow;
    for (const auto& logits : shadow_logits) shadow.push_back(point_score(logits, labels, kind));
    const auto fitted =
        lira(torch::stack(shadow), in_mask, point_score(target_logits, labels, kind));
    const std::string suffix = std::string("_") + name;
    variants.emplace_back("online_global" + suffix, fitted.online_global);
    variants.emplace_back("online_per_example" + suffix, fitted.online_per_example);
    variants.emplace_back("offline_global" + suffix, fitted.offline_global);
    variants.emplace_back("offline_per_example" + suffix, fitted.offline_per_example);
  }
  return variants;
}

std::vector<std::pair<std::string, at::Tensor>> attack_scores(const AttackInputs& inputs) {
  const auto runs = static_cast<std::int64_t>(inputs.logits.size());
  if (runs < 2) throw Error("membership inference needs at least 2 runs");
  const auto points = inputs.labels.size(0);
  auto keep = inputs.keep.to(torch::kBool);
  // phi: (M, A, P)
  std::vector<at::Tensor> phis;
  for (const auto& logits : inputs.logits)
    phis.push_back(logit_scaled_confidence(logits, inputs.labels));
  auto phi = torch::stack(phis);
  const auto augmentations = phi.size(1);

  auto online_global = torch::zeros({runs, points}, torch::kFloat64);
  auto online_per_example = torch::zeros_like(online_global);
  auto offline_global = torch::zeros_like(online_global);
  auto offline_per_example = torch::zeros_like(online_global);
  auto keep_f = keep.to(torch::kFloat64);  // (M, P)
  for (std::int64_t j = 0; j < runs; ++j) {
    // Shadows: every run but j.
    std::vector<std::int64_t> others;
    for (std::int64_t i = 0; i < runs; ++i)
      if (i != j) others.push_back(i);
    auto index = torch::tensor(others, torch::kInt64);
    const auto fitted = lira(phi.index_select(0, index), keep_f.index_select(0, index), phi[j],
                             shadow_drop_keys(others, j, points));
    online_global[j] = fitted.online_global;
    online_per_example[j] = fitted.online_per_example;
    offline_global[j] = fitted.offline_global;
    offline_per_example[j] = fitted.offline_per_example;
  }

  // Threshold baselines on the target's own outputs, averaged over augmentations.
  auto loss = torch::zeros({runs, points}, torch::kFloat64);
  auto confidence = torch::zeros_like(loss);
  auto entropy = torch::zeros_like(loss);
  auto modified_entropy = torch::zeros_like(loss);
  auto p_label = torch::zeros({runs, augmentations, points}, torch::kFloat64);
  auto label_index =
      inputs.labels.to(torch::kInt64).view({1, points, 1}).expand({augmentations, points, 1});
  for (std::int64_t j = 0; j < runs; ++j) {
    auto p = probabilities(inputs.logits[j]);  // (A, P, K)
    auto log_p = torch::log(p.clamp_min(1e-300));
    auto p_y = p.gather(-1, label_index).squeeze(-1);
    p_label[j] = p_y;
    loss[j] = log_p.gather(-1, label_index).squeeze(-1).mean(0);  // -cross-entropy
    confidence[j] = std::get<0>(p.max(-1)).mean(0);
    entropy[j] = (p * log_p).sum(-1).mean(0);  // -H(p)
    auto log_one_minus = torch::log((1.0 - p).clamp_min(1e-300));
    auto wrong =
        (p * log_one_minus).sum(-1) - (p_y * log_one_minus.gather(-1, label_index).squeeze(-1));
    auto mentr = -((1.0 - p_y) * torch::log(p_y.clamp_min(1e-300)) + wrong);
    modified_entropy[j] = -mentr.mean(0);
  }

  // Offline RMIA (Zarifzadeh et al. 2024): Pr(x) from the OUT reference runs with the
  // linear offline correction a; population z from points no run trained on.
  auto rmia = torch::zeros({runs, points}, torch::kFloat64);
  const bool have_population = !inputs.population_logits.empty();
  if (have_population) {
    const double a = inputs.rmia_a;
    std::vector<at::Tensor> population_p;
    for (const auto& logits : inputs.population_logits) {
      auto p = probabilities(logits);
      auto index = inputs.population_labels.to(torch::kInt64)
                       .view({1, -1, 1})
                       .expand({p.size(0), p.size(1), 1});
      population_p.push_back(p.gather(-1, index).squeeze(-1).mean(0));  // (Z)
    }
    auto pop = torch::stack(population_p);  // (M, Z)
    auto point_p = p_label.mean(1);         // (M, P)
    for (std::int64_t j = 0; j < runs; ++j) {
      std::vector<std::int64_t> others;
      for (std::int64_t i = 0; i < runs; ++i)
        if (i != j) others.push_back(i);
      auto index = torch::tensor(others, torch::kInt64);
      auto out = (1.0 - keep_f.index_select(0, index));
      auto mean_out = (point_p.index_select(0, index) * out).sum(0) / out.sum(0).clamp_min(1.0);
      auto pr_x = 0.5 * (1.0 + a) * mean_out + 0.5 * (1.0 - a);
      auto pr_z = 0.5 * (1.0 + a) * pop.index_select(0, index).mean(0) + 0.5 * (1.0 - a);
      auto ratio_x = point_p[j] / pr_x;
      auto ratio_z = std::get<0>((pop[j] / pr_z).sort());
      // Share of population points z with ratio_x / ratio_z > 1 (gamma = 1).
      auto below = torch::searchsorted(ratio_z, ratio_x, /*out_int32=*/false, /*right=*/false);
      rmia[j] = below.to(torch::kFloat64) / static_cast<double>(ratio_z.size(0));
    }
  }

  std::vector<std::pair<std::string, at::Tensor>> scores = {
      {"lira_online_global", online_global},
      {"lira_online_per_example", online_per_example},
      {"lira_offline_global", offline_global},
      {"lira_offline_per_example", offline_per_example},
      {"loss", loss},
      {"confidence", confidence},
      {"entropy", entropy},
      {"modified_entropy", modified_entropy}};
  if (have_population) scores.emplace_back("rmia_offline", rmia);
  return scores;
}

namespace {

struct Sorted {
  std::vector<double> scores;
  std::vector<char> member;
  std::int64_t positives = 0, negatives = 0;
};

Sorted sort_descending(const at::Tensor& scores, const at::Tensor& members) {
  auto s = scores.to(torch::kFloat64).flatten().contiguous();
  auto m = members.to(torch::kBool).flatten().contiguous();
  if (s.numel() != m.numel()) throw Error("roc: scores and membership differ in size");
  const auto n = s.numel();
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const double* sp = s.data_ptr<double>();
  const bool* mp = m.data_ptr<bool>();
  std::sort(order.begin(), order.end(), [&](auto a, auto b) { return sp[a] > sp[b]; });
  Sorted sorted;
  for (auto i : order) {
    sorted.scores.push_back(sp[i]);
    sorted.member.push_back(mp[i]);
    (mp[i] ? sorted.positives : sorted.negatives) += 1;
  }
  return sorted;
}

// (fpr, tpr) at every distinct threshold, from (0, 0) to (1, 1).
void curve(const Sorted& sorted, std::vector<double>& fpr, std::vector<double>& tpr) {
  std::int64_t tp = 0, fp = 0;
  fpr = {0.0};
  tpr = {0.0};
  const auto n = sorted.scores.size();
  for (std::size_t i = 0; i < n; ++i) {
    (sorted.member[i] ? tp : fp) += 1;
    if (i + 1 == n || sorted.scores[i + 1] != sorted.scores[i]) {
      fpr.push_back(sorted.negatives ? static_cast<double>(fp) / sorted.negatives : 0.0);
      tpr.push_back(sorted.positives ? static_cast<double>(tp) / sorted.positives : 0.0);
    }
  }
}

double auc_from_curve(const std::vector<double>& fpr, const std::vector<double>& tpr) {
  double area = 0.0;
  for (std::size_t i = 1; i < fpr.size(); ++i)
    area += (fpr[i] - fpr[i - 1]) * 0.5 * (tpr[i] + tpr[i - 1]);  // ties: the trapezoid = one half
  return area;
}

double tpr_at(const std::vector<double>& fpr, const std::vector<double>& tpr, double limit) {
  double best = 0.0;
  for (std::size_t i = 0; i < fpr.size(); ++i)
    if (fpr[i] <= limit + 1e-15) best = std::max(best, tpr[i]);
  return best;
}

}  // namespace

double roc_auc(const at::Tensor& scores, const at::Tensor& members) {
  std::vector<double> fpr, tpr;
  curve(sort_descending(scores, members), fpr, tpr);
  return auc_from_curve(fpr, tpr);
}

double tpr_at_fpr(const at::Tensor& scores, const at::Tensor& members, double fpr_limit) {
  std::vector<double> fpr, tpr;
  curve(sort_descending(scores, members), fpr, tpr);
  return tpr_at(fpr, tpr, fpr_limit);
}

RocSummary roc(const at::Tensor& scores, const at::Tensor& members, bool keep_curve) {
  const auto sorted = sort_descending(scores, members);
  std::vector<double> fpr, tpr;
  curve(sorted, fpr, tpr);
  RocSummary summary;
  summary.members = sorted.positives;
  summary.non_members = sorted.negatives;
  summary.auc = auc_from_curve(fpr, tpr);
  for (std::size_t i = 0; i < fpr.size(); ++i)
    summary.balanced_accuracy = std::max(summary.balanced_accuracy, 0.5 * (tpr[i] + 1.0 - fpr[i]));
  summary.tpr_at_0_1 = tpr_at(fpr, tpr, 0.001);
  summary.tpr_at_1 = tpr_at(fpr, tpr, 0.01);
  summary.tpr_at_10 = tpr_at(fpr, tpr, 0.1);
  if (keep_curve) {
    // Thin to about 400 points spaced evenly in log(FPR), keeping both ends.
    double next = 0.0;
    for (std::size_t i = 0; i < fpr.size(); ++i) {
      if (i == 0 || i + 1 == fpr.size() || fpr[i] >= next) {
        summary.fpr.push_back(fpr[i]);
        summary.tpr.push_back(tpr[i]);
        if (fpr[i] > 0)
          next = fpr[i] * std::pow(10.0, 6.0 / 400.0);
        else
          next = 1e-6;
      }
    }
  }
  return summary;
}

Json bootstrap_intervals(const at::Tensor& scores, const at::Tensor& members, int rounds,
                         std::uint64_t seed) {
  auto s = scores.to(torch::kFloat64).flatten().contiguous();
  auto m = members.to(torch::kBool).flatten().contiguous();
  const auto n = s.numel();
  std::vector<double> aucs, tpr01, tpr1;
  for (int r = 0; r < rounds; ++r) {
    KeyedRng rng(
        stream_key(seed, Purpose::shuffle, 0x6d6961 /* "mia" */, static_cast<std::uint64_t>(r)));
    std::vector<std::int64_t> pick(static_cast<std::size_t>(n));
    for (auto& p : pick) p = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(n)));
    auto index = torch::tensor(pick, torch::kInt64);
    const auto summary = roc(s.index_select(0, index), m.index_select(0, index), false);
    aucs.push_back(summary.auc);
    tpr01.push_back(summary.tpr_at_0_1);
    tpr1.push_back(summary.tpr_at_1);
  }
  auto interval = [](std::vector<double> values) {
    std::sort(values.begin(), values.end());
    if (values.empty()) return Json::array();
    auto at = [&](double q) {
      return values[static_cast<std::size_t>(std::floor(q * (values.size() - 1)))];
    };
    return Json::array({at(0.025), at(0.975)});
  };
  return Json{{"rounds", rounds},
              {"auc", interval(aucs)},
              {"tpr_at_0.1%", interval(tpr01)},
              {"tpr_at_1%", interval(tpr1)}};
}

at::Tensor balanced_keep_matrix(std::int64_t runs, std::int64_t points, std::uint64_t seed) {
  if (runs < 2 || runs % 2 != 0) throw UsageError("--runs must be even and at least 2");
  auto keep = torch::zeros({runs, points}, torch::kUInt8);
  auto* data = keep.data_ptr<std::uint8_t>();
  std::vector<std::int64_t> order(static_cast<std::size_t>(runs));
  for (std::int64_t x = 0; x < points; ++x) {
    std::iota(order.begin(), order.end(), 0);
    KeyedRng rng(
        stream_key(seed, Purpose::split, 0x6b656570 /* "keep" */, static_cast<std::uint64_t>(x)));
    for (std::int64_t i = runs - 1; i > 0; --i)
      std::swap(order[i], order[rng.below(static_cast<std::uint64_t>(i + 1))]);
    for (std::int64_t i = 0; i < runs / 2; ++i) data[order[i] * points + x] = 1;
  }
  return keep;
}

}  // namespace kr::privacy
