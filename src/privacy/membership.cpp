#include "kr/privacy/membership.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
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

std::int64_t query_count(bool mirror, int shift) {
  return (mirror ? 2 : 1) * (2 * shift + 1) * (2 * shift + 1);
}

at::Tensor query_logits(const LogitsOf& logits_of, const at::Tensor& images, bool mirror,
                        int shift) {
  if (shift < 0) throw UsageError("query shift must be at least 0");
  // Identity first, then the other shifts row by row; the same again mirrored.
  std::vector<std::pair<int, int>> shifts = {{0, 0}};
  for (int dy = -shift; dy <= shift; ++dy)
    for (int dx = -shift; dx <= shift; ++dx)
      if (dy != 0 || dx != 0) shifts.emplace_back(dy, dx);
  std::vector<at::Tensor> per_query;
  for (int flip = 0; flip < (mirror ? 2 : 1); ++flip)
    for (const auto& [dy, dx] : shifts) {
      // Chunks of 500 bound the float copies of the images; the network splits
      // its own batches (Note [Inference batch]).
      std::vector<at::Tensor> chunks;
      for (std::int64_t i = 0; i < images.size(0); i += 500) {
        const auto n = std::min<std::int64_t>(500, images.size(0) - i);
        auto x = data::to_float(images.narrow(0, i, n));
        if (flip) x = x.flip({3});
        if (dy != 0 || dx != 0) x = data::shift_images(x, dy, dx);
        chunks.push_back(logits_of(x).to(torch::kFloat32));
      }
      per_query.push_back(torch::cat(chunks));
    }
  return torch::stack(per_query).contiguous();
}

namespace {

// The candidates grouped by class, each group in a keyed random order.
std::map<std::int64_t, std::vector<std::int64_t>> keyed_by_class(
    const at::Tensor& labels, const std::vector<std::int64_t>& candidates, std::uint64_t seed,
    std::uint64_t tag) {
  const auto label = labels.to(torch::kInt64).contiguous();
  const auto* y = label.data_ptr<std::int64_t>();
  const auto order = keyed_subset(static_cast<std::int64_t>(candidates.size()),
                                  static_cast<std::int64_t>(candidates.size()), seed, tag);
  std::map<std::int64_t, std::vector<std::int64_t>> by_class;
  for (auto o : order) by_class[y[candidates[o]]].push_back(candidates[o]);
  return by_class;
}

}  // namespace

std::vector<std::int64_t> stratified_subset(const at::Tensor& labels,
                                            const std::vector<std::int64_t>& candidates,
                                            std::int64_t n, std::uint64_t seed, std::uint64_t tag) {
  // Each class gets its share of n (largest remainders), from the front of its keyed order.
  const auto by_class = keyed_by_class(labels, candidates, seed, tag);
  const auto total = static_cast<double>(candidates.size());
  n = std::min<std::int64_t>(n, static_cast<std::int64_t>(candidates.size()));
  std::vector<std::pair<double, std::int64_t>> remainders;
  std::map<std::int64_t, std::int64_t> share;
  std::int64_t given = 0;
  for (const auto& [c, rows] : by_class) {
    const double exact = static_cast<double>(n) * static_cast<double>(rows.size()) / total;
    share[c] = static_cast<std::int64_t>(std::floor(exact));
    given += share[c];
    remainders.emplace_back(-(exact - std::floor(exact)), c);
  }
  std::sort(remainders.begin(), remainders.end());
  for (std::size_t i = 0; given < n && i < remainders.size(); ++i, ++given)
    share[remainders[i].second] += 1;
  std::vector<std::int64_t> picked;
  for (const auto& [c, rows] : by_class)
    picked.insert(picked.end(), rows.begin(), rows.begin() + share.at(c));
  std::sort(picked.begin(), picked.end());
  return picked;
}

