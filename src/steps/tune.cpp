// `kr tune`: GaFi's search (Note [Tune stages]) for the settings of regeneration and
// distillation, every candidate judged by a fast student's val accuracy. Test is never
// loaded: candidates read a copy of the data set whose test split is empty.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "kr/comm/communicator.hpp"
#include "kr/comm/deal.hpp"
#include "kr/comm/self_communicator.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/core/strings.hpp"
#include "kr/io/dataset_file.hpp"
#include "kr/report/results.hpp"
#include "kr/steps/pipeline.hpp"
#include "kr/steps/root_only.hpp"
#include "kr/steps/run_record.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

// Note [Tune stages]
// GaFi (its Fig. 2) tunes one setting at a time, in a fixed order, each stage keeping
// its best candidate for the stages after it: the generator checkpoint, the latent
// scale s (z ~ N(0, s^2 I)), the confidence filter's tau, then distillation settings
// (mixup's a, the temperature). A candidate is the last two steps of the pipeline on a
// fixed small budget: `kr generate` (--pool-epochs = --epochs parts of --epoch-size
// images) and `kr distill` (--epochs epochs of --epoch-size), with the settings chosen
// so far and the stage's value; the score is the student's best val accuracy. Settings
// not searched yet come from the config, as the final run would take them.
// A val accuracy is noisy (a fast student's varies by about a point between seeds):
// the --repeat best of each stage run again with the next seed, and the stage keeps
// the best mean over the seeds. Candidates with the same seed share the pool's seed and
// the student's initialisation, so a stage compares them on common random numbers.
// Candidates are dealt whole to ranks (Note [Dealt jobs]); a rerun skips complete
// ones, and a failed candidate is reported in the table, not fatal, unless a whole
// stage fails.

struct TuneOptions {
  std::string data;
  std::string teacher;
  std::string generator;
  std::string out;
  std::string stages;
  std::int64_t checkpoint_every = 1;
  std::string z_scales;
  std::string filter_taus;
  std::string mixups;
  std::string temperatures;
  std::int64_t epochs = 2;
  std::int64_t epoch_size = 10000;
  std::int64_t repeat = 2;
};

void add_tune_options(OptionTable& table, TuneOptions& options) {
  // clang-format off
  table
      ("data", &options.data, "", "prepared data set: train and val are copied for the candidates, test is left out (default: <workdir>/data/data.h5)").operational()
      ("teacher", &options.teacher, "", "teacher run (default: <workdir>/teacher)")
      ("generator", &options.generator, "", "generator run; its kept checkpoints are the checkpoint stage's candidates (default: <workdir>/generator)")
      ("out", &options.out, "", "search directory (default: <workdir>/tune)").operational()
      ("stages", &options.stages, "checkpoint,z-scale,filter-tau,mixup,temperature", "stages in order (Note [Tune stages]), any of checkpoint, z-scale, filter-tau, mixup, temperature")
      ("checkpoint-every", &options.checkpoint_every, 1, "checkpoint stage: every k-th kept checkpoint (oldest first), and the final generator").at_least(1)
      ("z-scales", &options.z_scales, "1.0:2.0:0.05", "z-scale stage: the GAN's latent scales, a list or FIRST:LAST:STEP (GaFi's grid by default)")
      ("filter-taus", &options.filter_taus, "0:0.9:0.1", "filter-tau stage: confidence thresholds (GaFi's grid by default)")
      ("mixups", &options.mixups, "0,1", "mixup stage: Beta(a, a) parameters (0: no mixup)")
      ("temperatures", &options.temperatures, "1,2,4", "temperature stage: distillation temperatures")
      ("epochs", &options.epochs, 2, "a candidate's budget: student epochs (and pool parts)").at_least(1)
      ("epoch-size", &options.epoch_size, 10000, "a candidate's budget: synthetic images per epoch").at_least(1)
      ("repeat", &options.repeat, 2, "the best this many of each stage run again with the next seed; the stage keeps the best mean (0: one seed)").at_least(0);
  // clang-format on
}

// The step and option a stage sets.
struct StageKind {
  const char* name;
  const char* step;
  const char* option;
};

