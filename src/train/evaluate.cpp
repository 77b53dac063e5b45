#include "kr/train/evaluate.hpp"

#include <torch/torch.h>

#include "kr/comm/shard_range.hpp"
#include "kr/data/augment.hpp"

namespace kr::train {

EvalResult evaluate_classifier(comm::Communicator& comm, const LogitsFn& logits,
                               const data::ImageSet& set, std::int64_t batch) {
  torch::NoGradGuard no_grad;
  const comm::Range range = comm::shard_range(set.size(), comm.rank(), comm.size());
  std::int64_t correct = 0;
  double loss_sum = 0.0;
  for (std::int64_t begin = range.begin; begin < range.end; begin += batch) {
    const auto count = std::min(batch, range.end - begin);
    auto images = data::to_float(set.images.narrow(0, begin, count));
    auto labels = set.labels.narrow(0, begin, count);
    auto output = logits(images);
    correct += output.argmax(1).eq(labels).sum().item<std::int64_t>();
    loss_sum +=
        torch::nn::functional::cross_entropy(
            output, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
            .item<double>();
  }
  auto counts = torch::tensor({correct, range.end - range.begin}, torch::kInt64);
  auto loss = torch::tensor({loss_sum}, torch::kFloat64);
  comm.allreduce(counts, comm::ReduceOp::sum);
  comm.allreduce(loss, comm::ReduceOp::sum);
  return EvalResult{counts[0].item<std::int64_t>(), counts[1].item<std::int64_t>(),
                    loss.item<double>()};
}

}  // namespace kr::train
