#include "kr/train/distillation.hpp"

#include <torch/torch.h>

#include <optional>

#include "kr/core/error.hpp"

namespace kr::train {

at::Tensor soft_targets(const at::Tensor& teacher_logits, double temperature, double smoothing) {
  const auto classes = static_cast<double>(teacher_logits.size(1));
  auto q = torch::softmax(teacher_logits.to(torch::kFloat32) / temperature, 1);
  return smoothing > 0 ? q * (1.0 - smoothing) + smoothing / classes : q;
}

at::Tensor label_targets(const at::Tensor& labels, std::int64_t classes, double smoothing,
                         const data::Mix* mix) {
  auto y = torch::one_hot(labels, classes).to(torch::kFloat32);
  if (mix) {
    auto weight = mix->lambda.unsqueeze(1);
    y = y * weight + y.index_select(0, mix->partner) * (1.0f - weight);
  }
  return smoothing > 0 ? y * (1.0 - smoothing) + smoothing / static_cast<double>(classes) : y;
}

at::Tensor distillation_loss(const at::Tensor& student_logits, const at::Tensor& targets,
                             double temperature) {
  auto log_p = torch::log_softmax(student_logits / temperature, 1);
  return -(targets * log_p).sum(1).mean() * (temperature * temperature);
}

TargetKind parse_target_kind(const std::string& name) {
  if (name == "soft") return TargetKind::soft;
  if (name == "stored") return TargetKind::stored;
  if (name == "hard") return TargetKind::hard;
  throw UsageError("--targets must be soft, stored or hard, got '" + name + "'");
}

DistillBatch make_distill_batch(const DistillSettings& settings, const data::ImageSet& part,
                                std::int64_t first, const std::vector<std::int64_t>& local,
                                std::uint64_t epoch, const TeacherFn& teacher,
                                const at::Tensor& stored_logits) {
  std::vector<std::int64_t> global(local.size());
  for (std::size_t i = 0; i < local.size(); ++i) global[i] = first + local[i];
  const bool stored = settings.kind == TargetKind::stored;
  if (stored && settings.mixup > 0)
    throw UsageError(
        "--mixup needs targets computed on the mixed batch (soft or hard), "
        "not stored logits");
  DistillBatch batch;
  batch.images = data::assemble_batch(part, local, stored ? data::Augment{} : settings.augment,
                                      settings.seed, epoch, &global);
  std::optional<data::Mix> mix;
  if (settings.mixup > 0)
    mix = data::mix_pairs(batch.images, global, settings.mixup, settings.seed, epoch);
  const auto labels = data::gather_labels(part, local);
  batch.label_targets =
      label_targets(labels, settings.classes, settings.smoothing, mix ? &*mix : nullptr);
  if (settings.kind == TargetKind::hard) {
    batch.targets = batch.label_targets;
  } else if (stored) {
    batch.targets = soft_targets(stored_logits.index_select(0, torch::tensor(local, torch::kInt64)),
                                 settings.temperature, settings.smoothing);
  } else {
    torch::NoGradGuard no_grad;
    batch.targets = soft_targets(teacher(batch.images), settings.temperature, settings.smoothing);
  }
  return batch;
}

at::Tensor distill_loss(const DistillSettings& settings, const at::Tensor& student_logits,
                        const DistillBatch& batch) {
  if (settings.kind == TargetKind::hard)
    return distillation_loss(student_logits, batch.targets, 1.0);
  auto loss = distillation_loss(student_logits, batch.targets, settings.temperature);
  if (settings.hard_weight > 0)
    loss = (1.0 - settings.hard_weight) * loss +
           settings.hard_weight * distillation_loss(student_logits, batch.label_targets, 1.0);
  return loss;
}

}  // namespace kr::train
