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

void add_sample_options(po::options_description& options) {
  // clang-format off
  options.add_options()
      ("checkpoint", po::value<std::string>()->default_value(""), "generator run directory or one of its checkpoints (default: <workdir>/generator)")
      ("per-class", po::value<std::int64_t>()->default_value(10), "images per class (one row per class)")
      ("out", po::value<std::string>()->default_value("grid.png"), "PNG file to write")
      ("indices", po::value<std::string>()->default_value(""), "instead of a grid: regenerate these comma-separated global indices of a pool made with the same --seed and --sample-batch, into the HDF5 file --out (/images, /labels)")
      ("sample-batch", po::value<std::int64_t>()->default_value(250), "with --indices: the pool's sample batch");
  // clang-format on
  add_sampling_options(options);
}

int run_sample(Context& context) {
  run_on_root(context.comm, [&] {
    const std::string path = context.path_option("checkpoint", "generator");
    auto loaded = gen::load_generator(path);
    const auto spec = with_sampling_options(context, loaded.spec);
    auto sampler = gen::make_sampler(spec, loaded.model);
    const auto out = context.get<std::string>("out");
    const auto indices = context.get<std::string>("indices");
    if (!indices.empty()) {
      const auto batch = context.get<std::int64_t>("sample-batch");
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
    const auto per_class = context.get<std::int64_t>("per-class");
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
  return Step{"sample", "write a per-class sample grid PNG from a generator checkpoint",
              add_sample_options, run_sample};
}

}  // namespace kr::steps
