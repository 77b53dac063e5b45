// PrivImage's semantic query (Li et al. 2024; issue 24; Note [Semantic query]).
//
// Note [Semantic query]
// PrivImage pre-trains the generator on the part of a public data set semantically
// closest to the private one, chosen by one differentially private query. A classifier
// trained on the public set's own labels predicts the top-k public classes of every
// private train image; the counts, a (private class x public class) histogram in which
// each private image adds 1 to k cells of its class's row (L2 sensitivity sqrt(k)), get
// Gaussian noise of standard deviation sigma sqrt(k) in every cell: the Gaussian
// mechanism with noise multiplier sigma, one step at sampling rate 1 in the RDP
// accountant, composed with the DP-SGD that follows (Note [RDP accountant]). Each
// private class then takes the public classes of the largest noisy counts of its row;
// the pre-training set is the public images of those classes, labelled with the private
// class that chose them (a public class chosen by two private classes serves both).
// Neither the choice nor the pre-training reads the private data again: both are
// post-processing of the noisy histogram.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace kr::privacy {

// (K_private, K_public) float64 counts: for image i of private label labels[i], +1 at
// each of the k largest entries of public_logits[i] (N, K_public).
at::Tensor topk_counts(const at::Tensor& public_logits, const at::Tensor& labels, std::int64_t k,
                       std::int64_t private_classes);

// Per private class (row), the `per_class` public classes of the largest noisy counts,
// ties to the lower index, in decreasing order of count.
std::vector<std::vector<std::int64_t>> chosen_classes(const at::Tensor& noisy_counts,
                                                      std::int64_t per_class);

// The pre-training rows of a public set with labels `public_labels` (N) int64: each
// image of a class chosen by private class c, once per such c, with c as its label.
// Returns (public row indices, private labels).
std::pair<std::vector<std::int64_t>, std::vector<std::int64_t>> pretraining_rows(
    const at::Tensor& public_labels, const std::vector<std::vector<std::int64_t>>& chosen);

}  // namespace kr::privacy
