#include "kr/train/distillation.hpp"

#include <torch/torch.h>

namespace kr::train {

at::Tensor soft_targets(const at::Tensor& teacher_logits, double temperature, double smoothing) {
  const auto classes = static_cast<double>(teacher_logits.size(1));
  auto q = torch::softmax(teacher_logits.to(torch::kFloat32) / temperature, 1);
  return smoothing > 0 ? q * (1.0 - smoothing) + smoothing / classes : q;
}

at::Tensor distillation_loss(const at::Tensor& student_logits, const at::Tensor& targets,
                             double temperature) {
  auto log_p = torch::log_softmax(student_logits / temperature, 1);
  return -(targets * log_p).sum(1).mean() * (temperature * temperature);
}

}  // namespace kr::train