const StageKind& stage_kind(const std::string& name) {
  static const StageKind kinds[] = {{"checkpoint", "generate", "generator"},
                                    {"z-scale", "generate", "z-scale"},
                                    {"filter-tau", "generate", "filter-tau"},
                                    {"mixup", "distill", "mixup"},
                                    {"temperature", "distill", "temperature"}};
  for (const auto& kind : kinds)
    if (name == kind.name) return kind;
  throw UsageError("--stages: unknown stage '" + name +
                   "' (checkpoint, z-scale, filter-tau, mixup, temperature)");
}

// Settings given to the candidates' steps: step -> option -> value text.
using Settings = std::map<std::string, std::map<std::string, std::string>>;

struct Paths {
  std::string out, data, teacher, generator;
};

struct Candidate {
  std::string stage;
  std::string value;  // the stage's value, as option text
  std::int64_t seed_index = 0;
  std::string dir;
  Settings settings;  // everything chosen before, with this stage's value
};

// The generator checkpoints the checkpoint stage compares: every k-th kept one, oldest
// first, then the final generator (the run's own best-on-val weights).
std::vector<std::string> checkpoint_values(const std::string& generator, std::int64_t every) {
  std::vector<std::pair<std::int64_t, std::string>> kept;
  const std::string dir = generator + "/ckpt";
  if (std::filesystem::is_directory(dir))
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      const auto name = entry.path().filename().string();
      if (name.rfind("step_", 0) != 0 || !path_exists(entry.path().string() + "/ema.pt")) continue;
      try {
        kept.emplace_back(std::stoll(name.substr(5)), entry.path().string());
      } catch (const std::exception&) {
        continue;  // not a checkpoint directory of kr's
      }
    }
  std::sort(kept.begin(), kept.end());
  std::vector<std::string> values;
  for (std::size_t i = 0; i < kept.size(); ++i)
    if (i % static_cast<std::size_t>(every) == 0) values.push_back(kept[i].second);
  values.push_back(generator);
  return values;
}

std::vector<std::string> stage_values(const TuneOptions& options, const Paths& paths,
                                      const std::string& stage) {
  if (stage == "checkpoint") return checkpoint_values(paths.generator, options.checkpoint_every);
  const std::map<std::string, std::pair<std::string, std::string>> grids = {
      {"z-scale", {options.z_scales, "z-scales"}},
      {"filter-tau", {options.filter_taus, "filter-taus"}},
      {"mixup", {options.mixups, "mixups"}},
      {"temperature", {options.temperatures, "temperatures"}}};
  const auto& [text, option] = grids.at(stage);
  std::vector<std::string> values;
  for (const double value : parse_grid(text, option)) values.push_back(number_text(value));
  return values;
}

std::vector<std::string> step_arguments(const Settings& settings, const std::string& step) {
  std::vector<std::string> args;
  const auto found = settings.find(step);
  if (found == settings.end()) return args;
  for (const auto& [option, value] : found->second) args.insert(args.end(), {"--" + option, value});
  return args;
}

// The candidate's two steps, in its own directory (`kr run`'s skipping resumes it): the
// budget's options, with the searched settings over them (an option given once).
std::vector<PipelineStep> candidate_steps(const TuneOptions& options, const Paths& paths,
                                          const Candidate& candidate) {
  const auto epochs = std::to_string(options.epochs);
  const auto size = std::to_string(options.epoch_size);
  Settings args = candidate.settings;
  const std::map<std::string, std::map<std::string, std::string>> budget = {
      {"generate",
       {{"generator", paths.generator},
        {"teacher", paths.teacher},
        {"data", paths.data},
        {"count", size},
        {"pool-epochs", epochs}}},
      {"distill",
       {{"teacher", paths.teacher},
        {"data", paths.data},
        {"pool", candidate.dir + "/pool"},
        {"epochs", epochs},
        {"epoch-size", size},
        {"regen-every", "1"}}}};
  for (const auto& [step, values] : budget)
    for (const auto& [option, value] : values)
      args[step].emplace(option, value);  // keeps a searched value
  return {PipelineStep{"generate", "pool", step_arguments(args, "generate")},
          PipelineStep{"distill", "student", step_arguments(args, "distill")}};
}

bool candidate_done(const Candidate& candidate) {
  return run_complete(candidate.dir + "/student");
}

