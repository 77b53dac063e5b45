// Generative Knowledge Distillation targets and loss (METHOD.md "GKD").
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace kr::train {

// q = (1 - eps) softmax(teacher_logits / T) + eps / K.
at::Tensor soft_targets(const at::Tensor& teacher_logits, double temperature, double smoothing);

// Hinton's loss: T^2 * mean over the batch of -sum_k q_k log softmax(student / T)_k.
at::Tensor distillation_loss(const at::Tensor& student_logits, const at::Tensor& targets,
                             double temperature);

// Which disjoint part of the synthetic pool epoch `epoch` reads: epoch / k for
// regeneration every k epochs; k = 0 always reads part 0 (no regeneration).
inline std::int64_t pool_part(std::int64_t epoch, std::int64_t regen_every) {
  return regen_every > 0 ? epoch / regen_every : 0;
}

}  // namespace kr::train
