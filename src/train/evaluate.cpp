#include "kr/train/evaluate.hpp"

#include <torch/torch.h>

#include "kr/comm/shard_range.hpp"
#include "kr/core/error.hpp"
#include "kr/data/augment.hpp"

namespace kr::train {

EvalResult evaluate_classifier(comm::Communicator& comm, const LogitsFn& logits,
                               const data::ImageSet& set, std::int64_t batch,
                               const at::Tensor& reference) {
  torch::NoGradGuard no_grad;
  const comm::Range range = comm::shard_range(set.size(), comm.rank(), comm.size());
  if (reference.defined() && reference.size(0) != range.end - range.begin)
    throw Error("evaluation: the reference predictions cover " + std::to_string(reference.size(0)) +
                " rows, this rank's slice has " + std::to_string(range.end - range.begin));
  std::int64_t correct = 0;
  std::int64_t agree = 0;
  double loss_sum = 0.0;
  for (std::int64_t begin = range.begin; begin < range.end; begin += batch) {
    const auto count = std::min(batch, range.end - begin);
    auto images = data::to_float(set.images.narrow(0, begin, count));
    auto labels = set.labels.narrow(0, begin, count);
    auto output = logits(images);
    const auto predicted = output.argmax(1);
    correct += predicted.eq(labels).sum().item<std::int64_t>();
    if (reference.defined())
      agree +=
          predicted.eq(reference.narrow(0, begin - range.begin, count)).sum().item<std::int64_t>();
    loss_sum +=
        torch::nn::functional::cross_entropy(
            output, labels, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
            .item<double>();
  }
  auto counts = torch::tensor({correct, range.end - range.begin, agree}, torch::kInt64);
  auto loss = torch::tensor({loss_sum}, torch::kFloat64);
  comm.allreduce(counts, comm::ReduceOp::sum);
  comm.allreduce(loss, comm::ReduceOp::sum);
  return EvalResult{counts[0].item<std::int64_t>(), counts[1].item<std::int64_t>(),
                    loss.item<double>(), counts[2].item<std::int64_t>()};
}

}  // namespace kr::train