// Runs one candidate on a one-rank communicator. False only when preempted; a failure
// is written to <dir>/failed.txt (the table reports it) and the search goes on.
bool run_candidate(Context& context, const TuneOptions& options, const Paths& paths,
                   const Candidate& candidate) {
  make_dirs(candidate.dir);
  const std::string failed = candidate.dir + "/failed.txt";
  std::filesystem::remove(failed);
  std::vector<std::string> common = {
      "--workdir", candidate.dir, "--seed",
      std::to_string(context.get<std::uint64_t>("seed") +
                     static_cast<std::uint64_t>(candidate.seed_index))};
  const auto config = context.get<std::string>("config");
  if (!config.empty()) common.insert(common.begin(), {"--config", config});
  log::rank_info("tune: candidate " + candidate.dir + " (" + candidate.stage + " = " +
                 candidate.value + ", seed " + std::to_string(candidate.seed_index) + ")");
  std::string error;
  try {
    comm::SelfCommunicator self;
    const int code = run_pipeline(context, self, candidate_steps(options, paths, candidate),
                                  candidate.dir, common);
    if (code == exit_code::preempted) return false;
    if (code != exit_code::ok) error = "a step failed with exit code " + std::to_string(code);
  } catch (const std::exception& caught) {
    error = caught.what();
  }
  if (!error.empty()) {
    log::warn("tune: candidate " + candidate.dir + " failed (the search goes on): " + error);
    write_file_atomic(failed, error + "\n");
  }
  return true;
}

// A candidate's row of the table: its settings, val accuracy (null: failed or not
// finished, with the error), cost and the pool's quality.
Json read_score(const Candidate& candidate) {
  const auto distill = report::read_results(candidate.dir, "distill");
  const auto generate = report::read_results(candidate.dir, "generate");
  Json row{{"stage", candidate.stage},
           {"value", candidate.value},
           {"seed_index", candidate.seed_index},
           {"directory", candidate.dir},
           {"settings", candidate.settings}};
  if (candidate_done(candidate) && distill.is_object()) {
    row["val_accuracy"] = distill.value("val_accuracy", Json(nullptr));
    row["best_epoch"] = distill.value("best_epoch", 0);
    row["distill_seconds"] = distill.value("train_seconds_this_run", std::nan(""));
  } else {
    row["val_accuracy"] = nullptr;
    row["error"] = path_exists(candidate.dir + "/failed.txt")
                       ? read_file(candidate.dir + "/failed.txt")
                       : std::string("did not finish");
  }
  if (generate.is_object()) {
    row["generate_seconds"] = generate.value("seconds", std::nan(""));
    const auto quality = generate.value("quality", Json(nullptr));
    if (quality.is_object()) {
      row["pool_precision"] = quality.value("precision", Json(nullptr));
      row["pool_recall"] = quality.value("recall", Json(nullptr));
      row["pool_teacher_agreement"] = quality.value("teacher_agreement", Json(nullptr));
    }
  }
  return row;
}

double val_of(const Json& row) {
  const auto& val = row.at("val_accuracy");
  return val.is_number() ? val.get<double>() : std::numeric_limits<double>::quiet_NaN();
}

// Collective. Runs the candidates not yet complete (dealt over ranks); false when a
// rank was preempted.
bool run_all(Context& context, const TuneOptions& options, const Paths& paths,
             const std::vector<Candidate>& candidates) {
  const bool preempted = comm::deal_jobs(
      context.comm, static_cast<std::int64_t>(candidates.size()),
      [&](std::int64_t j) { return candidate_done(candidates[j]); },
      [&](std::int64_t j) { return run_candidate(context, options, paths, candidates[j]); });
  return !preempted;
}

std::string candidate_dir(const Paths& paths, const std::string& stage, std::size_t index,
                          std::int64_t seed_index) {
  return paths.out + "/" + stage + "_" + std::to_string(index) + "_seed" +
         std::to_string(seed_index);
}

