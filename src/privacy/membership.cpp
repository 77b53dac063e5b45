#include "kr/privacy/membership.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "kr/comm/communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/keyed_rng.hpp"
#include "kr/core/sha256.hpp"
#include "kr/data/augment.hpp"
#include "kr/io/h5.hpp"

namespace kr::privacy {

std::vector<std::int64_t> keyed_subset(std::int64_t total, std::int64_t n, std::uint64_t seed,
                                       std::uint64_t tag) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(total));
  std::iota(order.begin(), order.end(), 0);
  KeyedRng rng(stream_key(seed, Purpose::split, tag, 0));
  for (std::int64_t i = total - 1; i > 0; --i)
    std::swap(order[i], order[rng.below(static_cast<std::uint64_t>(i + 1))]);
  order.resize(static_cast<std::size_t>(std::min(n, total)));
  return order;
}

std::vector<std::int64_t> kept_positions(const at::Tensor& row) {
  const auto contiguous = row.contiguous();
  const auto* data = contiguous.data_ptr<std::uint8_t>();
  std::vector<std::int64_t> kept;
  for (std::int64_t x = 0; x < contiguous.numel(); ++x)
    if (data[x]) kept.push_back(x);
  return kept;
}

std::string keep_row_sha256(const at::Tensor& row) {
  const auto contiguous = row.contiguous();
  return sha256_bytes(contiguous.data_ptr(), static_cast<std::size_t>(contiguous.numel()));
}

std::string run_directory(const std::string& out, const std::string& prefix, std::int64_t run) {
  return out + "/" + prefix + "_" + std::to_string(run);
}

const RunTarget* MembershipRun::target(const std::string& name) const {
  for (const auto& [key, value] : targets)
    if (key == name) return &value;
  return nullptr;
}

Json MembershipRun::to_json() const {
  Json json{
      {"run", run}, {"keep_row_sha256", keep_row_sha256}, {"members", members}, {"seed", seed}};
  for (const auto& [name, target] : targets)
    json[name] =
        Json{{"weights_sha256", target.weights_sha256}, {"test_accuracy", target.test_accuracy}};
  if (!generator_sha256.empty()) json["generator_sha256"] = generator_sha256;
  if (!pool_manifest_sha256.empty()) json["pool_manifest_sha256"] = pool_manifest_sha256;
  json["seconds"] = seconds;
  json["status"] = status;
  return json;
}

MembershipRun MembershipRun::from_json(const Json& json, const std::string& path) {
  MembershipRun record;
  try {
    record.run = json.at("run").get<std::int64_t>();
    record.keep_row_sha256 = json.at("keep_row_sha256").get<std::string>();
    record.members = json.at("members").get<std::uint64_t>();
    record.seed = json.at("seed").get<std::uint64_t>();
    record.seconds = json.value("seconds", 0.0);
    record.status = json.value("status", "");
    record.generator_sha256 = json.value("generator_sha256", "");
    record.pool_manifest_sha256 = json.value("pool_manifest_sha256", "");
    for (const auto& item : json.items()) {
      if (!item.value().is_object()) continue;
      const auto& accuracy = item.value().at("test_accuracy");
      record.targets.emplace_back(
          item.key(), RunTarget{item.value().at("weights_sha256").get<std::string>(),
                                accuracy.is_null() ? std::nan("") : accuracy.get<double>()});
    }
  } catch (const Json::exception& error) {
    throw Error(path + ": not a membership run record: " + error.what());
  }
  return record;
}

MembershipRun MembershipRun::read(const std::string& path) {
  Json json;
  try {
    json = Json::parse(read_file(path));
  } catch (const Json::exception& error) {
    throw Error(path + ": cannot parse: " + error.what());
  }
  return from_json(json, path);
}

void MembershipRun::write(const std::string& path) const {
  write_file_atomic(path, to_json().dump(2) + "\n");
}

bool deal_runs(comm::Communicator& comm, std::int64_t runs,
               const std::function<bool(std::int64_t)>& complete,
               const std::function<bool(std::int64_t)>& train) {
  bool preempted = false;
  for (std::int64_t j = comm.rank(); j < runs && !preempted; j += comm.size())
    if (!complete(j)) preempted = !train(j);
  auto flag = torch::tensor({preempted ? 1 : 0}, torch::kInt64);
  comm.allreduce(flag, comm::ReduceOp::max);
  return flag.item<std::int64_t>() != 0;
}

at::Tensor query_logits(const LogitsOf& logits_of, const at::Tensor& images, bool mirror) {
  std::vector<at::Tensor> per_augmentation;
  for (int flip = 0; flip < (mirror ? 2 : 1); ++flip) {
    std::vector<at::Tensor> chunks;
    for (std::int64_t i = 0; i < images.size(0); i += 500) {
      auto x = data::to_float(images.narrow(0, i, std::min<std::int64_t>(500, images.size(0) - i)));
      if (flip) x = x.flip({3});
      chunks.push_back(logits_of(x).to(torch::kFloat32));
    }
    per_augmentation.push_back(torch::cat(chunks));
  }
  return torch::stack(per_augmentation).contiguous();
}

