// Memorisation of a synthetic pool (`kr audit`): exact nearest real images of every
// synthetic sample, in pixels and in a classifier's feature space, and the measures
// over them (Note [Memorisation audit]).
//
// Note [Memorisation audit]
// For each audited sample x (a synthetic image, or a real one for a reference row):
// - its nearest image in the whole real train set and its 50 nearest there
//   (Carlini et al. 2023: x is flagged when d(x, nearest) / (alpha * mean distance to
//   its 50 nearest) is under a stated threshold, alpha = 0.5);
// - its nearest image in a train reference and in a holdout of the same size (a keyed
//   random subset of train as large as the holdout): SDMetrics' DCR share is the share
//   of samples closer to the train reference than to the holdout, ties counting one half,
//   about 0.5 when nothing is memorised.
// Distances: pixels as the L2 norm of the difference of images scaled to [0, 1];
// features as the cosine distance 1 - cos. Both are the Euclidean distance of rows
// (features normalised first: 1 - cos = |a - b|^2 / 2), found exactly in two passes:
// a float32 screen |a|^2 + |b|^2 - 2 a.b (a matrix product per block of queries and
// block of reference rows, the running best k + 16 kept per query; no queries x
// reference matrix), then the screened candidates' distances recomputed as |a - b|^2
// in float64 (of the float32 rows), sorted, the best k kept. A copy of a reference row is at
// distance 0 exactly. The screen's float32 error (about 1e-7 of |a|^2) is far under the gaps
// between neighbours it could misorder.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kr/core/json.hpp"

namespace kr::comm {
class Communicator;
}

namespace kr::privacy {

enum class Distance { l2, cosine };
const char* distance_name(Distance distance);

// Rows as the search compares them: flattened to (n, d) float32; cosine rows divided
// by their norm in float64 first (a zero row stays zero).
at::Tensor search_rows(const at::Tensor& rows, Distance distance);

struct Neighbours {
  at::Tensor distance;  // (n, k) float64, ascending along each row
  at::Tensor index;     // (n, k) int64, rows of the reference
};

// The k nearest rows of `reference` to each row of `queries`, both from search_rows
// with the same distance. k <= reference rows. Blocks bound the memory: a screen
// block is (query_block x reference_block) float32.
struct SearchBlocks {
  std::int64_t queries = 1024;
  std::int64_t reference = 8192;
};
Neighbours nearest_neighbours(const at::Tensor& queries, const at::Tensor& reference,
                              std::int64_t k, Distance distance, SearchBlocks blocks = {});

// Each query row's distance (n) float64 to its nearest reference row of the same
// class (labels one per row); a query class with no reference row is an Error.
at::Tensor nearest_same_class(const at::Tensor& queries, const at::Tensor& query_labels,
                              const at::Tensor& reference, const at::Tensor& reference_labels,
                              Distance distance, SearchBlocks blocks = {});

// The floating-point work of nearest_neighbours' screen (2 n m d), for GFLOP/s.
double screen_flops(std::int64_t queries, std::int64_t reference, std::int64_t dims);

// The real sets one space is searched against, as search_rows.
struct AuditReference {
  at::Tensor train;    // the whole train set
  at::Tensor subset;   // the train reference: rows `subset_index` of train
  at::Tensor holdout;  // the holdout (as many rows as subset)
  at::Tensor subset_index;
};

struct AuditSettings {
  double alpha = 0.5;            // Carlini et al.'s
  std::int64_t neighbours = 50;  // Carlini et al.'s n
  double threshold = 1.0 / 3.0;  // normalised distance under which a sample is flagged
  SearchBlocks blocks;
};

// Per audited sample, in one space.
struct SpaceAudit {
  at::Tensor train_distance;    // (n) float64: to the nearest train image
  at::Tensor train_index;       // (n) int64: its row of train
  at::Tensor normalised;        // (n) float64: Carlini et al.'s normalised distance
  at::Tensor subset_distance;   // (n) float64: to the nearest of the train reference
  at::Tensor holdout_distance;  // (n) float64: to the nearest holdout image
  at::Tensor holdout_index;     // (n) int64: its row of the holdout
  // The columns as one (n, 6) float64 table (indices exact below 2^53), and back, so
  // the ranks' parts gather in one all-reduce.
  at::Tensor table() const;
  static SpaceAudit from_table(const at::Tensor& table);
};

// `samples` from search_rows with `distance`; needs train rows >= settings.neighbours.
SpaceAudit audit_space(const at::Tensor& samples, const AuditReference& reference,
                       Distance distance, const AuditSettings& settings);

// Collective. audit_space of this rank's samples `mine` (rows [begin, begin + n) of
// `total`, the ranks' rows tiling them), gathered: every rank gets every sample's
// audit, the same for any rank count. `seconds` is set to the slowest rank's search.
SpaceAudit audit_space_gathered(comm::Communicator& comm, const at::Tensor& mine,
                                std::int64_t begin, std::int64_t total,
                                const AuditReference& reference, Distance distance,
                                const AuditSettings& settings, double* seconds = nullptr);

// Quantiles of `values` (1-D) at `levels` in [0, 1], linear between order statistics;
// NaN for no values.
std::vector<double> quantiles(const at::Tensor& values, const std::vector<double>& levels);

// The measures of one space over every audited sample (labels: their classes).
// closer_to_train_share, its per-class values, the distance quantiles of the three
// searches, exact copies (distance 0), the normalised count under the threshold
// overall and per class.
Json summarize_space(const SpaceAudit& audit, const at::Tensor& labels, std::int64_t classes,
                     const AuditSettings& settings);

// The `count` samples with the smallest distance to train (ties by sample order):
// the rows of a (synthetic | nearest train | nearest holdout) strip.
std::vector<std::int64_t> closest_samples(const SpaceAudit& audit, std::int64_t count);

}  // namespace kr::privacy
