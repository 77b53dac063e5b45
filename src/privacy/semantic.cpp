#include "kr/privacy/semantic.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <numeric>
#include <string>
#include <utility>

#include "kr/core/error.hpp"

namespace kr::privacy {

at::Tensor topk_counts(const at::Tensor& public_logits, const at::Tensor& labels, std::int64_t k,
                       std::int64_t private_classes) {
  if (public_logits.dim() != 2 || labels.dim() != 1 || public_logits.size(0) != labels.size(0))
    throw Error("semantic query: logits (N, K) and labels (N) do not match");
  if (k < 1 || k > public_logits.size(1))
    throw UsageError("--top-k must be between 1 and the public classes (" +
                     std::to_string(public_logits.size(1)) + "), got " + std::to_string(k));
  auto counts = torch::zeros({private_classes, public_logits.size(1)}, torch::kFloat64);
  if (labels.numel() == 0) return counts;
  const auto labels64 = labels.to(torch::kInt64);
  if (labels64.min().item<std::int64_t>() < 0 ||
      labels64.max().item<std::int64_t>() >= private_classes)
    throw Error("semantic query: a private label outside [0, " + std::to_string(private_classes) +
                ")");
  const auto top = std::get<1>(public_logits.topk(k, 1));  // (N, k)
  const auto cells = (labels64.unsqueeze(1) * public_logits.size(1) + top).reshape({-1});
  counts.view({-1}).index_add_(0, cells, torch::ones({cells.numel()}, torch::kFloat64));
  return counts;
}

std::vector<std::vector<std::int64_t>> chosen_classes(const at::Tensor& noisy_counts,
                                                      std::int64_t per_class) {
  const auto rows = noisy_counts.size(0), columns = noisy_counts.size(1);
  if (per_class < 1 || per_class > columns)
    throw UsageError("--per-class must be between 1 and the public classes (" +
                     std::to_string(columns) + "), got " + std::to_string(per_class));
  const auto counts = noisy_counts.to(torch::kFloat64).contiguous();
  const auto* values = counts.data_ptr<double>();
  std::vector<std::vector<std::int64_t>> chosen(static_cast<std::size_t>(rows));
  for (std::int64_t c = 0; c < rows; ++c) {
    std::vector<std::int64_t> order(static_cast<std::size_t>(columns));
    std::iota(order.begin(), order.end(), 0);
    const double* row = values + c * columns;
    std::stable_sort(order.begin(), order.end(),
                     [row](std::int64_t a, std::int64_t b) { return row[a] > row[b]; });
    order.resize(static_cast<std::size_t>(per_class));
    chosen[static_cast<std::size_t>(c)] = std::move(order);
  }
  return chosen;
}

std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> pretraining_rows(
    const at::Tensor& public_labels, const std::vector<std::vector<std::int64_t>>& chosen) {
  const auto labels = public_labels.to(torch::kInt64).contiguous();
  const auto* values = labels.data_ptr<std::int64_t>();
  std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> out;
  for (std::size_t c = 0; c < chosen.size(); ++c)
    for (std::int64_t i = 0; i < labels.numel(); ++i)
      if (std::find(chosen[c].begin(), chosen[c].end(), values[i]) != chosen[c].end()) {
        out.first.push_back(i);
        out.second.push_back(static_cast<std::int64_t>(c));
      }
  return out;
}

}  // namespace kr::privacy
