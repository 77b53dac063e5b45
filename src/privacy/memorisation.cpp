#include "kr/privacy/memorisation.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "kr/comm/communicator.hpp"
#include "kr/core/clock.hpp"
#include "kr/core/error.hpp"

namespace kr::privacy {

namespace {

constexpr std::int64_t kScreenSlack = 16;  // candidates kept beyond k for the exact pass
constexpr std::int64_t kRefineChunk = 64;  // queries per float64 recomputation

// The squared float64 distances of each query to its candidate rows, in chunks of
// queries so the gathered candidates stay small.
at::Tensor exact_squared(const at::Tensor& queries, const at::Tensor& reference,
                         const at::Tensor& candidates) {
  auto out = torch::empty(candidates.sizes(), torch::kFloat64);
  for (std::int64_t begin = 0; begin < queries.size(0); begin += kRefineChunk) {
    const auto n = std::min(kRefineChunk, queries.size(0) - begin);
    const auto rows = reference.index({candidates.narrow(0, begin, n)}).to(torch::kFloat64);
    const auto mine = queries.narrow(0, begin, n).to(torch::kFloat64).unsqueeze(1);
    out.narrow(0, begin, n).copy_((rows - mine).pow(2).sum(2));  // (n, c)
  }
  return out;
}

double quantile_of(const at::Tensor& sorted, double p) {
  const auto n = sorted.size(0);
  if (n == 0) return std::nan("");
  const double position = p * static_cast<double>(n - 1);
  const auto low = static_cast<std::int64_t>(std::floor(position));
  const auto high = std::min(n - 1, low + 1);
  const double a = sorted[low].item<double>();
  const double b = sorted[high].item<double>();
  return a + (position - static_cast<double>(low)) * (b - a);
}

// 1 where the train reference is nearer, 0.5 on a tie, 0 where the holdout is.
at::Tensor closer_to_train(const SpaceAudit& audit) {
  return audit.subset_distance.lt(audit.holdout_distance).to(torch::kFloat64) +
         0.5 * audit.subset_distance.eq(audit.holdout_distance).to(torch::kFloat64);
}

}  // namespace

std::vector<double> quantiles(const at::Tensor& values, const std::vector<double>& levels) {
  const auto sorted = std::get<0>(values.to(torch::kFloat64).sort());
  std::vector<double> out;
  for (const double p : levels) out.push_back(quantile_of(sorted, p));
  return out;
}

const char* distance_name(Distance distance) {
  return distance == Distance::l2 ? "pixels_l2" : "features_cosine";
}

at::Tensor search_rows(const at::Tensor& rows, Distance distance) {
  auto flat = rows.to(torch::kFloat64).flatten(1);
  if (distance == Distance::cosine) flat = flat / flat.norm(2, 1, true).clamp_min(1e-300);
  return flat.to(torch::kFloat32).contiguous();
}

at::Tensor nearest_same_class(const at::Tensor& queries, const at::Tensor& query_labels,
                              const at::Tensor& reference, const at::Tensor& reference_labels,
                              Distance distance, SearchBlocks blocks) {
  if (query_labels.size(0) != queries.size(0) || reference_labels.size(0) != reference.size(0))
    throw Error("nearest_same_class: one label per row is needed");
  auto out = torch::empty({queries.size(0)}, torch::kFloat64);
  const auto q_labels = query_labels.to(torch::kInt64);
  const auto r_labels = reference_labels.to(torch::kInt64);
  const std::int64_t top = queries.size(0) ? q_labels.max().item<std::int64_t>() : -1;
  for (std::int64_t c = 0; c <= top; ++c) {
    const auto mine = q_labels.eq(c).nonzero().squeeze(1);
    if (mine.size(0) == 0) continue;
    const auto theirs = r_labels.eq(c).nonzero().squeeze(1);
    if (theirs.size(0) == 0)
      throw Error("nearest_same_class: no reference row of class " + std::to_string(c));
    const auto found = nearest_neighbours(queries.index_select(0, mine),
                                          reference.index_select(0, theirs), 1, distance, blocks);
    out.index_copy_(0, mine, found.distance.select(1, 0).contiguous());
  }
  return out;
}

double screen_flops(std::int64_t queries, std::int64_t reference, std::int64_t dims) {
  return 2.0 * static_cast<double>(queries) * static_cast<double>(reference) *
         static_cast<double>(dims);
}

Neighbours nearest_neighbours(const at::Tensor& queries, const at::Tensor& reference,
                              std::int64_t k, Distance distance, SearchBlocks blocks) {
  torch::NoGradGuard no_grad;
  if (queries.dim() != 2 || reference.dim() != 2 || queries.size(1) != reference.size(1))
    throw Error("nearest neighbours: queries and reference must be (n, d) with the same d");
  const std::int64_t m = reference.size(0);
  if (k < 1 || k > m)
    throw Error("nearest neighbours: k = " + std::to_string(k) + " of a reference of " +
                std::to_string(m) + " rows");
  if (blocks.queries < 1 || blocks.reference < 1)
    throw Error("nearest neighbours: blocks must be positive");
  const auto reference32 = reference.to(torch::kFloat32).contiguous();
  const auto queries32 = queries.to(torch::kFloat32).contiguous();
  const auto reference_norms = reference32.to(torch::kFloat64).pow(2).sum(1).to(torch::kFloat32);
  const std::int64_t screen = std::min(m, k + kScreenSlack);
  const std::int64_t n = queries.size(0);
  Neighbours out{torch::empty({n, k}, torch::kFloat64), torch::empty({n, k}, torch::kInt64)};
  for (std::int64_t qb = 0; qb < n; qb += blocks.queries) {
    const auto rows = std::min(blocks.queries, n - qb);
    const auto q32 = queries32.narrow(0, qb, rows);
    const auto query_norms = q32.to(torch::kFloat64).pow(2).sum(1, true).to(torch::kFloat32);
    at::Tensor best_distance, best_index;  // running screen: (rows, <= screen)
    for (std::int64_t rb = 0; rb < m; rb += blocks.reference) {
      const auto cols = std::min(blocks.reference, m - rb);
      // |q|^2 + |r|^2 - 2 q.r for the block, as one matrix product.
      auto squared = torch::addmm(reference_norms.narrow(0, rb, cols).unsqueeze(0), q32,
                                  reference32.narrow(0, rb, cols).t(), 1.0, -2.0);
      squared.add_(query_norms);
      auto [values, positions] = squared.topk(std::min(screen, cols), 1, false, false);
      positions.add_(rb);
      if (best_distance.defined()) {
        values = torch::cat({best_distance, values}, 1);
        positions = torch::cat({best_index, positions}, 1);
        auto [kept, where] = values.topk(std::min(screen, values.size(1)), 1, false, false);
        best_distance = kept;
        best_index = positions.gather(1, where);
      } else {
        best_distance = values;
        best_index = positions;
      }
    }
    // The exact pass: float64 |q - r|^2 of the screened candidates, ascending; ties
    // keep the lower reference row first.
    auto [order_index, by_index] = best_index.sort(1);
    auto squared = exact_squared(q32, reference32, order_index);
    auto [sorted, order] = squared.sort(true, 1, false);
    out.distance.narrow(0, qb, rows).copy_(sorted.narrow(1, 0, k));
    out.index.narrow(0, qb, rows).copy_(order_index.gather(1, order).narrow(1, 0, k));
  }
  out.distance = distance == Distance::l2 ? out.distance.sqrt() : out.distance * 0.5;
  return out;
}

at::Tensor SpaceAudit::table() const {
  return torch::stack({train_distance, train_index.to(torch::kFloat64), normalised, subset_distance,
                       holdout_distance, holdout_index.to(torch::kFloat64)},
                      1);
}

SpaceAudit SpaceAudit::from_table(const at::Tensor& table) {
  if (table.dim() != 2 || table.size(1) != 6)
    throw Error("memorisation audit: a table must be (n, 6)");
  const auto t = table.to(torch::kFloat64);
  return SpaceAudit{t.select(1, 0).contiguous(), t.select(1, 1).to(torch::kInt64),
                    t.select(1, 2).contiguous(), t.select(1, 3).contiguous(),
                    t.select(1, 4).contiguous(), t.select(1, 5).to(torch::kInt64)};
}

SpaceAudit audit_space(const at::Tensor& samples, const AuditReference& reference,
                       Distance distance, const AuditSettings& settings) {
  if (reference.train.size(0) < settings.neighbours)
    throw Error("memorisation audit: the train set has " + std::to_string(reference.train.size(0)) +
                " images, fewer than the " + std::to_string(settings.neighbours) +
                " neighbours of the normalised distance");
  if (reference.subset.size(0) != reference.holdout.size(0))
    throw Error("memorisation audit: the train reference and the holdout differ in size");
  SpaceAudit out;
  const auto train =
      nearest_neighbours(samples, reference.train, settings.neighbours, distance, settings.blocks);
  out.train_distance = train.distance.select(1, 0).contiguous();
  out.train_index = train.index.select(1, 0).contiguous();
  // d / (alpha * mean of the n nearest); 0 when all n are at distance 0 (a copy).
  const auto scale = settings.alpha * train.distance.mean(1);
  out.normalised = torch::where(scale.gt(0), out.train_distance / scale.clamp_min(1e-300),
                                torch::zeros_like(scale));
  const auto subset = nearest_neighbours(samples, reference.subset, 1, distance, settings.blocks);
  out.subset_distance = subset.distance.select(1, 0).contiguous();
  const auto holdout = nearest_neighbours(samples, reference.holdout, 1, distance, settings.blocks);
  out.holdout_distance = holdout.distance.select(1, 0).contiguous();
  out.holdout_index = holdout.index.select(1, 0).contiguous();
  return out;
}

SpaceAudit audit_space_gathered(comm::Communicator& comm, const at::Tensor& mine,
                                std::int64_t begin, std::int64_t total,
                                const AuditReference& reference, Distance distance,
                                const AuditSettings& settings, double* seconds) {
  const auto start = Clock::now();
  const auto local = audit_space(mine, reference, distance, settings);
  auto slowest = torch::tensor({seconds_since(start)}, torch::kFloat64);
  comm.allreduce(slowest, comm::ReduceOp::max);
  if (seconds) *seconds = slowest.item<double>();
  return SpaceAudit::from_table(
      comm.gather_rows({local.table()}, {begin}, total, {6}, torch::kFloat64));
}

Json summarize_space(const SpaceAudit& audit, const at::Tensor& labels, std::int64_t classes,
                     const AuditSettings& settings) {
  const std::vector<double> levels{0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0};
  std::vector<double> curve_levels;  // the distributions' plotted quantiles
  for (int i = 0; i <= 50; ++i) curve_levels.push_back(i / 50.0);
  const auto closer = closer_to_train(audit);
  const auto flagged = audit.normalised.lt(settings.threshold);
  const auto copies = audit.train_distance.eq(0);
  const auto labels64 = labels.to(torch::kInt64);
  Json per_class = Json::array();
  for (std::int64_t c = 0; c < classes; ++c) {
    const auto mine = labels64.eq(c);
    const auto n = mine.sum().item<std::int64_t>();
    per_class.push_back(
        Json{{"class", c},
             {"samples", n},
             {"closer_to_train_share",
              n ? Json(closer.index({mine}).mean().item<double>()) : Json(nullptr)},
             {"normalised_under_threshold", flagged.logical_and(mine).sum().item<std::int64_t>()},
             {"exact_copies", copies.logical_and(mine).sum().item<std::int64_t>()},
             {"median_train_distance",
              n ? Json(quantiles(audit.train_distance.index({mine}), {0.5})[0]) : Json(nullptr)}});
  }
  const auto n = audit.train_distance.size(0);
  const auto under = flagged.sum().item<std::int64_t>();
  return Json{{"samples", n},
              {"closer_to_train_share", n ? Json(closer.mean().item<double>()) : Json(nullptr)},
              {"exact_copies", copies.sum().item<std::int64_t>()},
              {"normalised_threshold", settings.threshold},
              {"normalised_under_threshold", under},
              {"normalised_under_threshold_share",
               n ? Json(static_cast<double>(under) / static_cast<double>(n)) : Json(nullptr)},
              {"quantile_levels", levels},
              {"train_distance_quantiles", quantiles(audit.train_distance, levels)},
              {"train_reference_distance_quantiles", quantiles(audit.subset_distance, levels)},
              {"holdout_distance_quantiles", quantiles(audit.holdout_distance, levels)},
              {"normalised_quantiles", quantiles(audit.normalised, levels)},
              {"curve_levels", curve_levels},
              {"train_reference_curve", quantiles(audit.subset_distance, curve_levels)},
              {"holdout_curve", quantiles(audit.holdout_distance, curve_levels)},
              {"per_class", per_class}};
}

std::vector<std::int64_t> closest_samples(const SpaceAudit& audit, std::int64_t count) {
  const auto order = std::get<1>(audit.train_distance.sort(true, 0, false));
  const auto n = std::min<std::int64_t>(count, order.size(0));
  std::vector<std::int64_t> out;
  for (std::int64_t i = 0; i < n; ++i) out.push_back(order[i].item<std::int64_t>());
  return out;
}

}  // namespace kr::privacy
