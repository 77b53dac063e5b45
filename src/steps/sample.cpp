// `kr sample`: a per-class grid from a generator run or checkpoint, for a quick look.
#include <torch/torch.h>

#include "kr/comm/self_communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/core/strings.hpp"
#include "kr/gen/quality.hpp"
#include "kr/gen/sampler.hpp"
#include "kr/io/h5.hpp"
#include "kr/io/png.hpp"
#include "kr/steps/root_only.hpp"
#include "kr/steps/sampling_options.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

struct SampleOptions {
  std::string checkpoint;
  std::int64_t per_class = 10;
  std::string out;
  std::string indices;
  std::int64_t sample_batch = 250;
  SamplingOptions sampling;
};

void add_sample_options(OptionTable& table, SampleOptions& options) {
  // clang-format off
  table
      ("checkpoint", &options.checkpoint, "", "generator run directory or one of its checkpoints (default: <workdir>/generator)")
      ("per-class", &options.per_class, 10, "images per class (one row per class)").at_least(1)
      ("out", &options.out, "grid.png", "PNG file to write").operational()
      ("indices", &options.indices, "", "instead of a grid: regenerate these comma-separated global indices of a pool made with the same --seed and --sample-batch, into the HDF5 file --out (/images, /labels)")
      ("sample-batch", &options.sample_batch, 250, "with --indices: the pool's sample batch").at_least(1);
  // clang-format on
  add_sampling_options(table, options.sampling);
}

int run_sample(Context& context, const SampleOptions& options) {
  run_on_root(context.comm, [&] {
    const std::string path = context.under_workdir(options.checkpoint, "generator");
    auto loaded = gen::load_generator(path);
    const auto spec = with_sampling_options(options.sampling, loaded.spec);
    auto sampler = gen::make_sampler(spec, loaded.model);
    const auto& out = options.out;
    const auto& indices = options.indices;
    if (!indices.empty()) {
      const auto batch = options.sample_batch;
      std::vector<at::Tensor> images;
      std::vector<std::int64_t> labels;
      for (const std::int64_t index : parse_int_list(indices, "indices")) {
        if (index < 0) throw UsageError("--indices must be non-negative");
        // The whole sample batch holding `index`, as `kr generate` computes it.
        const std::int64_t first = index / batch * batch;
        images.push_back(gen::sample_range(
            *sampler, first, batch, context.get<std::uint64_t>("seed"), batch)[index - first]);
        labels.push_back(gen::class_of_index(index, spec.classes));
      }
      PendingFile pending(out);
      {
        auto file = io::h5::File::create(pending.temp_path());
        io::h5::write_tensor(file, "images", torch::stack(images).contiguous());
        io::h5::write_tensor(file, "labels", torch::tensor(labels, torch::kInt64));
        file.close();
      }
      pending.commit();
      log::info("sample: wrote " + std::to_string(labels.size()) + " regenerated images to " + out);
      return;
    }
    const auto per_class = options.per_class;
    if (per_class <= 0) throw UsageError("--per-class must be positive");
    comm::SelfCommunicator alone;  // rank 0 alone makes the whole grid
    io::write_png(out,
                  gen::class_grid(alone, *sampler, per_class, context.get<std::uint64_t>("seed")));
    log::info("sample: wrote " + out + " (" + std::to_string(spec.classes) + " rows x " +
              std::to_string(per_class) + ", " + spec.model + " from " + loaded.weights + ")");
  });
  return exit_code::ok;
}

}  // namespace

Step sample_step() {
  return typed_step<SampleOptions>("sample",
                                   "write a per-class sample grid PNG from a generator checkpoint",
                                   add_sample_options, run_sample);
}

}  // namespace kr::steps
