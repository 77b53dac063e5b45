// `kr bench`: training-step throughput of the reference networks on random data,
// with the same data-parallel machinery the training steps use.
#include <dlfcn.h>
#include <torch/torch.h>

#include <chrono>
#include <functional>

#include "kr/comm/communicator.hpp"
#include "kr/comm/data_parallel.hpp"
#include "kr/comm/dp_sgd.hpp"
#include "kr/comm/shard_range.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/gen/gan.hpp"
#include "kr/gen/sampler.hpp"
#include "kr/gen/unet.hpp"
#include "kr/gen/update.hpp"
#include "kr/nn/flops.hpp"
#include "kr/nn/inference.hpp"
#include "kr/nn/resnet.hpp"
#include "kr/privacy/memorisation.hpp"
#include "kr/steps/step.hpp"
#include "kr/train/distillation.hpp"

namespace kr::steps {

namespace {

// Which malloc this process runs on (Note [Allocator]): tcmalloc exports tc_version.
const char* malloc_in_use() {
  return dlsym(RTLD_DEFAULT, "tc_version") != nullptr ? "tcmalloc" : "glibc";
}

struct BenchOptions {
  std::string model;
  std::string mode;
  std::int64_t batch_per_rank = 128;
  std::string image;
  std::int64_t classes = 10;
  std::int64_t width = 16;
  bool channels_last = true;
  std::string precision;
  std::int64_t g_width = 32;
  std::int64_t d_width = 32;
  std::int64_t latent = 64;
  std::int64_t d_steps = 2;
  std::int64_t dp_physical_batch = 64;
  std::int64_t unet_width = 32;
  std::int64_t steps = 20;
  double guidance = 2.0;
  bool guidance_batched = true;
  std::int64_t queries = 55000;
  std::int64_t reference = 55000;
  std::int64_t feature_dims = 64;
  int warmup = 3;
  int iterations = 20;
  std::string json;
};

void add_bench_options(OptionTable& table, BenchOptions& options) {
  // clang-format off
  table
      ("model", &options.model, "resnet20", "network to time: resnet20, gan or ddpm; or audit: kr audit's nearest-neighbour search (--queries x --reference, pixels of --image and --feature-dims features) beside the float32 GEMM rate")
      ("mode", &options.mode, "train", "train (one optimisation step), dp-train (gan: the DP-SGD step of Note [DP GAN], a Poisson batch of --batch expected images per rank, sigma 1, C 1), sample (gan, ddpm), eval (resnet20 in eval mode, no gradient), infer (resnet20's inference fast path) or distill (resnet20: a student step on a teacher's soft targets, the teacher labelling through the fast path, as kr distill does)")
      ("batch-per-rank", &options.batch_per_rank, 128, "images per rank per step (weak scaling)").at_least(1)
      ("image", &options.image, "1x28x28", "input C x H x W")
      ("classes", &options.classes, 10, "output classes").at_least(2)
      ("width", &options.width, 16, "resnet20 base width").at_least(1)
      ("channels-last", &options.channels_last, true, "resnet20: NHWC memory format")
      ("precision", &options.precision, "fp32", "resnet20 infer and distill: the fast path's arithmetic, fp32, bf16 or auto (as kr distill --teacher-precision)")
      ("g-width", &options.g_width, 32, "gan: generator base width").at_least(1)
      ("d-width", &options.d_width, 32, "gan: discriminator base width").at_least(1)
      ("latent", &options.latent, 64, "gan: latent size").at_least(1)
      ("d-steps", &options.d_steps, 2, "gan: discriminator steps per generator step").at_least(1)
      ("dp-physical-batch", &options.dp_physical_batch, 64, "gan --mode dp-train: per-sample gradients held at once per rank").at_least(1)
      ("unet-width", &options.unet_width, 32, "ddpm: UNet base width c").at_least(1)
      ("steps", &options.steps, 20, "ddpm sampling: DDIM steps (as kr generate --steps)").at_least(1)
      ("guidance", &options.guidance, 2.0, "ddpm sampling: guidance scale (0: no guidance)")
      ("guidance-batched", &options.guidance_batched, true, "ddpm sampling: one forward over [cond; null] (else two)")
      ("queries", &options.queries, 55000, "audit: audited samples, split over the ranks").at_least(1)
      ("reference", &options.reference, 55000, "audit: real images searched").at_least(50)
      ("feature-dims", &options.feature_dims, 64, "audit: feature width (resnet20 width 16: 64)").at_least(1)
      ("warmup", &options.warmup, 3, "untimed iterations").at_least(0)
      ("iterations", &options.iterations, 20, "timed iterations (training steps or sampling batches)").at_least(1)
      ("json", &options.json, "", "append the result as one JSON line to this file").operational();
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

// Runs `warmup` untimed and `iterations` timed calls of `work` on every rank; the
// wall time of the timed ones (barrier to barrier).
double time_steps(Context& context, const BenchOptions& options,
                  const std::function<void()>& work) {
  for (int i = 0; i < options.warmup; ++i) work();
  context.comm.barrier();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < options.iterations; ++i) work();
  context.comm.barrier();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Forward FLOPs of one image through `forward` (Note [Counting FLOPs]).
double forward_flops_per_image(const std::function<void(std::int64_t)>& forward) {
  torch::NoGradGuard no_grad;
  return static_cast<double>(nn::count_flops([&] { forward(1); }));
}

nn::Precision precision(const BenchOptions& options) {
  return nn::parse_precision(options.precision, "--precision");
}

struct Timed {
  std::string what;            // e.g. "resnet20 train", "ddpm sample DDIM-20 w=2 batched"
  std::string layout;          // memory format
  double images_per_step = 0;  // per rank
  double flops_per_image = 0;  // per image processed (0: not counted)
  double seconds = 0;
};

// Forward passes without gradient (Note [Inference fast path]): "eval" is the
// training network in eval mode under NoGradGuard, as a PyTorch user would run it;
// "infer" is kr's folded network.
Timed bench_resnet_inference(Context& context, const BenchOptions& options, nn::ResNet20& model,
                             bool channels_last, std::int64_t batch) {
  model->eval();
  const auto& shape = model->shape();
  auto images = torch::randn({batch, shape.channels, shape.height, shape.image_width});
  if (channels_last) images = images.contiguous(at::MemoryFormat::ChannelsLast);
  Timed timed{"resnet20 " + options.mode, channels_last ? "channels_last" : "nchw", double(batch),
              nn::resnet20_forward_flops(shape), 0};
  if (options.mode == "eval") {
    timed.seconds = time_steps(context, options, [&] {
      torch::NoGradGuard no_grad;
      model->forward(images);
    });
  } else {
    const auto fast = nn::InferenceResNet(*model, channels_last).with_precision(precision(options));
    timed.seconds = time_steps(context, options, [&] { fast.forward(images); });
  }
  return timed;
}

Timed bench_resnet(Context& context, const BenchOptions& options,
                   const std::vector<std::int64_t>& dims, std::int64_t batch) {
  // Channels-last only where it pays (nn::channels_last_suits: widths divisible by 8).
  nn::ResNetShape shape{dims[0], options.classes, options.width, dims[1], dims[2]};
  const bool channels_last = options.channels_last && nn::channels_last_suits(shape);
  torch::manual_seed(1);
  nn::ResNet20 model(shape);
  if (channels_last) nn::to_channels_last(*model);
  if (options.mode == "eval" || options.mode == "infer")
    return bench_resnet_inference(context, options, model, channels_last, batch);
  comm::DataParallel parallel(context.comm, *model);
  torch::optim::SGD optimizer(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  auto images = torch::randn({batch, dims[0], dims[1], dims[2]});
  if (channels_last) images = images.contiguous(at::MemoryFormat::ChannelsLast);
  auto labels = torch::randint(shape.classes, {batch}, torch::kInt64);
  model->train();
  Timed timed{"resnet20 train", channels_last ? "channels_last" : "nchw", double(batch),
              3.0 * nn::resnet20_forward_flops(shape), 0};
  if (options.mode == "distill") {
    // kr distill's step without its data: the teacher labels the batch (folded, no
    // gradient), the student steps toward the teacher's softmax.
    torch::manual_seed(2);
    nn::ResNet20 teacher(shape);
    if (channels_last) nn::to_channels_last(*teacher);
    teacher->eval();
    const auto labeller =
        nn::InferenceResNet(*teacher, channels_last).with_precision(precision(options));
    timed.what = "resnet20 distill";
    timed.flops_per_image = 4.0 * nn::resnet20_forward_flops(shape);
    timed.seconds = time_steps(context, options, [&] {
      optimizer.zero_grad();
      const auto targets = train::soft_targets(labeller.forward(images), 1.0, 0.0);
      auto loss = train::distillation_loss(model->forward(images), targets, 1.0);
      loss.backward();
      parallel.synchronize_gradients();
      optimizer.step();
    });
    return timed;
  }
  timed.seconds = time_steps(context, options, [&] {
    optimizer.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(model->forward(images), labels);
    loss.backward();
    parallel.synchronize_gradients();
    optimizer.step();
  });
  return timed;
}

gen::GeneratorSpec bench_spec(const BenchOptions& options, const std::vector<std::int64_t>& dims) {
  gen::GeneratorSpec spec;
  spec.model = options.model;
  spec.channels = dims[0];
  spec.height = dims[1];
  spec.width = dims[2];
  spec.classes = options.classes;
  spec.latent = options.latent;
  spec.g_width = options.g_width;
  spec.d_width = options.d_width;
  spec.unet_width = options.unet_width;
  spec.sample_steps = options.steps;
  spec.guidance = options.guidance;
  spec.guidance_batched = options.guidance_batched;
  return spec;
}

// Forward FLOPs per image of the sampling network and (GAN) the discriminator.
std::pair<double, double> generator_forward_flops(const gen::GeneratorSpec& spec,
                                                  gen::GeneratorUpdate& update) {
  const auto image = [&](std::int64_t b) {
    return torch::zeros({b, spec.channels, spec.height, spec.width});
  };
  const auto labels = [](std::int64_t b) { return torch::zeros({b}, torch::kInt64); };
  if (spec.model == "gan") {
    auto& g = static_cast<gen::GanGeneratorImpl&>(update.ema());
    auto& d = static_cast<gen::GanDiscriminatorImpl&>(*update.discriminator());
    return {forward_flops_per_image([&](std::int64_t b) {
              g.forward(torch::zeros({b, spec.latent}), labels(b));
            }),
            forward_flops_per_image([&](std::int64_t b) { d.forward(image(b), labels(b)); })};
  }
  auto& unet = static_cast<gen::UNetImpl&>(update.ema());
  return {forward_flops_per_image([&](std::int64_t b) {
            unet.forward(image(b), torch::zeros({b}, torch::kInt64), labels(b));
          }),
          0.0};
}

Timed bench_generator(Context& context, const BenchOptions& options,
                      const std::vector<std::int64_t>& dims, std::int64_t batch) {
  const auto spec = bench_spec(options, dims);
  gen::GeneratorHyper hyper;
  hyper.d_steps = options.d_steps;
  hyper.seed = 1;
  const std::string mode = options.mode;
  // dp-train: the expected global batch is --batch x ranks, over 20 times as many records.
  const std::int64_t global = batch * context.comm.size();
  if (mode == "dp-train") {
    if (spec.model != "gan") throw UsageError("--mode dp-train needs --model gan");
    comm::DpSettings dp;
    dp.records = 20 * global;
    dp.sample_rate = 1.0 / 20.0;
    dp.noise = comm::NoiseSource::keyed;
    dp.seed = 1;
    hyper.dp = dp;
    hyper.dp_fake_batch = global;
    hyper.dp_physical_batch = options.dp_physical_batch;
  }
  gen::GeneratorUpdate update(context.comm, spec, hyper);
  const auto [g_flops, d_flops] = generator_forward_flops(spec, update);
  Timed timed;
  timed.layout = "nchw";
  timed.images_per_step = static_cast<double>(batch);
  const auto rank = context.comm.rank();
  std::vector<std::int64_t> indices(static_cast<std::size_t>(batch));
  for (std::int64_t i = 0; i < batch; ++i) indices[static_cast<std::size_t>(i)] = rank * batch + i;
  const auto labels = gen::classes_of_range(rank * batch, batch, spec.classes);
  if (mode == "train") {
    auto real = torch::rand({batch, spec.channels, spec.height, spec.width}) * 2.0 - 1.0;
    std::uint64_t step = 0;
    if (spec.model == "gan") {
      // Per real image: d-steps x (G forward without gradient + D forward and backward on a
      // real and a fake image), then G and D forward and backward (backward ~ 2 x forward).
      const double d = static_cast<double>(hyper.d_steps);
      timed.what = "gan train (d-steps " + std::to_string(hyper.d_steps) + ")";
      timed.flops_per_image = d * (g_flops + 6.0 * d_flops) + 3.0 * (g_flops + d_flops);
    } else {
      timed.what = "ddpm train";
      timed.flops_per_image = 3.0 * g_flops;
    }
    timed.seconds =
        time_steps(context, options, [&] { update.step(real, labels, indices, step++); });
  } else if (mode == "dp-train") {
    // The same count as train (the per-sample gradients are not counted): the ratio of
    // the two rows is the DP step's throughput against the non-private one.
    const double d = static_cast<double>(hyper.d_steps);
    timed.what = "gan dp-train (d-steps " + std::to_string(hyper.d_steps) + ", physical batch " +
                 std::to_string(options.dp_physical_batch) + ")";
    timed.flops_per_image = d * (g_flops + 6.0 * d_flops) + 3.0 * (g_flops + d_flops);
    torch::manual_seed(3);
    const auto records = torch::rand({20 * global, spec.channels, spec.height, spec.width}) * 2 - 1;
    const auto record_labels = torch::arange(20 * global, torch::kInt64).remainder(spec.classes);
    const auto rows = [&](const std::vector<std::int64_t>& chosen) {
      const auto index = torch::tensor(chosen, torch::kInt64);
      return std::make_pair(records.index_select(0, index), record_labels.index_select(0, index));
    };
    std::uint64_t step = 0;
    timed.seconds = time_steps(context, options, [&] { update.dp_step(rows, step++); });
  } else if (mode == "sample") {
    if (spec.model == "gan") {
      timed.what = "gan sample";
      timed.flops_per_image = g_flops;
    } else {
      const bool guided = spec.guidance != 0.0;
      timed.what = "ddpm sample DDIM-" + std::to_string(spec.sample_steps) +
                   (guided ? (spec.guidance_batched ? " guided, batched [cond; null]"
                                                    : " guided, two forwards")
                           : " unguided");
      timed.flops_per_image =
          static_cast<double>(spec.sample_steps) * (guided ? 2.0 : 1.0) * g_flops;
    }
    timed.seconds =
        time_steps(context, options, [&] { update.sampler().sample(indices, labels, 7); });
  } else {
    throw UsageError("--mode must be train, dp-train or sample, got '" + mode + "'");
  }
  return timed;
}

// Rank 0 appends `row` as one JSON line to `path` (none when empty).
void append_row(const Context& context, const std::string& path, const Json& row) {
  if (path.empty() || context.comm.rank() != 0) return;
  const std::string existing = path_exists(path) ? read_file(path) : "";
  write_file_atomic(path, existing + row.dump() + "\n");
}

// Every rank's float32 GEMM rate, all ranks at once, at the audit screen's block shape
// (1024 x d by d x 8192) and square 2048: GFLOP/s summed over the ranks, the faster shape.
double gemm_rate(Context& context, std::int64_t dims) {
  double best = 0.0;
  for (const auto& [m, k, n] :
       {std::tuple<std::int64_t, std::int64_t, std::int64_t>{1024, dims, 8192},
        {2048, 2048, 2048}}) {
    const auto a = torch::rand({m, k});
    const auto b = torch::rand({k, n});
    auto c = torch::mm(a, b);
    int reps = 0;
    context.comm.barrier();
    const auto start = std::chrono::steady_clock::now();
    double seconds = 0.0;
    while (seconds < 2.0) {
      c = torch::mm(a, b);
      ++reps;
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    auto rate = torch::tensor({2.0 * m * k * n * reps / seconds / 1e9}, torch::kFloat64);
    context.comm.allreduce(rate, comm::ReduceOp::sum);
    best = std::max(best, rate.item<double>());
  }
  return best;
}

// kr audit's search (Note [Memorisation audit]) on random images: each rank takes its
// share of --queries, as kr audit deals them, and finds their 50 nearest of --reference
// rows (the train search, the audit's largest), in pixels and in features.
int run_bench_audit(Context& context, const BenchOptions& options,
                    const std::vector<std::int64_t>& image) {
  torch::manual_seed(1);  // the same reference on every rank
  const std::int64_t pixels = image[0] * image[1] * image[2];
  const auto range = comm::shard_range(options.queries, context.comm.rank(), context.comm.size());
  const double gemm = gemm_rate(context, pixels);
  Json spaces = Json::array();
  for (const auto distance : {privacy::Distance::l2, privacy::Distance::cosine}) {
    const std::int64_t d = distance == privacy::Distance::l2 ? pixels : options.feature_dims;
    auto make = [&](std::int64_t n) {
      auto raw = distance == privacy::Distance::l2
                     ? torch::randint(0, 256, {n, d}, torch::kFloat32) / 255.0
                     : torch::randn({n, d});
      return privacy::search_rows(raw, distance);
    };
    const auto reference = make(options.reference);
    const auto mine = make(range.end - range.begin);
    context.comm.barrier();
    const auto start = std::chrono::steady_clock::now();
    privacy::nearest_neighbours(mine, reference, 50, distance);
    context.comm.barrier();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double rate =
        privacy::screen_flops(options.queries, options.reference, d) / seconds / 1e9;
    spaces.push_back(Json{{"space", privacy::distance_name(distance)},
                          {"dims", d},
                          {"seconds", seconds},
                          {"screen_gflops_per_second", rate},
                          {"share_of_gemm_rate", rate / gemm}});
    char line[300];
    std::snprintf(line, sizeof line,
                  "bench: audit %s %lld x %lld, d = %lld, %d rank(s) x %d thread(s): %.1f s, "
                  "%.1f GFLOP/s (%.0f %% of the %.1f GFLOP/s float32 GEMM rate)",
                  privacy::distance_name(distance), static_cast<long long>(options.queries),
                  static_cast<long long>(options.reference), static_cast<long long>(d),
                  context.comm.size(), context.threads.intra_op, seconds, rate, 100.0 * rate / gemm,
                  gemm);
    log::info(line);
  }
  const Json row{{"impl", "kr"},
                 {"model", "audit"},
                 {"what", "kr audit nearest-neighbour search, k = 50, exact"},
                 {"queries", options.queries},
                 {"reference", options.reference},
                 {"image", options.image},
                 {"ranks", context.comm.size()},
                 {"threads_per_rank", context.threads.intra_op},
                 {"gemm_gflops_per_second", gemm},
                 {"spaces", spaces}};
  append_row(context, options.json, row);
  return exit_code::ok;
}

int run_bench(Context& context, const BenchOptions& options) {
  const auto model = options.model;
  const auto dims = parse_image(options.image);
  if (model == "audit") return run_bench_audit(context, options, dims);
  const auto batch = options.batch_per_rank;
  if (batch < 1) throw UsageError("--batch-per-rank must be at least 1");
  Timed timed;
  if (model == "resnet20") {
    if (options.mode != "train" && options.mode != "eval" && options.mode != "infer" &&
        options.mode != "distill")
      throw UsageError("--mode: resnet20 is timed in train, eval, infer or distill mode, got '" +
                       options.mode + "'");
    timed = bench_resnet(context, options, dims, batch);
  } else if (model == "gan" || model == "ddpm") {
    timed = bench_generator(context, options, dims, batch);
  } else {
    throw UsageError("--model must be resnet20, gan, ddpm or audit, got '" + model + "'");
  }
  const int iterations = options.iterations;
  const double images_per_second =
      timed.images_per_step * context.comm.size() * iterations / timed.seconds;
  const double gflops = images_per_second * timed.flops_per_image / 1e9;
  Json row{{"impl", "kr"},
           {"model", model},
           {"what", timed.what},
           {"mode", options.mode},
           {"ranks", context.comm.size()},
           {"threads_per_rank", context.threads.intra_op},
           {"batch_per_rank", batch},
           {"image", options.image},
           {"layout", timed.layout},
           {"images_per_second", images_per_second},
           {"gflop_per_image", timed.flops_per_image / 1e9},
           {"gflops_per_second", gflops},
           {"seconds_per_step", timed.seconds / iterations},
           {"allocator", malloc_in_use()}};
  if (model == "gan") {
    row["g_width"] = options.g_width;
    row["d_width"] = options.d_width;
  } else if (model == "ddpm") {
    row["unet_width"] = options.unet_width;
  } else {
    row["width"] = options.width;
    // The arithmetic of the timed forward: "eval" and "train" are float32 throughout.
    row["precision"] = options.mode == "infer" || options.mode == "distill"
                           ? nn::precision_name(precision(options))
                           : "fp32";
  }
  char line[300];
  std::snprintf(line, sizeof line,
                "bench: %s %s %d rank(s) x %d thread(s), B=%lld/rank, %s: %.1f img/s, %.2f GFLOP/s",
                timed.what.c_str(), options.image.c_str(), context.comm.size(),
                context.threads.intra_op, static_cast<long long>(batch), timed.layout.c_str(),
                images_per_second, gflops);
  log::info(line);
  append_row(context, options.json, row);
  return exit_code::ok;
}

}  // namespace

Step bench_step() {
  return typed_step<BenchOptions>(
      "bench", "time training or sampling steps of the networks (images/s, GFLOP/s)",
      add_bench_options, run_bench);
}

}  // namespace kr::steps