// Rank 0: <out>/data/data.h5, the data set without its test split (written once,
// atomically, so a candidate never reads a half-written file).
void write_search_data(const std::string& source, const std::string& path) {
  if (path_exists(path)) return;
  auto dataset = io::read_dataset(source);
  dataset.test = data::take(dataset.test, {});
  make_dirs(std::filesystem::path(path).parent_path().string());
  const std::string partial = path + ".partial";
  io::write_dataset(dataset, partial);
  std::filesystem::rename(partial, path);
}

// The config with the chosen settings in their sections and the workdir moved to
// <workdir>-tuned (the final run must not reuse the search's pool or student).
std::string tuned_config(const std::string& config, const Settings& chosen,
                         const std::string& workdir) {
  std::vector<std::string> lines;
  if (!config.empty()) {
    std::ifstream in(config);
    if (!in) throw Error(config + ": cannot read the config");
    for (std::string line; std::getline(in, line);) lines.push_back(line);
  }
  auto trimmed = [](const std::string& text) {
    const auto first = text.find_first_not_of(" \t");
    const auto last = text.find_last_not_of(" \t\r");
    return first == std::string::npos ? std::string() : text.substr(first, last - first + 1);
  };
  auto key_of = [&](const std::string& line) {
    const auto equals = line.find('=');
    return equals == std::string::npos ? std::string() : trimmed(line.substr(0, equals));
  };
  std::vector<std::string> out;
  std::string section;
  std::map<std::string, std::map<std::string, std::string>> pending = chosen;
  bool workdir_set = false;
  // A section's missing keys go after its last setting, before the blank lines and
  // comments that lead into the next section.
  auto flush = [&](const std::string& name) {
    const auto found = pending.find(name);
    if (found == pending.end()) return;
    auto at = out.end();
    while (at != out.begin()) {
      const auto text = trimmed(*(at - 1));
      if (!text.empty() && text.front() != '#' && text.front() != ';') break;
      --at;
    }
    std::vector<std::string> added;
    for (const auto& [key, value] : found->second)
      added.push_back(key + " = " + value + "  # kr tune");
    out.insert(at, added.begin(), added.end());
    pending.erase(found);
  };
  for (const auto& line : lines) {
    const auto text = trimmed(line);
    if (!text.empty() && text.front() == '[' && text.back() == ']') {
      flush(section);
      section = text.substr(1, text.size() - 2);
      out.push_back(line);
      continue;
    }
    const auto key = key_of(text);
    if (section.empty() && key == "workdir") {
      out.push_back("workdir = " + workdir + "-tuned");
      workdir_set = true;
      continue;
    }
    auto found = pending.find(section);
    if (!key.empty() && text.front() != '#' && found != pending.end() && found->second.count(key)) {
      out.push_back(key + " = " + found->second.at(key) + "  # kr tune");
      found->second.erase(key);
      continue;
    }
    out.push_back(line);
  }
  flush(section);
  std::ostringstream text;
  text << "# Written by kr tune: " << (config.empty() ? "no config" : config)
       << " with the settings chosen on val (results/tune.json).\n";
  if (!workdir_set) text << "workdir = " << workdir << "-tuned\n";
  for (const auto& line : out) text << line << "\n";
  for (const auto& [name, keys] : pending) {
    if (keys.empty()) continue;
    text << "\n[" << name << "]\n";
    for (const auto& [key, value] : keys) text << key << " = " << value << "  # kr tune\n";
  }
  return text.str();
}

std::string csv_field(const Json& value) {
  if (value.is_null()) return "";
  if (value.is_string()) {
    auto text = value.get<std::string>();
    std::replace(text.begin(), text.end(), '\n', ' ');
    std::replace(text.begin(), text.end(), '"', '\'');
    return "\"" + text + "\"";
  }
  return value.dump();
}

std::string tune_csv(const Json& rows) {
  const std::vector<std::string> columns = {"stage",
                                            "value",
                                            "seed_index",
                                            "val_accuracy",
                                            "best_epoch",
                                            "pool_precision",
                                            "pool_recall",
                                            "pool_teacher_agreement",
                                            "generate_seconds",
                                            "distill_seconds",
                                            "chosen",
                                            "error"};
  std::string csv;
  for (std::size_t i = 0; i < columns.size(); ++i) csv += (i ? "," : "") + columns[i];
  csv += "\n";
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < columns.size(); ++i)
      csv += (i ? "," : "") + csv_field(row.value(columns[i], Json(nullptr)));
    csv += "\n";
  }
  return csv;
}

