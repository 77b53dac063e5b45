// Generative Knowledge Distillation targets and loss (METHOD.md "GKD").
//
// Note [Distillation batch]
// The student sees synthetic images only, and learns the teacher's function
// rather than the generator's labels: soft targets are the teacher's softmax on
// exactly the images the student sees, after the keyed crop and flip and, with
// --mixup, after mixing each row with its neighbour (Beyer et al. 2022,
// "function matching": the teacher labels the mixed image itself, so the
// student also learns the teacher between the generator's modes, where a GAN of
// little within-class variety leaves it blind). Every draw is keyed by the
// row's global pool index and rows mix with neighbours of the same global
// batch, so 2 ranks x B/2 train as 1 rank x B (tests/mpi/test_distill.cpp) as
// long as each rank's slice is even. Stored targets (logits written by
// `kr generate`) cannot follow augmentation, so that mode uses neither.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kr/data/augment.hpp"

namespace kr::train {

// q = (1 - eps) softmax(teacher_logits / T) + eps / K.
at::Tensor soft_targets(const at::Tensor& teacher_logits, double temperature, double smoothing);

// (1 - eps) y + eps / K for one-hot labels y; with `mix`, y is mixed like the
// images: lambda_b onehot(label_b) + (1 - lambda_b) onehot(label_partner(b)).
at::Tensor label_targets(const at::Tensor& labels, std::int64_t classes, double smoothing,
                         const data::Mix* mix = nullptr);

// Hinton's loss: T^2 * mean over the batch of -sum_k q_k log softmax(student / T)_k.
at::Tensor distillation_loss(const at::Tensor& student_logits, const at::Tensor& targets,
                             double temperature);

// Which disjoint part of the synthetic pool epoch `epoch` reads: epoch / k for
// regeneration every k epochs; k = 0 always reads part 0 (no regeneration).
inline std::int64_t pool_part(std::int64_t epoch, std::int64_t regen_every) {
  return regen_every > 0 ? epoch / regen_every : 0;
}

enum class TargetKind { soft, stored, hard };
TargetKind parse_target_kind(const std::string& name);  // throws UsageError

struct DistillSettings {
  TargetKind kind = TargetKind::soft;
  double temperature = 1.0;
  double smoothing = 0.0;
  double hard_weight = 0.0;  // alpha: weight of the conditioning-label loss (soft, stored)
  double mixup = 0.0;        // Beta(alpha, alpha) mixup of the batch; 0: off
  data::Augment augment;     // crops and flips (not used for stored targets)
  std::uint64_t seed = 0;
  std::int64_t classes = 0;
};

// One student batch: its input images and what the student is trained toward.
struct DistillBatch {
  at::Tensor images;         // (B, C, H, W) float, augmented and mixed as the student sees them
  at::Tensor targets;        // (B, K) probabilities: the teacher's (soft, stored) or the labels'
  at::Tensor label_targets;  // (B, K) the conditioning labels, mixed like the images
};

using TeacherFn = std::function<at::Tensor(const at::Tensor&)>;

// Builds the batch of rows `local` of one pool part whose first row has global
// index `first`: every random draw is keyed by global pool index (Note [Keyed
// random streams]). Soft targets come from `teacher` on exactly the returned
// images; stored targets from `stored_logits` rows (no augmentation, no mixup).
DistillBatch make_distill_batch(const DistillSettings& settings, const data::ImageSet& part,
                                std::int64_t first, const std::vector<std::int64_t>& local,
                                std::uint64_t epoch, const TeacherFn& teacher,
                                const at::Tensor& stored_logits);

// The student's loss on a batch: T^2-scaled cross-entropy toward `targets`
// (temperature 1 for hard targets), with `hard_weight` of label cross-entropy.
at::Tensor distill_loss(const DistillSettings& settings, const at::Tensor& student_logits,
                        const DistillBatch& batch);

}  // namespace kr::train
