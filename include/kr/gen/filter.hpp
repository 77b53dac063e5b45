// The confidence filter of `kr generate --filter-tau` (GaFi).
//
// Note [Confidence filter]
// Candidates are sampled in blocks of `block` candidate indices exactly as an
// unfiltered pool would be (candidate i: noise keyed by i, class
// class_of_index(i)) and labelled by the teacher; a candidate is accepted when
// the teacher's argmax is its class with probability above tau. Each candidate
// block's accepted rows (with their candidate indices) are kept in a file of
// their own. Rounds of candidate blocks run until every class has `quota`
// accepted candidates (a filter may add its own test, as kr generate's
// re-identification filter does: Note [Re-identification filter]). Pool row j is then the (j /
// K)-th accepted candidate of class j mod K in candidate order, so labels stay class_of_index(j)
// and each regeneration stays class-balanced. How many extra blocks a round runs depends on the
// rank count and on the acceptance seen so far, but which candidates fill the pool does not: the
// result is the same for any rank count or block-to-rank assignment.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kr/io/shard.hpp"

namespace kr::comm {
class Communicator;
}

namespace kr::gen {

// Candidates i in [first, first + n) with class_of_index(i) == c.
std::int64_t candidates_of_class(std::int64_t first, std::int64_t n, std::int64_t c,
                                 std::int64_t classes);

// The accepted rows of a teacher-labelled candidate block starting at `first`,
// with their candidate indices in source_index.
io::Shard accept_confident(const io::Shard& candidates, std::int64_t first, double tau);

// Rows `keep` (positions, int64) of a candidate block starting at `first`, or of rows
// an earlier filter kept: their candidate indices in source_index (first + position
// when the rows have none yet). Filters compose through it (Note [Confidence filter]).
io::Shard take_rows(const io::Shard& rows, const at::Tensor& keep, std::int64_t first);

class CandidateSet {
 public:
  // `read_block(b)`: the accepted rows of candidate block b (from its file).
  CandidateSet(std::int64_t block, std::int64_t classes,
               std::function<io::Shard(std::int64_t)> read_block);

  // Collective. Runs rounds of candidate blocks, dealt round-robin to ranks
  // from `first_round` blocks on, until every class has `quota` accepted;
  // `make_block(b)` returns candidate block b's accepted rows (sampling them or
  // reading them back). Errors when a class accepts nothing or acceptance is
  // below 1 %.
  void fill(comm::Communicator& comm, std::int64_t quota, std::int64_t first_round,
            const std::function<io::Shard(std::int64_t)>& make_block);

  std::int64_t blocks() const { return static_cast<std::int64_t>(prefix_[0].size()) - 1; }
  std::int64_t accepted(std::int64_t c) const;
  std::int64_t candidates(std::int64_t c) const;

  // Pool rows [first, first + n): row j is the (j / K)-th accepted candidate of class j mod K.
  io::Shard gather(std::int64_t first, std::int64_t n) const;

 private:
  std::int64_t block_, classes_;
  std::function<io::Shard(std::int64_t)> read_block_;
  // Per class: accepted candidates in blocks [0, b) at position b (prefix[0] = 0).
  std::vector<std::vector<std::int64_t>> prefix_;
};

}  // namespace kr::gen