std::vector<std::int64_t> stratified_fraction(const at::Tensor& labels,
                                              const std::vector<std::int64_t>& candidates,
                                              double fraction, std::uint64_t seed,
                                              std::uint64_t tag) {
  std::vector<std::int64_t> picked;
  for (const auto& [c, rows] : keyed_by_class(labels, candidates, seed, tag)) {
    const auto take = static_cast<std::size_t>(static_cast<double>(rows.size()) * fraction);
    picked.insert(picked.end(), rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(take));
  }
  std::sort(picked.begin(), picked.end());
  return picked;
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
  return "target,attack,tpr_at_0.1%,tpr_at_1%,auc,auc_low,auc_high,tpr_at_0.1%_low,"
         "tpr_at_0.1%_high,tpr_at_1%_low,tpr_at_1%_high,tpr_at_10%,balanced_accuracy,members,"
         "non_members,mean_test_accuracy,aop\n";
}

std::string attack_csv_row(const std::string& target, const std::string& attack,
                           const Json& figures, double accuracy) {
  // Headline first: TPR at 0.1 % and 1 % FPR, then AUC, each with its 95 % interval
  // (the point itself when no bootstrap ran).
  const auto& ci = figures.at("bootstrap_95");
  const auto bound = [&](const char* key, int side) {
    const double point = figures.at(key).get<double>();
    return ci.contains(key) && ci.at(key).size() == 2 ? ci.at(key)[side].get<double>() : point;
  };
  char row[512];
  std::snprintf(
      row, sizeof row,
      "%s,%s,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%lld,%lld,%.6f,%.6f\n",
      target.c_str(), attack.c_str(), figures.at("tpr_at_0.1%").get<double>(),
      figures.at("tpr_at_1%").get<double>(), figures.at("auc").get<double>(), bound("auc", 0),
      bound("auc", 1), bound("tpr_at_0.1%", 0), bound("tpr_at_0.1%", 1), bound("tpr_at_1%", 0),
      bound("tpr_at_1%", 1), figures.at("tpr_at_10%").get<double>(),
      figures.at("balanced_accuracy").get<double>(),
      static_cast<long long>(figures.at("members").get<std::int64_t>()),
      static_cast<long long>(figures.at("non_members").get<std::int64_t>()), accuracy,
      figures.at("aop").get<double>());
  return row;
}

namespace {

// Every attack's scores summarised, with what attack_scores or distance_attack_scores noted.
TargetAudit summarize_target(const std::string& target,
                             const std::vector<std::pair<std::string, at::Tensor>>& all,
                             const AttackNotes& notes, const at::Tensor& keep, double accuracy,
                             int bootstrap, std::uint64_t seed) {
  TargetAudit audit;
  for (const auto& [attack, why] : notes.refused) audit.refused[attack] = why;
  for (const auto& [attack, how] : notes.notes) audit.notes[attack] = how;
  audit.online_shadows = notes.online_shadows;
  audit.rmia_a = notes.rmia_a;
  for (const auto& [attack, scores] : all) {
    audit.raw.emplace_back(attack, scores);
    audit.attacks[attack] = summarize_attack(scores, keep, accuracy, bootstrap, seed);
    audit.scores.push_back({target + "/" + attack, scores.to(torch::kFloat32).contiguous()});
    audit.csv += attack_csv_row(target, attack, audit.attacks[attack], accuracy);
  }
  return audit;
}

}  // namespace

TargetAudit audit_target(const std::string& target, const AttackInputs& inputs, double accuracy,
                         int bootstrap, std::uint64_t seed) {
  AttackInputs named = inputs;
  named.target = target;
  AttackNotes notes;
  const auto all = attack_scores(named, &notes);
  return summarize_target(target, all, notes, inputs.keep, accuracy, bootstrap, seed);
}

TargetAudit audit_generator_target(const std::string& target, const at::Tensor& distances,
                                   const at::Tensor& keep, double accuracy, int bootstrap,
                                   std::uint64_t seed) {
  AttackNotes notes;
  const auto all = distance_attack_scores(distances, keep, target, &notes);
  return summarize_target(target, all, notes, keep, accuracy, bootstrap, seed);
}

}  // namespace kr::privacy
