// `kr bench`: training-step throughput of the reference networks on random data,
// with the same data-parallel machinery the training steps use.
#include <torch/torch.h>

#include <chrono>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/nn/resnet.hpp"
#include "kr/steps/step.hpp"
#include "kr/train/data_parallel.hpp"

namespace kr::steps {

namespace {

void add_bench_options(po::options_description& options) {
  // clang-format off
  options.add_options()
      ("model", po::value<std::string>()->default_value("resnet20"), "network to time: resnet20")
      ("batch-per-rank", po::value<std::int64_t>()->default_value(128), "images per rank per step (weak scaling)")
      ("image", po::value<std::string>()->default_value("1x28x28"), "input C x H x W")
      ("classes", po::value<std::int64_t>()->default_value(10), "output classes")
      ("width", po::value<std::int64_t>()->default_value(16), "resnet20 base width")
      ("channels-last", po::value<bool>()->default_value(true), "NHWC memory format")
      ("warmup", po::value<int>()->default_value(3), "untimed steps")
      ("steps", po::value<int>()->default_value(20), "timed steps")
      ("json", po::value<std::string>()->default_value(""), "append the result as one JSON line to this file");
  // clang-format on
}

std::vector<std::int64_t> parse_image(const std::string& text) {
  std::vector<std::int64_t> dims;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find('x', start);
    if (end == std::string::npos) end = text.size();
    try {
      dims.push_back(std::stoll(text.substr(start, end - start)));
    } catch (...) {
      throw UsageError("--image must look like 1x28x28, got '" + text + "'");
    }
    start = end + 1;
  }
  if (dims.size() != 3) throw UsageError("--image must look like 1x28x28, got '" + text + "'");
  return dims;
}

int run_bench(Context& context) {
  if (context.get<std::string>("model") != "resnet20")
    throw UsageError("--model: only resnet20 is benchmarked so far");
  const auto dims = parse_image(context.get<std::string>("image"));
  const auto batch = context.get<std::int64_t>("batch-per-rank");
  // See train_teacher.cpp: oneDNN's channels-last path needs widths divisible by 8.
  const bool channels_last =
      context.get<bool>("channels-last") && context.get<std::int64_t>("width") % 8 == 0;
  nn::ResNetShape shape{dims[0], context.get<std::int64_t>("classes"),
                        context.get<std::int64_t>("width"), dims[1], dims[2]};
  torch::manual_seed(1);
  nn::ResNet20 model(shape);
  if (channels_last) nn::to_channels_last(*model);
  train::DataParallel parallel(context.comm, *model);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  auto images = torch::randn({batch, dims[0], dims[1], dims[2]});
  if (channels_last) images = images.contiguous(at::MemoryFormat::ChannelsLast);
  auto labels = torch::randint(shape.classes, {batch}, torch::kInt64);
  auto step = [&] {
    optimizer.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model->forward(images), labels);
    loss.backward();
    parallel.synchronize_gradients();
    optimizer.step();
  };
  model->train();
  for (int i = 0; i < context.get<int>("warmup"); ++i) step();
  context.comm.barrier();
  const auto start = std::chrono::steady_clock::now();
  const int steps = context.get<int>("steps");
  for (int i = 0; i < steps; ++i) step();
  context.comm.barrier();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double images_per_second =
      static_cast<double>(batch) * context.comm.size() * steps / seconds;
  const double gflops = images_per_second * 3.0 * nn::resnet20_forward_flops(shape) / 1e9;
  Json row{{"impl", "kr"},
           {"model", "resnet20"},
           {"ranks", context.comm.size()},
           {"threads_per_rank", context.threads.intra_op},
           {"batch_per_rank", batch},
           {"image", context.get<std::string>("image")},
           {"layout", channels_last ? "channels_last" : "nchw"},
           {"images_per_second", images_per_second},
           {"gflops_per_second", gflops},
           {"seconds_per_step", seconds / steps}};
  char line[200];
  std::snprintf(
      line, sizeof line,
      "bench: resnet20 %s %d rank(s) x %d thread(s), B=%lld/rank, %s: %.1f img/s, %.2f GFLOP/s",
      context.get<std::string>("image").c_str(), context.comm.size(), context.threads.intra_op,
      static_cast<long long>(batch), channels_last ? "channels-last" : "NCHW", images_per_second,
      gflops);
  log::info(line);
  const auto json_path = context.get<std::string>("json");
  if (!json_path.empty() && context.comm.rank() == 0) {
    std::string existing = path_exists(json_path) ? read_file(json_path) : "";
    write_file_atomic(json_path, existing + row.dump() + "\n");
  }
  return exit_code::ok;
}

}  // namespace

Step bench_step() {
  return Step{"bench", "time training steps of the reference networks (images/s, GFLOP/s)",
              add_bench_options, run_bench};
}

}  // namespace kr::steps
