#include "kr/privacy/attacks.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <tuple>

#include "kr/core/error.hpp"
#include "kr/core/keyed_rng.hpp"

namespace kr::privacy {

namespace {

constexpr double kLogTwoPi = 1.8378770664093453;

at::Tensor log_normal_pdf(const at::Tensor& x, const at::Tensor& mean, const at::Tensor& std) {
  auto z = (x - mean) / std;
  return -0.5 * z * z - torch::log(std) - 0.5 * kLogTwoPi;
}

// log of the standard normal CDF, accurate in both tails: log Phi(z) = log1p(-Phi(-z))
// above 0, where log(0.5 erfc(-z / sqrt 2)) rounds to exactly 0 from z ~ 8.3 on (the most
// confident members then tie with outlying non-members at the top score); below 0 the
// special function's asymptotic form (erfc underflows near z = -38).
at::Tensor log_normal_cdf(const at::Tensor& z) {
  auto upper = torch::log1p(-0.5 * torch::erfc(z.clamp_min(0.0) / std::sqrt(2.0)));
  return torch::where(z.gt(0.0), upper, torch::special::log_ndtr(z.clamp_max(0.0)));
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

namespace {

// One kind's Gaussian fit (IN or OUT) from the shadows a mask (S, 1, P) selects.
struct KindFit {
  at::Tensor count;         // (1, P) shadows of the kind per point
  at::Tensor has;           // (1, P) count > 0
  at::Tensor mean;          // (A, P)
  at::Tensor dev;           // (S, A, P) squared deviations, masked
  at::Tensor var_global;    // (A, 1): pooled over points, each point's mean costs a degree
  double degrees = 0;       // of var_global
  at::Tensor var_example;   // (A, P): the point's own where it has >= 2 shadows, else global
  bool example_ok = false;  // every point with shadows of the kind has >= 2 (one does)
  std::int64_t fewest = 0;  // smallest nonzero count
};

KindFit fit_kind(const at::Tensor& shadow, const at::Tensor& mask) {
  KindFit fit;
  fit.count = mask.sum(0);
  fit.has = fit.count.gt(0.0);
  fit.mean = (shadow * mask).sum(0) / fit.count.clamp_min(1.0);
  fit.dev = (shadow - fit.mean.unsqueeze(0)).pow(2) * mask;
  fit.degrees = (mask.sum() - fit.has.sum()).item<double>();
  fit.var_global = (fit.dev.sum(at::IntArrayRef{0, 2}) / std::max(fit.degrees, 1.0)).unsqueeze(1);
  fit.var_example =
      torch::where(fit.count.gt(1.0), fit.dev.sum(0) / (fit.count - 1.0).clamp_min(1.0),
                   fit.var_global.expand_as(fit.mean));
  const auto nonzero = fit.count.masked_select(fit.has);
  fit.fewest = nonzero.numel() ? static_cast<std::int64_t>(nonzero.min().item<double>()) : 0;
  fit.example_ok = nonzero.numel() > 0 && fit.fewest >= 2;
  return fit;
}

}  // namespace

LiraScores lira(const at::Tensor& shadow_scores, const at::Tensor& in_mask,
                const at::Tensor& target, const at::Tensor& balance_keys) {
  auto shadow = shadow_scores.to(torch::kFloat64);  // (S, A, P)
  const auto all_in = in_mask.to(torch::kFloat64);  // (S, P)
  const auto all_out = 1.0 - all_in;
  const auto shadows = shadow.size(0);
  auto in = all_in;
  auto out = all_out;
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
  const auto fit_in = fit_kind(shadow, in.unsqueeze(1));
  const auto fit_out = fit_kind(shadow, out.unsqueeze(1));
  LiraScores scores;
  scores.online_shadows = (in + 2.0 * out).to(torch::kUInt8);
  // A point no shadow trained on (TCKR's train members) takes its OUT mean plus the
  // average IN - OUT shift of the points that have both (per augmentation).
  auto both = fit_in.has.logical_and(fit_out.has).to(torch::kFloat64);  // (1, P)
  auto shift = ((fit_in.mean - fit_out.mean) * both).sum(1, true) / both.sum().clamp_min(1.0);
  auto mean_in = torch::where(fit_in.has, fit_in.mean, fit_out.mean + shift);
  auto t = target.to(torch::kFloat64);  // (A, P)
  auto floor = [](const at::Tensor& v) { return v.clamp_min(1e-6).sqrt(); };
  const std::string m = std::to_string(shadows) + " shadows";

  // Online. Note [Degenerate LiRA fits]: a variance needs two shadows of the kind at a
  // point; with one per point (M = 4, balanced) it is zero and the fit a sign test.
  auto var_in_global = fit_in.var_global;
  auto var_out_global = fit_out.var_global;
  bool online_ok = true;
  for (auto [fit, all, var, kind] :
       {std::tuple<const KindFit*, const at::Tensor*, at::Tensor*, const char*>{
            &fit_in, &all_in, &var_in_global, "IN"},
        {&fit_out, &all_out, &var_out_global, "OUT"}}) {
    if (fit->degrees >= 1) continue;
    const auto pooled = fit_kind(shadow, all->unsqueeze(1));
    if (pooled.degrees >= 1) {
      *var = pooled.var_global;
      scores.notes.emplace_back("online_global",
                                std::string("the balanced fit has one ") + kind +
                                    " shadow per point: its variance is pooled over all " + m);
    } else {
      online_ok = false;
      scores.refused.emplace_back("online_global", std::string("no point has two ") + kind +
                                                       " shadows among " + m +
                                                       ": no variance can be fitted");
    }
  }
  if (online_ok)
    scores.online_global = (log_normal_pdf(t, mean_in, floor(var_in_global)) -
                            log_normal_pdf(t, fit_out.mean, floor(var_out_global)))
                               .mean(0);
  if (fit_in.example_ok && fit_out.example_ok) {
    scores.online_per_example =
        (log_normal_pdf(t, mean_in,
                        floor(torch::where(fit_in.has, fit_in.var_example,
                                           var_in_global.expand_as(mean_in)))) -
         log_normal_pdf(t, fit_out.mean, floor(fit_out.var_example)))
            .mean(0);
  } else {
    scores.refused.emplace_back(
        "online_per_example",
        "a point has only " + std::to_string(std::min(fit_in.fewest, fit_out.fewest)) +
            " IN or OUT shadow(s) of " + m +
            " (balanced): a per-example variance needs 2 of each (--runs >= 6)");
  }

  // Offline: every OUT shadow of the point (the target is not among the shadows).
  const auto fit_all_out = fit_kind(shadow, all_out.unsqueeze(1));
  if (!fit_all_out.has.all().item<bool>()) {
    scores.refused.emplace_back("offline_global", "a point has no OUT shadow among " + m);
    scores.refused.emplace_back("offline_per_example", "a point has no OUT shadow among " + m);
    return scores;
  }
  if (fit_all_out.degrees >= 1) {
    scores.offline_global =
        log_normal_cdf((t - fit_all_out.mean) / floor(fit_all_out.var_global)).mean(0);
  } else {
    scores.refused.emplace_back("offline_global", "no point has two OUT shadows among " + m +
                                                      ": no variance can be fitted");
  }
  if (fit_all_out.example_ok) {
    scores.offline_per_example =
        log_normal_cdf((t - fit_all_out.mean) / floor(fit_all_out.var_example)).mean(0);
  } else {
    scores.refused.emplace_back("offline_per_example",
                                "a point has only " + std::to_string(fit_all_out.fewest) +
                                    " OUT shadow(s) of " + m +
                                    ": a per-example variance needs 2 (--runs >= 6)");
  }
  return scores;
}

std::vector<std::pair<std::string, const at::Tensor*>> LiraScores::variants() const {
  return {{"online_global", &online_global},
          {"online_per_example", &online_per_example},
          {"offline_global", &offline_global},
          {"offline_per_example", &offline_per_example}};
}

namespace {

// Throws naming the target, the run and the first point whose values are not finite.
void check_finite(const at::Tensor& values, const std::string& target, std::int64_t run,
                  const std::string& what) {
  auto finite = torch::isfinite(values);
  if (finite.all().item<bool>()) return;
  // values (..., P): the point is the last index.
  auto bad = finite.logical_not().reshape({-1, values.size(-1)}).any(0).nonzero();
  const auto point = bad[0][0].item<std::int64_t>();
  throw Error(target + ": membership run " + std::to_string(run) + ", pool point " +
              std::to_string(point) + ": non-finite " + what + " (" + std::to_string(bad.size(0)) +
              " point(s) in all); the run's model is broken");
}

}  // namespace

namespace {

using Named = std::vector<std::pair<std::string, at::Tensor>>;
using Texts = std::vector<std::pair<std::string, std::string>>;

std::vector<std::int64_t> all_but(std::int64_t runs, std::int64_t left_out,
                                  std::int64_t also = -1) {
  std::vector<std::int64_t> others;
  for (std::int64_t i = 0; i < runs; ++i)
    if (i != left_out && i != also) others.push_back(i);
  return others;
}

void note_once(Texts& list, const std::string& attack, const std::string& text) {
  for (const auto& item : list)
    if (item.first == attack) return;
  list.emplace_back(attack, text);
}

// The four LiRA variants (M, P), each run the target of the other M - 1
// (Note [Leave-one-out LiRA]); the online shadows each used go to notes->online_shadows.
Named lira_rows(const at::Tensor& phi, const at::Tensor& keep_f, Texts& refused, Texts& how,
                AttackNotes* notes) {
  const auto runs = phi.size(0);
  const auto points = phi.size(2);
  Named rows;
  for (const char* name : {"lira_online_global", "lira_online_per_example", "lira_offline_global",
                           "lira_offline_per_example"})
    rows.emplace_back(name, torch::zeros({runs, points}, torch::kFloat64));
  auto used = torch::zeros({runs, runs, points}, torch::kUInt8);
  for (std::int64_t j = 0; j < runs; ++j) {
    const auto others = all_but(runs, j);
    auto index = torch::tensor(others, torch::kInt64);
    const auto fitted = lira(phi.index_select(0, index), keep_f.index_select(0, index), phi[j],
                             shadow_drop_keys(others, j, points));
    for (const auto& [variant, text] : fitted.refused) note_once(refused, "lira_" + variant, text);
    for (const auto& [variant, text] : fitted.notes) note_once(how, "lira_" + variant, text);
    const auto variants = fitted.variants();
    for (std::size_t v = 0; v < variants.size(); ++v)
      if (variants[v].second->defined()) rows[v].second[j] = *variants[v].second;
    used[j].index_copy_(0, index, fitted.online_shadows);
  }
  if (notes) notes->online_shadows = used;
  return rows;
}

// Threshold baselines on the target's own outputs, averaged over augmentations; and
// p_label (M, A, P), the probability of the label, for RMIA.
Named threshold_rows(const AttackInputs& inputs, at::Tensor& p_label) {
  const auto runs = static_cast<std::int64_t>(inputs.logits.size());
  const auto points = inputs.labels.size(0);
  const auto augmentations = inputs.logits[0].size(0);
  auto loss = torch::zeros({runs, points}, torch::kFloat64);
  auto confidence = torch::zeros_like(loss);
  auto entropy = torch::zeros_like(loss);
  auto modified_entropy = torch::zeros_like(loss);
  p_label = torch::zeros({runs, augmentations, points}, torch::kFloat64);
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
  return {{"loss", loss},
          {"confidence", confidence},
          {"entropy", entropy},
          {"modified_entropy", modified_entropy}};
}

// Offline RMIA of run `target` against `references` (Zarifzadeh et al. 2024): Pr(x) from
// the references OUT on x with the linear offline correction a; the share of population
// points z with ratio_x / ratio_z > 1 (gamma = 1). point_p (M, P), pop (M, Z).
// The mean of a per-run statistic values (M, P) over the reference runs OUT on each point,
// and how many there were (a point with none has mean 0).
struct OutMean {
  at::Tensor mean, count;  // (P), (P)
};
OutMean out_mean(const at::Tensor& values, const at::Tensor& keep_f,
                 const std::vector<std::int64_t>& references) {
  auto index = torch::tensor(references, torch::kInt64);
  auto out = 1.0 - keep_f.index_select(0, index);
  auto count = out.sum(0);
  return {(values.index_select(0, index) * out).sum(0) / count.clamp_min(1.0), count};
}

at::Tensor rmia_run(const at::Tensor& point_p, const at::Tensor& pop, const at::Tensor& keep_f,
                    std::int64_t target, const std::vector<std::int64_t>& references, double a) {
  auto index = torch::tensor(references, torch::kInt64);
  auto mean_out = out_mean(point_p, keep_f, references).mean;
  auto pr_x = 0.5 * (1.0 + a) * mean_out + 0.5 * (1.0 - a);
  auto pr_z = 0.5 * (1.0 + a) * pop.index_select(0, index).mean(0) + 0.5 * (1.0 - a);
  auto ratio_x = point_p[target] / pr_x;
  auto ratio_z = std::get<0>((pop[target] / pr_z).sort());
  auto below = torch::searchsorted(ratio_z, ratio_x, /*out_int32=*/false, /*right=*/false);
  return below.to(torch::kFloat64) / static_cast<double>(ratio_z.size(0));
}

// Note [RMIA's a]
// The offline correction a is chosen as ML Privacy Meter does, from reference models
// only: for target run j, one reference (run j + 1 mod M) plays the target, the other
// references are its references, and a is the value on the grid 0, 0.1, ..., 1 whose
// AUC against that reference's own membership is highest (points where it has no OUT
// reference left out). The target's membership is never used.
double tune_rmia_a(const at::Tensor& point_p, const at::Tensor& pop, const at::Tensor& keep_f,
                   std::int64_t target) {
  const auto runs = point_p.size(0);
  const std::int64_t pseudo = (target + 1) % runs;
  const auto references = all_but(runs, target, pseudo);
  auto index = torch::tensor(references, torch::kInt64);
  auto usable = (1.0 - keep_f.index_select(0, index)).sum(0).gt(0.0);
  double best_a = 0.0, best_auc = -1.0;
  for (int step = 0; step <= 10; ++step) {
    const double a = 0.1 * step;
    const auto scores = rmia_run(point_p, pop, keep_f, pseudo, references, a);
    const double auc = roc_auc(scores.masked_select(usable), keep_f[pseudo].masked_select(usable));
    if (auc > best_auc + 1e-12) {
      best_auc = auc;
      best_a = a;
    }
  }
  return best_a;
}

at::Tensor rmia_rows(const AttackInputs& inputs, const at::Tensor& p_label,
                     const at::Tensor& keep_f, AttackNotes* notes) {
  const auto runs = p_label.size(0);
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
  auto rmia = torch::zeros({runs, point_p.size(1)}, torch::kFloat64);
  std::vector<double> chosen;
  for (std::int64_t j = 0; j < runs; ++j) {
    const double a = inputs.rmia_a >= 0 || runs < 3 ? std::max(inputs.rmia_a, 0.0)
                                                    : tune_rmia_a(point_p, pop, keep_f, j);
    chosen.push_back(a);
    rmia[j] = rmia_run(point_p, pop, keep_f, j, all_but(runs, j), a);
  }
  if (notes) notes->rmia_a = chosen;
  return rmia;
}

// The attacks not refused, each checked finite; the texts to `notes`.
Named kept_scores(Named scores, const Texts& refused, const Texts& how, const std::string& target,
                  AttackNotes* notes) {
  Named kept;
  for (auto& [attack, values] : scores) {
    bool skip = false;
    for (const auto& item : refused) skip = skip || item.first == attack;
    if (skip) continue;
    for (std::int64_t j = 0; j < values.size(0); ++j)
      check_finite(values[j], target + "/" + attack, j, "score");
    kept.emplace_back(attack, values);
  }
  if (notes) {
    notes->refused = refused;
    notes->notes = how;
  }
  return kept;
}

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> attack_scores(const AttackInputs& inputs,
                                                              AttackNotes* notes) {
  const auto runs = static_cast<std::int64_t>(inputs.logits.size());
  if (runs < 2) throw Error("membership inference needs at least 2 runs");
  // phi: (M, A, P)
  std::vector<at::Tensor> phis;
  for (std::int64_t j = 0; j < runs; ++j) {
    // Summed over the classes (in float64): NaN or inf anywhere in a point's logits stays.
    check_finite(inputs.logits[static_cast<std::size_t>(j)].to(torch::kFloat64).sum(-1),
                 inputs.target, j, "logits");
    phis.push_back(
        logit_scaled_confidence(inputs.logits[static_cast<std::size_t>(j)], inputs.labels));
    check_finite(phis.back(), inputs.target, j, "membership score");
  }
  const auto keep_f = inputs.keep.to(torch::kBool).to(torch::kFloat64);  // (M, P)
  Texts refused, how;
  auto scores = lira_rows(torch::stack(phis), keep_f, refused, how, notes);
  at::Tensor p_label;
  for (auto& row : threshold_rows(inputs, p_label)) scores.push_back(std::move(row));
  if (!inputs.population_logits.empty())
    scores.emplace_back("rmia_offline", rmia_rows(inputs, p_label, keep_f, notes));

  return kept_scores(std::move(scores), refused, how, inputs.target, notes);
}

std::vector<std::pair<std::string, at::Tensor>> distance_attack_scores(const at::Tensor& distances,
                                                                       const at::Tensor& keep,
                                                                       const std::string& target,
                                                                       AttackNotes* notes) {
  if (distances.dim() != 2 || keep.sizes() != distances.sizes())
    throw Error(target + ": distances must be (runs, points) as the keep matrix is");
  const auto runs = distances.size(0);
  if (runs < 2) throw Error("membership inference needs at least 2 runs");
  const auto d = distances.to(torch::kFloat64);
  for (std::int64_t j = 0; j < runs; ++j) check_finite(d[j], target, j, "distance");
  if (d.lt(0.0).any().item<bool>()) throw Error(target + ": a negative distance");
  const auto keep_f = keep.to(torch::kBool).to(torch::kFloat64);
  Texts refused, how;
  // LiRA on -log d: one query, the distance floored so that an exact copy stays finite.
  auto statistic = -torch::log(d.clamp_min(kDistanceFloor)).unsqueeze(1);  // (M, 1, P)
  auto scores = lira_rows(statistic, keep_f, refused, how, notes);
  scores.emplace_back("gan_leaks", -d);
  auto calibrated = torch::zeros_like(d);
  for (std::int64_t j = 0; j < runs; ++j) {
    const auto reference = out_mean(d, keep_f, all_but(runs, j));
    if (reference.count.eq(0.0).any().item<bool>()) {
      note_once(refused, "gan_leaks_calibrated",
                "a point has no OUT reference generator among the other runs");
      break;
    }
    calibrated[j] = reference.mean - d[j];
  }
  scores.emplace_back("gan_leaks_calibrated", calibrated);
  return kept_scores(std::move(scores), refused, how, target, notes);
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

namespace {

// Scores and membership as (runs, points): a 1-D pair is one run.
std::pair<at::Tensor, at::Tensor> as_runs_by_points(const at::Tensor& scores,
                                                    const at::Tensor& members) {
  auto s = scores.to(torch::kFloat64).contiguous();
  auto m = members.to(torch::kBool).contiguous();
  if (s.sizes() != m.sizes()) throw Error("bootstrap: scores and membership differ in shape");
  if (s.dim() == 1) return {s.unsqueeze(0), m.unsqueeze(0)};
  if (s.dim() != 2) throw Error("bootstrap: scores must be (points) or (runs, points)");
  return {s, m};
}

// Round r's draw of `points` point indices with replacement (Note [Point bootstrap]).
at::Tensor point_draw(std::int64_t points, std::uint64_t seed, int round) {
  KeyedRng rng(
      stream_key(seed, Purpose::shuffle, 0x6d6961 /* "mia" */, static_cast<std::uint64_t>(round)));
  std::vector<std::int64_t> pick(static_cast<std::size_t>(points));
  for (auto& p : pick) p = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(points)));
  return torch::tensor(pick, torch::kInt64);
}

Json interval(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  if (values.empty()) return Json::array();
  auto at = [&](double q) {
    return values[static_cast<std::size_t>(std::floor(q * (values.size() - 1)))];
  };
  return Json::array({at(0.025), at(0.975)});
}

}  // namespace

Json bootstrap_intervals(const at::Tensor& scores, const at::Tensor& members, int rounds,
                         std::uint64_t seed) {
  const auto [s, m] = as_runs_by_points(scores, members);
  const auto points = s.size(1);
  std::vector<double> aucs, tpr01, tpr1;
  for (int r = 0; r < rounds; ++r) {
    const auto index = point_draw(points, seed, r);
    const auto summary = roc(s.index_select(1, index), m.index_select(1, index), false);
    aucs.push_back(summary.auc);
    tpr01.push_back(summary.tpr_at_0_1);
    tpr1.push_back(summary.tpr_at_1);
  }
  return Json{
      {"rounds", rounds},           {"resampled", "points (each keeps all its runs' scores)"},
      {"points", points},           {"scores", s.numel()},
      {"auc", interval(aucs)},      {"tpr_at_0.1%", interval(tpr01)},
      {"tpr_at_1%", interval(tpr1)}};
}

Json paired_difference(const at::Tensor& scores_a, const at::Tensor& members_a,
                       const at::Tensor& scores_b, const at::Tensor& members_b, int rounds,
                       std::uint64_t seed) {
  const auto [sa, ma] = as_runs_by_points(scores_a, members_a);
  const auto [sb, mb] = as_runs_by_points(scores_b, members_b);
  if (sa.size(1) != sb.size(1))
    throw Error("paired bootstrap: the two targets were audited on different points");
  const auto points = sa.size(1);
  const auto a = roc(sa, ma, false);
  const auto b = roc(sb, mb, false);
  std::vector<double> aucs, tpr01, tpr1;
  for (int r = 0; r < rounds; ++r) {
    const auto index = point_draw(points, seed, r);  // the same points for both
    const auto ra = roc(sa.index_select(1, index), ma.index_select(1, index), false);
    const auto rb = roc(sb.index_select(1, index), mb.index_select(1, index), false);
    aucs.push_back(ra.auc - rb.auc);
    tpr01.push_back(ra.tpr_at_0_1 - rb.tpr_at_0_1);
    tpr1.push_back(ra.tpr_at_1 - rb.tpr_at_1);
  }
  const auto excludes_zero = [](const Json& range) {
    return !range.empty() && (range[0].get<double>() > 0 || range[1].get<double>() < 0);
  };
  Json result{{"rounds", rounds},
              {"points", points},
              {"auc", a.auc - b.auc},
              {"tpr_at_0.1%", a.tpr_at_0_1 - b.tpr_at_0_1},
              {"tpr_at_1%", a.tpr_at_1 - b.tpr_at_1},
              {"auc_95", interval(aucs)},
              {"tpr_at_0.1%_95", interval(tpr01)},
              {"tpr_at_1%_95", interval(tpr1)}};
  result["auc_95_excludes_0"] = excludes_zero(result["auc_95"]);
  result["tpr_at_0.1%_95_excludes_0"] = excludes_zero(result["tpr_at_0.1%_95"]);
  result["tpr_at_1%_95_excludes_0"] = excludes_zero(result["tpr_at_1%_95"]);
  return result;
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