void write_tensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                   const std::string& note) {
  PendingFile pending(path);
  {
    auto file = io::h5::File::create(pending.temp_path());
    for (const auto& [name, tensor] : tensors) {
      const auto slash = name.rfind('/');
      if (slash != std::string::npos && !io::h5::exists(file, name.substr(0, slash)))
        io::h5::create_group(file, name.substr(0, slash));
      io::h5::write_tensor(file, name, tensor);
    }
    if (!note.empty()) io::h5::set_attr(file, "/", "note", note);
    file.close();
  }
  pending.commit();
}

Json summarize_attack(const at::Tensor& scores, const at::Tensor& members, double accuracy,
                      int bootstrap, std::uint64_t seed) {
  const auto summary = roc(scores, members);
  const double aop = accuracy * std::pow(0.5 / std::max(summary.auc, 0.5), 2.0);
  return Json{{"auc", summary.auc},
              {"balanced_accuracy", summary.balanced_accuracy},
              {"tpr_at_0.1%", summary.tpr_at_0_1},
              {"tpr_at_1%", summary.tpr_at_1},
              {"tpr_at_10%", summary.tpr_at_10},
              {"members", summary.members},
              {"non_members", summary.non_members},
              {"aop", aop},
              {"bootstrap_95", bootstrap_intervals(scores, members, bootstrap, seed)},
              {"roc", Json{{"fpr", summary.fpr}, {"tpr", summary.tpr}}}};
}

std::string attack_csv_header() {
  return "target,attack,auc,auc_low,auc_high,balanced_accuracy,tpr_at_0.1%,tpr_at_1%,"
         "tpr_at_10%,members,non_members,mean_test_accuracy,aop\n";
}

std::string attack_csv_row(const std::string& target, const std::string& attack,
                           const Json& figures, double accuracy) {
  const auto& auc_interval = figures.at("bootstrap_95").at("auc");
  const double auc = figures.at("auc").get<double>();
  char row[400];
  std::snprintf(row, sizeof row, "%s,%s,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%lld,%lld,%.6f,%.6f\n",
                target.c_str(), attack.c_str(), auc,
                auc_interval.empty() ? auc : auc_interval[0].get<double>(),
                auc_interval.empty() ? auc : auc_interval[1].get<double>(),
                figures.at("balanced_accuracy").get<double>(),
                figures.at("tpr_at_0.1%").get<double>(), figures.at("tpr_at_1%").get<double>(),
                figures.at("tpr_at_10%").get<double>(),
                static_cast<long long>(figures.at("members").get<std::int64_t>()),
                static_cast<long long>(figures.at("non_members").get<std::int64_t>()), accuracy,
                figures.at("aop").get<double>());
  return row;
}

TargetAudit audit_target(const std::string& target, const AttackInputs& inputs, double accuracy,
                         int bootstrap, std::uint64_t seed) {
  TargetAudit audit;
  AttackInputs named = inputs;
  named.target = target;
  AttackNotes notes;
  const auto all = attack_scores(named, &notes);
  for (const auto& [attack, why] : notes.refused) audit.refused[attack] = why;
  for (const auto& [attack, how] : notes.notes) audit.notes[attack] = how;
  for (const auto& [attack, scores] : all) {
    audit.raw.emplace_back(attack, scores);
    audit.attacks[attack] = summarize_attack(scores, inputs.keep, accuracy, bootstrap, seed);
    audit.scores.push_back({target + "/" + attack, scores.to(torch::kFloat32).contiguous()});
    audit.csv += attack_csv_row(target, attack, audit.attacks[attack], accuracy);
  }
  return audit;
}

TckrAudit audit_target_tckr(const std::string& target, const std::vector<at::Tensor>& shadow_logits,
                            const at::Tensor& in_mask, const at::Tensor& target_logits,
                            const at::Tensor& labels, const at::Tensor& truth, double accuracy,
                            int bootstrap, std::uint64_t seed) {
  TckrAudit audit;
  double best_auc = -1;
  std::vector<std::pair<std::string, std::string>> refused;
  const auto variants = tckr_variants(shadow_logits, in_mask, target_logits, labels, &refused);
  for (const auto& [variant, why] : refused) audit.refused[variant] = why;
  for (const auto& [variant, scores] : variants) {
    audit.variants[variant] = summarize_attack(scores, truth, accuracy, bootstrap, seed);
    audit.csv += attack_csv_row(target, "tckr_" + variant, audit.variants[variant], accuracy);
    const double auc = audit.variants[variant].at("auc").get<double>();
    if (auc > best_auc) {
      best_auc = auc;
      audit.best = variant;
    }
  }
  return audit;
}

}  // namespace kr::privacy