struct StageOutcome {
  bool complete = false;
  std::string best;
  Json summary;
  Json rows = Json::array();
};

// Collective. One stage: every value at the first seed, then the best --repeat again at
// the next seed; the best mean val accuracy wins (ties: the earlier value).
StageOutcome run_stage(Context& context, const TuneOptions& options, const Paths& paths,
                       const std::string& stage, const Settings& chosen) {
  const auto& kind = stage_kind(stage);
  const auto values = stage_values(options, paths, stage);
  auto make = [&](std::size_t index, std::int64_t seed_index) {
    Candidate candidate{stage, values[index], seed_index,
                        candidate_dir(paths, stage, index, seed_index), chosen};
    candidate.settings[kind.step][kind.option] = values[index];
    return candidate;
  };
  StageOutcome outcome;
  const auto start = std::chrono::steady_clock::now();
  std::vector<Candidate> first;
  for (std::size_t i = 0; i < values.size(); ++i) first.push_back(make(i, 0));
  if (!run_all(context, options, paths, first)) return outcome;
  std::vector<std::vector<double>> scores(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    auto row = read_score(first[i]);
    scores[i].push_back(val_of(row));
    outcome.rows.push_back(row);
  }
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isnan(scores[i][0])) order.push_back(i);
  if (order.empty())
    throw Error("tune: every candidate of stage " + stage + " failed (each one's failed.txt in " +
                paths.out + "/" + stage + "_*)");
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return scores[a][0] > scores[b][0]; });
  const auto repeated =
      std::min<std::size_t>(static_cast<std::size_t>(options.repeat), order.size());
  std::vector<std::size_t> finalists(order.begin(),
                                     order.begin() + std::max<std::size_t>(1, repeated));
  if (repeated > 0) {
    std::vector<Candidate> again;
    for (const auto i : finalists) again.push_back(make(i, 1));
    if (!run_all(context, options, paths, again)) return outcome;
    for (std::size_t k = 0; k < finalists.size(); ++k) {
      auto row = read_score(again[k]);
      scores[finalists[k]].push_back(val_of(row));
      outcome.rows.push_back(row);
    }
  }
  // The mean over the seeds that finished; a finalist whose repeat failed keeps its one.
  auto mean = [&](std::size_t i) {
    double sum = 0;
    int count = 0;
    for (const double v : scores[i])
      if (!std::isnan(v)) sum += v, ++count;
    return sum / count;
  };
  std::sort(finalists.begin(), finalists.end());
  std::size_t best = finalists.front();
  for (const auto i : finalists)
    if (mean(i) > mean(best)) best = i;
  outcome.best = values[best];
  outcome.complete = true;
  for (auto& row : outcome.rows) row["chosen"] = row.at("value") == outcome.best;
  Json finalist_means = Json::array();
  for (const auto i : finalists)
    finalist_means.push_back(
        Json{{"value", values[i]}, {"val_accuracies", scores[i]}, {"mean_val_accuracy", mean(i)}});
  outcome.summary =
      Json{{"stage", stage},
           {"step", kind.step},
           {"option", kind.option},
           {"candidates", values.size()},
           {"runs", first.size() + (repeated > 0 ? finalists.size() : 0)},
           {"finalists", finalist_means},
           {"chosen", outcome.best},
           {"mean_val_accuracy", mean(best)},
           {"wall_seconds",
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()}};
  char line[200];
  std::snprintf(
      line, sizeof line, "tune: stage %s: %s = %s (mean val accuracy %.2f %% over %zu seed(s))",
      stage.c_str(), kind.option, outcome.best.c_str(), 100.0 * mean(best), scores[best].size());
  log::info(line);
  return outcome;
}

