// `kr semantic-query`: PrivImage's differentially private choice of the public classes
// to pre-train the generator on (Note [Semantic query]); writes <out>/selection.json,
// which `kr train-generator --public-data --selection` trains on.
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "kr/comm/communicator.hpp"
#include "kr/comm/dp_sgd.hpp"
#include "kr/comm/shard_range.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/data/augment.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/privacy/accountant.hpp"
#include "kr/privacy/semantic.hpp"
#include "kr/report/results.hpp"
#include "kr/steps/artifacts.hpp"
#include "kr/steps/root_only.hpp"
#include "kr/steps/run_record.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

// The keyed noise of the query is its own stream: DP-SGD's steps count up from 0.
constexpr std::uint64_t kQueryNoiseStep = ~std::uint64_t{0};

struct QueryOptions {
  std::string data;
  std::string public_classifier;
  std::string out;
  std::int64_t top_k = 2;
  std::int64_t per_class = 2;
  double noise_multiplier = 50.0;
  double delta = 0.0;
  std::string noise;
};

void add_query_options(OptionTable& table, QueryOptions& options) {
  // clang-format off
  table
      ("data", &options.data, "", "prepared private data set; its train split is queried (default: <workdir>/data/data.h5)").operational()
      ("public-classifier", &options.public_classifier, "", "a train-teacher run on the public data set's own labels (default: <workdir>/public-teacher)")
      ("out", &options.out, "", "run directory (default: <workdir>/semantic-query)").operational()
      ("top-k", &options.top_k, 2, "public classes each private image votes for (its classifier's top k; the histogram's L2 sensitivity is sqrt(k))").at_least(1)
      ("per-class", &options.per_class, 2, "public classes chosen per private class (the largest noisy counts)").at_least(1)
      ("noise-multiplier", &options.noise_multiplier, 50.0, "sigma: the histogram's noise standard deviation over its sensitivity sqrt(k)").at_least(1e-6)
      ("delta", &options.delta, 0.0, "delta of the epsilon printed (0: 1 / (N ln N), N the private train images)").range(0, 1)
      ("dp-noise", &options.noise, "secure", "noise source: secure (the OS CSPRNG) or keyed (reproducible, not a formal guarantee)");
  // clang-format on
}

int run_query(Context& context, const QueryOptions& options) {
  const std::string data_path = context.under_workdir(options.data, "data/data.h5");
  const std::string out = context.under_workdir(options.out, "semantic-query");
  const std::string classifier_dir =
      context.under_workdir(options.public_classifier, "public-teacher");
  const auto source = comm::noise_source(options.noise);
  const data::Dataset dataset = io::read_dataset(data_path);
  const auto classifier = load_classifier(classifier_dir, dataset.info.channels);
  const auto& train = dataset.train;
  const double n = static_cast<double>(train.size());
  if (train.size() < 2) throw UsageError(data_path + ": the train split has under 2 images");
  const double delta = options.delta > 0.0 ? options.delta : 1.0 / (n * std::log(n));

  RunRecord& record = open_record(context, out);
  record.add_input("data", data_path);
  record.add_input("public_classifier", classifier.weights);

  // This rank's share of the private train split votes; the counts are summed over ranks
  // and rank 0 adds the noise once (Note [DP-SGD]'s rule for the noise).
  const auto range = comm::shard_range(train.size(), context.comm.rank(), context.comm.size());
  const std::int64_t public_classes =
      classifier
          .logits(torch::zeros({1, dataset.info.channels, dataset.info.height, dataset.info.width}))
          .size(1);
  auto counts = torch::zeros({dataset.info.classes, public_classes}, torch::kFloat64);
  for (std::int64_t begin = range.begin; begin < range.end; begin += 500) {
    const auto rows = std::min<std::int64_t>(500, range.end - begin);
    counts += privacy::topk_counts(
        classifier.logits(data::to_float(train.images.narrow(0, begin, rows))),
        train.labels.narrow(0, begin, rows), options.top_k, dataset.info.classes);
  }
  context.comm.allreduce(counts, comm::ReduceOp::sum);
  const double sd = options.noise_multiplier * std::sqrt(static_cast<double>(options.top_k));
  auto noise = torch::zeros_like(counts);
  if (context.comm.rank() == 0)
    noise = sd * comm::standard_normals(counts.numel(), source, context.get<std::uint64_t>("seed"),
                                        kQueryNoiseStep)
                     .view(counts.sizes());
  context.comm.allreduce(noise, comm::ReduceOp::sum);
  const auto noisy = counts + noise;
  const auto chosen = privacy::chosen_classes(noisy, options.per_class);

  privacy::RdpAccountant accountant;
  accountant.add(options.noise_multiplier, 1.0, 1);
  const auto spent = accountant.spent(delta);
  const auto names = classifier.description.value("class_names", Json::array());
  Json choice = Json::array();
  for (std::size_t c = 0; c < chosen.size(); ++c) {
    Json publics = Json::array();
    for (auto j : chosen[c])
      publics.push_back(j < static_cast<std::int64_t>(names.size()) ? names[j] : Json(j));
    const std::string name =
        c < dataset.info.class_names.size() ? dataset.info.class_names[c] : std::to_string(c);
    choice.push_back(Json{{"private_class", name}, {"public", publics}});
  }
  Json dp{{"epsilon", spent.epsilon},
          {"delta", delta},
          {"order", spent.order},
          {"accountant", "rdp (Note [RDP accountant])"},
          {"history", accountant.history()},
          {"noise_source", comm::noise_source_name(source)},
          {"formal_guarantee", source == comm::NoiseSource::secure},
          {"covers", "the semantic query (Note [Semantic query])"}};
  Json selection{{"step", "semantic-query"},
                 {"public_classifier", classifier_dir},
                 {"public_classifier_sha256", classifier.weights_sha256},
                 {"public_classes", public_classes},
                 {"private_classes", dataset.info.classes},
                 {"private_train_images", train.size()},
                 {"top_k", options.top_k},
                 {"per_class", options.per_class},
                 {"noise_multiplier", options.noise_multiplier},
                 {"chosen", chosen},
                 {"choice", choice},
                 {"noisy_counts", std::vector<double>(noisy.data_ptr<double>(),
                                                      noisy.data_ptr<double>() + noisy.numel())},
                 {"dp", dp}};
  run_on_root(context.comm, [&] {
    make_dirs(out);
    write_file_atomic(out + "/selection.json", selection.dump(2) + "\n");
    make_dirs(context.workdir() + "/results");
    report::write_results(context.workdir(), "semantic-query", selection);
  });
  for (const auto& item : choice)
    log::info("semantic-query: " + item.at("private_class").get<std::string>() + " <- " +
              item.at("public").dump());
  char line[200];
  std::snprintf(line, sizeof line,
                "semantic-query: top-%lld votes of %lld private images, noise multiplier %.3g: "
                "epsilon %.4g at delta %.3g",
                static_cast<long long>(options.top_k), static_cast<long long>(train.size()),
                options.noise_multiplier, spent.epsilon, delta);
  log::info(line);
  record.set("dp", dp);
  record.set("results", Json{{"chosen", chosen}});
  record.finish("complete");
  return exit_code::ok;
}

}  // namespace

Step semantic_query_step() {
  return typed_step<QueryOptions>(
      "semantic-query",
      "PrivImage's DP semantic query: the public classes nearest each private class, for the "
      "generator's pre-training",
      add_query_options, run_query);
}

}  // namespace kr::steps
