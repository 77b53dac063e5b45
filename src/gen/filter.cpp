#include "kr/gen/filter.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/gen/sampler.hpp"

namespace kr::gen {

std::int64_t candidates_of_class(std::int64_t first, std::int64_t n, std::int64_t c,
                                 std::int64_t classes) {
  // #{i < end : i mod K == c}
  auto below = [&](std::int64_t end) { return end <= c ? 0 : (end - c + classes - 1) / classes; };
  return below(first + n) - below(first);
}

io::Shard accept_confident(const io::Shard& candidates, std::int64_t first, double tau) {
  auto probabilities = torch::softmax(candidates.teacher_logits.to(torch::kFloat64), 1);
  auto [best, argmax] = probabilities.max(1);
  auto keep = argmax.eq(candidates.labels).logical_and(best.gt(tau)).nonzero().view(-1);
  return take_rows(candidates, keep, first);
}

io::Shard take_rows(const io::Shard& rows, const at::Tensor& keep, std::int64_t first) {
  io::Shard kept;
  kept.images = rows.images.index_select(0, keep).contiguous();
  kept.labels = rows.labels.index_select(0, keep).contiguous();
  if (rows.teacher_logits.defined())
    kept.teacher_logits = rows.teacher_logits.index_select(0, keep).contiguous();
  kept.source_index = rows.source_index.defined()
                          ? rows.source_index.index_select(0, keep).contiguous()
                          : (keep + first).contiguous();
  return kept;
}

CandidateSet::CandidateSet(std::int64_t block, std::int64_t classes,
                           std::function<io::Shard(std::int64_t)> read_block)
    : block_(block),
      classes_(classes),
      read_block_(std::move(read_block)),
      prefix_(static_cast<std::size_t>(classes), std::vector<std::int64_t>{0}) {}

std::int64_t CandidateSet::accepted(std::int64_t c) const {
  return prefix_[static_cast<std::size_t>(c)].back();
}

std::int64_t CandidateSet::candidates(std::int64_t c) const {
  return candidates_of_class(0, blocks() * block_, c, classes_);
}

void CandidateSet::fill(comm::Communicator& comm, std::int64_t quota, std::int64_t first_round,
                        const std::function<io::Shard(std::int64_t)>& make_block) {
  const int world = comm.size();
  std::int64_t round = std::max<std::int64_t>(1, (first_round + world - 1) / world) * world;
  const std::int64_t pool = quota * classes_;
  while (true) {
    const std::int64_t next = blocks();
    auto counts = torch::zeros({round, classes_}, torch::kInt64);
    for (std::int64_t b = next + comm.rank(); b < next + round; b += world) {
      const auto rows = make_block(b);
      counts[b - next] = torch::bincount(rows.labels, {}, classes_);
    }
    comm.allreduce(counts, comm::ReduceOp::sum);
    for (std::int64_t r = 0; r < round; ++r) {
      for (std::int64_t c = 0; c < classes_; ++c) {
        auto& prefix = prefix_[static_cast<std::size_t>(c)];
        prefix.push_back(prefix.back() + counts[r][c].item<std::int64_t>());
      }
    }
    // Enough of every class? Else size the next round from the worst class's acceptance.
    double need_blocks = 0.0;
    for (std::int64_t c = 0; c < classes_; ++c) {
      const auto have = accepted(c);
      if (have >= quota) continue;
      const auto seen = candidates(c);
      if (have == 0 && seen >= 20 * quota)
        throw Error("filter: class " + std::to_string(c) + ": none of " + std::to_string(seen) +
                    " candidates accepted; lower --filter-tau or train the generator longer");
      const double rate = static_cast<double>(std::max<std::int64_t>(have, 1)) / seen;
      need_blocks = std::max(need_blocks, static_cast<double>(quota - have) / rate *
                                              static_cast<double>(classes_) / block_);
    }
    if (need_blocks == 0.0) return;
    if (blocks() * block_ > 100 * pool)
      throw Error("filter: acceptance below 1 % after " + std::to_string(blocks() * block_) +
                  " candidates; lower --filter-tau or train the generator longer");
    const auto wanted = static_cast<std::int64_t>(std::ceil(1.1 * need_blocks));
    round = std::max<std::int64_t>(1, (wanted + world - 1) / world) * world;
  }
}

io::Shard CandidateSet::gather(std::int64_t first, std::int64_t n) const {
  struct Loaded {
    io::Shard rows;
    std::vector<std::vector<std::int64_t>> of_class;  // row numbers per class
  };
  std::map<std::int64_t, Loaded> files;
  std::vector<at::Tensor> images, labels, logits, sources;
  for (std::int64_t j = first; j < first + n; ++j) {
    const std::int64_t c = class_of_index(j, classes_);
    const std::int64_t k = j / classes_;
    const auto& prefix = prefix_[static_cast<std::size_t>(c)];
    // The candidate block b with prefix[b] <= k < prefix[b + 1].
    const auto b = static_cast<std::int64_t>(std::upper_bound(prefix.begin(), prefix.end(), k) -
                                             prefix.begin()) -
                   1;
    if (b < 0 || b >= blocks())
      throw Error("filter: not enough accepted candidates of class " + std::to_string(c) +
                  " for pool row " + std::to_string(j));
    auto found = files.find(b);
    if (found == files.end()) {
      Loaded loaded{read_block_(b),
                    std::vector<std::vector<std::int64_t>>(static_cast<std::size_t>(classes_))};
      auto row_labels = loaded.rows.labels.accessor<std::int64_t, 1>();
      for (std::int64_t r = 0; r < loaded.rows.labels.size(0); ++r)
        loaded.of_class[static_cast<std::size_t>(row_labels[r])].push_back(r);
      found = files.emplace(b, std::move(loaded)).first;
    }
    const auto& loaded = found->second;
    const auto& rows = loaded.of_class[static_cast<std::size_t>(c)];
    const auto position = static_cast<std::size_t>(k - prefix[static_cast<std::size_t>(b)]);
    if (position >= rows.size())
      throw Error("filter: candidate block " + std::to_string(b) +
                  " holds fewer accepted rows of class " + std::to_string(c) +
                  " than were counted (changed during the run?)");
    const auto r = rows[position];
    images.push_back(loaded.rows.images.narrow(0, r, 1));
    labels.push_back(loaded.rows.labels.narrow(0, r, 1));
    logits.push_back(loaded.rows.teacher_logits.narrow(0, r, 1));
    sources.push_back(loaded.rows.source_index.narrow(0, r, 1));
  }
  io::Shard out;
  out.images = torch::cat(images).contiguous();
  out.labels = torch::cat(labels).contiguous();
  out.teacher_logits = torch::cat(logits).contiguous();
  out.source_index = torch::cat(sources).contiguous();
  return out;
}

}  // namespace kr::gen