int run_tune(Context& context, const TuneOptions& options) {
  Paths paths{context.under_workdir(options.out, "tune"), "",
              context.under_workdir(options.teacher, "teacher"),
              context.under_workdir(options.generator, "generator")};
  const std::string source = context.under_workdir(options.data, "data/data.h5");
  paths.data = paths.out + "/data/data.h5";
  if (!path_exists(source)) throw UsageError(source + ": no prepared data set (run kr prepare)");
  if (!path_exists(paths.teacher + "/model.json"))
    throw UsageError(paths.teacher + ": no trained teacher (run kr train-teacher)");
  if (!path_exists(paths.generator + "/model.json"))
    throw UsageError(paths.generator + ": no trained generator (run kr train-generator)");
  std::vector<std::string> stages = split_list(options.stages);
  if (stages.empty()) throw UsageError("--stages: no stage");
  // The confidence filter fills the pool class by class: refuse a budget it cannot
  // split before any candidate runs (each would fail alone).
  const auto classes =
      Json::parse(read_file(paths.teacher + "/model.json")).value("classes", std::int64_t{0});
  if (std::find(stages.begin(), stages.end(), "filter-tau") != stages.end() && classes > 0 &&
      options.epoch_size % classes != 0)
    throw UsageError("--epoch-size " + std::to_string(options.epoch_size) +
                     ": the filter-tau stage needs a multiple of the " + std::to_string(classes) +
                     " classes");
  for (const auto& stage : stages) {
    stage_kind(stage);
    stage_values(options, paths, stage);  // a bad grid is refused before any work
  }
  const Json settings{{"stages", stages},
                      {"checkpoint_every", options.checkpoint_every},
                      {"z_scales", options.z_scales},
                      {"filter_taus", options.filter_taus},
                      {"mixups", options.mixups},
                      {"temperatures", options.temperatures},
                      {"epochs", options.epochs},
                      {"epoch_size", options.epoch_size},
                      {"repeat", options.repeat},
                      {"seed", context.get<std::uint64_t>("seed")},
                      {"config", context.get<std::string>("config")},
                      {"teacher", paths.teacher},
                      {"generator", paths.generator}};
  run_on_root(context.comm, [&] { claim_settings(paths.out, settings, "a search"); });
  RunRecord& record = open_record(context, paths.out);
  record.add_input("data", source);
  run_on_root(context.comm, [&] { write_search_data(source, paths.data); });
  context.comm.barrier();
  const auto start = std::chrono::steady_clock::now();
  Settings chosen;
  Json summaries = Json::array();
  Json rows = Json::array();
  for (const auto& stage : stages) {
    auto outcome = run_stage(context, options, paths, stage, chosen);
    if (!outcome.complete) {
      record.finish("preempted");
      return exit_code::preempted;
    }
    const auto& kind = stage_kind(stage);
    chosen[kind.step][kind.option] = outcome.best;
    summaries.push_back(outcome.summary);
    for (auto& row : outcome.rows) rows.push_back(row);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  run_on_root(context.comm, [&] {
    const Json results{{"step", "tune"},
                       {"selection", "best val accuracy of a fast student (test never loaded)"},
                       {"settings", settings},
                       {"stages", summaries},
                       {"chosen", chosen},
                       {"candidates", rows},
                       {"world_size", context.comm.size()},
                       {"wall_seconds", seconds},
                       {"tuned_config", paths.out + "/tuned.ini"}};
    make_dirs(context.workdir() + "/results");
    report::write_results(context.workdir(), "tune", results);
    report::write_results_csv(context.workdir(), "tune", tune_csv(rows));
    // The final generator needs no line: the tuned run trains its own, as this one did.
    Settings lines = chosen;
    auto generate = lines.find("generate");
    if (generate != lines.end() && generate->second.count("generator") &&
        generate->second.at("generator") == paths.generator)
      generate->second.erase("generator");
    write_file_atomic(paths.out + "/tuned.ini",
                      tuned_config(context.get<std::string>("config"), lines, context.workdir()));
  });
  log::info("tune: " + std::to_string(rows.size()) + " candidate runs in " +
            std::to_string(static_cast<long long>(seconds)) +
            " s; the chosen settings: " + paths.out + "/tuned.ini");
  record.set("results", Json{{"chosen", chosen}, {"wall_seconds", seconds}});
  record.finish("complete");
  return exit_code::ok;
}

}  // namespace

Step tune_step() {
  return typed_step<TuneOptions>(
      "tune",
      "GaFi's staged search of regeneration and distillation settings on val (fast students "
      "dealt over ranks)",
      add_tune_options, run_tune);
}

}  // namespace kr::steps
