#include "kr/report/run_report.hpp"

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <vector>

#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/report/html.hpp"
#include "kr/report/results.hpp"

namespace kr::report {

namespace {

Json lira(const RunResults& run, const std::string& target,
          const std::string& attack = "lira_online_global") {
  if (run.mia.is_null() || !run.mia.at("targets").contains(target)) return nullptr;
  return run.mia.at("targets").at(target).at("attacks").at(attack);
}

}  // namespace

RunResults load_run(const std::string& workdir) {
  RunResults run;
  run.workdir = workdir;
  run.teacher = read_results(workdir, "teacher");
  run.generator = read_results(workdir, "generator");
  run.generate = read_results(workdir, "generate");
  run.distill = read_results(workdir, "distill");
  run.mia = read_results(workdir, "mia");
  run.tckr = read_results(workdir, "mia-tckr");
  run.tune = read_results(workdir, "tune");
  run.generator_dp = read_results(workdir, "generator-dp");
  run.distill_dp = read_results(workdir, "distill-dp");
  const std::string results = workdir + "/results";
  if (path_exists(results)) {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(results)) {
      const auto file = entry.path().filename().string();
      if (file.rfind("audit-", 0) == 0 && entry.path().extension() == ".json")
        names.push_back(file.substr(6, file.size() - 6 - 5));
    }
    std::sort(names.begin(), names.end());
    for (const auto& name : names) run.audits[name] = read_results(workdir, "audit-" + name);
  }
  if (run.teacher.is_null() && run.distill.is_null())
    throw Error(workdir + "/results: no teacher.json or distill.json; run the pipeline first");
  return run;
}

Json summarize_run(const RunResults& run) {
  auto get = [](const Json& json, const std::string& key) {
    return json.is_null() ? Json(nullptr) : json.value(key, Json(nullptr));
  };
  Json summary{{"workdir", run.workdir},
               {"dataset", get(run.teacher, "dataset")},
               {"teacher_test_accuracy", get(run.teacher, "test_accuracy")},
               {"student_test_accuracy", get(run.distill, "test_accuracy")},
               {"gap_points", get(run.distill, "gap_points")},
               {"generator", get(run.generator, "model")},
               {"generator_quality", get(run.generator, "quality")},
               {"pool_size", get(run.generate, "total")}};
  if (!run.distill_dp.is_null())
    summary["dp_student"] = Json{{"test_accuracy", get(run.distill_dp, "test_accuracy")},
                                 {"targets", get(run.distill_dp, "targets")},
                                 {"dp", get(run.distill_dp, "dp")},
                                 {"generator_dp", get(run.generator_dp, "dp")},
                                 {"generator_quality", get(run.generator_dp, "quality")}};
  for (const std::string target : {"teacher", "teacher_reg", "student", "student_hard", "student2",
                                   "student_dp", "generator", "generator2", "generator_dp"}) {
    const auto attack = lira(run, target);
    if (attack.is_null()) continue;
    summary["mia_" + target] = Json{
        {"tpr_at_0.1%", attack.at("tpr_at_0.1%")},
        {"tpr_at_1%", attack.at("tpr_at_1%")},
        {"lira_online_auc", attack.at("auc")},
        {"bootstrap_95", attack.value("bootstrap_95", Json::object())},
        {"aop", attack.at("aop")},
        {"recipe_mean_test_accuracy", run.mia.at("targets").at(target).at("mean_test_accuracy")}};
  }
  if (!run.mia.is_null() && run.mia.contains("recipe"))
    summary["mia_recipe"] = run.mia.at("recipe").at("audited");
  if (!run.tckr.is_null())
    for (const auto& target : run.tckr.at("targets").items())
      summary["tckr_" + target.key()] =
          Json{{"best_variant", target.value().at("best_variant")},
               {"auc", target.value().at("best").at("auc")},
               {"tpr_at_0.1%", target.value().at("best").at("tpr_at_0.1%")},
               {"test_accuracy", target.value().at("test_accuracy")}};
  for (const auto& [name, audit] : run.audits.items()) {
    Json spaces = Json::object();
    for (const auto& [space, figures] : audit.at("spaces").items())
      spaces[space] = Json{{"closer_to_train_share", figures.at("closer_to_train_share")},
                           {"exact_copies", figures.at("exact_copies")},
                           {"normalised_under_threshold", figures.at("normalised_under_threshold")},
                           {"normalised_threshold", figures.at("normalised_threshold")}};
    summary["audit_" + name] = Json{{"samples", audit.at("samples")}, {"spaces", spaces}};
  }
  Json cost = Json::array();
  auto add_cost = [&](const std::string& step, const Json& json, const std::string& seconds_key) {
    if (json.is_null()) return;
    cost.push_back(Json{{"step", step},
                        {"seconds", json.value(seconds_key, Json(nullptr))},
                        {"images_per_second", json.value("images_per_second", Json(nullptr))},
                        {"world_size", json.value("world_size", Json(nullptr))},
                        {"cost_split", json.value("cost_split", Json(nullptr))}});
  };
  add_cost("train-teacher", run.teacher, "train_seconds_this_run");
  add_cost("train-generator", run.generator, "train_seconds_this_run");
  add_cost("generate", run.generate, "seconds");
  add_cost("distill", run.distill, "train_seconds_this_run");
  add_cost("mia", run.mia, "seconds");
  for (const auto& [name, audit] : run.audits.items()) add_cost("audit " + name, audit, "seconds");
  if (!run.mia.is_null() && run.mia.contains("run_seconds")) {
    // A rerun that reuses complete runs only rescores: show what the runs cost as well.
    cost.back()["run_seconds"] = run.mia.at("run_seconds");
    cost.back()["step"] = "mia (" + std::to_string(run.mia.value("runs", 0)) +
                          " runs: " + number(run.mia.at("run_seconds"), "%.0f") + " s of run time)";
  }
  summary["cost"] = cost;
  return summary;
}

namespace {

void accuracy_section(std::ostringstream& html, const RunResults& run, const Json& summary) {
  html << "<h2>" << escape(run.workdir) << "</h2>\n<h3>Accuracy (test split, reported once)</h3>\n"
       << "<table><tr><th>model</th><th>trained on</th><th>test accuracy</th></tr>"
       << "<tr><td>teacher resnet20</td><td>real train images</td><td>"
       << percent(summary["teacher_test_accuracy"]) << "</td></tr>"
       << "<tr><td>student resnet20</td><td>synthetic images only ("
       << escape(run.distill.is_null() ? "-" : run.distill.value("targets", ""))
       << " targets)</td><td>" << percent(summary["student_test_accuracy"])
       << "</td></tr></table>\n";
  if (summary["gap_points"].is_number())
    html << "<p>Gap: <b>" << number(summary["gap_points"], "%.2f")
         << " points</b> (teacher minus student).</p>\n";
  if (summary.contains("dp_student")) {
    // Note [What DP covers]: an epsilon is printed only for a student it covers.
    const auto& dp_student = summary["dp_student"];
    const auto& dp = dp_student["dp"];
    html << "<h3>Differentially private generator</h3>\n<p>Student on the DP generator's "
            "samples ("
         << escape(dp_student.value("targets", std::string("-"))) << " targets): test accuracy <b>"
         << percent(dp_student["test_accuracy"]) << "</b>. ";
    if (dp.is_object() && dp.value("covered", false))
      html << "Covered by the generator's (epsilon " << number(dp.at("epsilon"), "%.3g")
           << ", delta " << number(dp.at("delta"), "%.3g") << ")"
           << (dp.value("formal_guarantee", false) ? "" : ", keyed noise: not a formal guarantee")
           << ".</p>\n";
    else if (dp.is_object())
      html << "No epsilon for this student: " << escape(dp.at("reasons").dump()) << ".</p>\n";
    else
      html << "Its generator was not trained with DP-SGD: no epsilon.</p>\n";
  }
}

// "lo to hi" of a 95 % interval in `ci` under `key`, or "-".
std::string interval_text(const Json& ci, const std::string& key, const char* format = "%.4f") {
  if (!ci.contains(key) || ci.at(key).size() != 2) return "-";
  return number(ci.at(key)[0], format) + " to " + number(ci.at(key)[1], format);
}

void membership_section(std::ostringstream& html, const RunResults& run) {
  if (run.mia.is_null()) return;
  // Headline first: TPR at 0.1 % and 1 % FPR, then AUC, each with its point-bootstrap
  // interval; the audited recipe named, and the audited runs' own accuracy beside them.
  html << "<h3>Membership inference (" << escape(run.mia.value("protocol", "")) << ")</h3>\n";
  if (run.mia.contains("recipe"))
    html << "<p>Audited recipe: " << escape(run.mia.at("recipe").value("audited", ""))
         << ". Every figure below is of these runs; the shipped models' accuracy elsewhere in "
            "this report is not what was attacked.</p>\n";
  html << "<table><tr><th>target</th><th>attack</th><th>TPR@0.1 %</th><th>95 % CI</th>"
          "<th>TPR@1 %</th><th>95 % CI</th><th>AUC</th><th>95 % CI</th><th>TPR@10 %</th>"
          "<th>audited runs' test acc.</th><th>OUT scores</th><th>AOP</th></tr>";
  for (const auto& target : run.mia.at("targets").items()) {
    for (const auto& attack : target.value().at("attacks").items()) {
      const auto& a = attack.value();
      const auto ci = a.value("bootstrap_95", Json::object());
      html << "<tr><td>" << escape(target.key()) << "</td><td>" << escape(attack.key())
           << "</td><td>" << number(a.at("tpr_at_0.1%")) << "</td><td>"
           << interval_text(ci, "tpr_at_0.1%") << "</td><td>" << number(a.at("tpr_at_1%"))
           << "</td><td>" << interval_text(ci, "tpr_at_1%") << "</td><td>" << number(a.at("auc"))
           << "</td><td>" << interval_text(ci, "auc") << "</td><td>" << number(a.at("tpr_at_10%"))
           << "</td><td>" << percent(target.value().at("mean_test_accuracy")) << "</td><td>"
           << a.at("non_members") << "</td><td>" << percent(a.at("aop")) << "</td></tr>";
    }
  }
  html << "</table>\n";
  if (run.mia.contains("paired") && !run.mia.at("paired").empty()) {
    html << "<p>Paired differences (A minus B on the same resampled points; \"A leaks more\" "
            "holds at 95 % where the interval excludes 0):</p>\n<table><tr><th>A - B</th>"
            "<th>attack</th><th>TPR@0.1 %</th><th>95 % CI</th><th>TPR@1 %</th><th>95 % CI</th>"
            "<th>AUC</th><th>95 % CI</th></tr>";
    for (const auto& pair : run.mia.at("paired").items())
      for (const auto& attack : pair.value().items()) {
        if (attack.key().rfind("lira_", 0) != 0 && attack.key() != "gan_leaks_calibrated") continue;
        const auto& d = attack.value();
        const auto cell = [&](const std::string& key) {
          const bool excludes = d.value(key + "_95_excludes_0", false);
          return "<td>" + number(d.at(key), "%+.4f") + "</td><td>" + (excludes ? "<b>" : "") +
                 interval_text(d, key + "_95", "%+.4f") + (excludes ? "</b>" : "") + "</td>";
        };
        html << "<tr><td>" << escape(pair.key()) << "</td><td>" << escape(attack.key()) << "</td>"
             << cell("tpr_at_0.1%") << cell("tpr_at_1%") << cell("auc") << "</tr>";
      }
    html << "</table>\n";
  }
  std::vector<Series> curves;
  for (const auto& target : run.mia.at("targets").items()) {
    const auto& roc = target.value().at("attacks").at("lira_online_global").at("roc");
    curves.push_back(Series{
        target.key() + " (AUC " +
            number(target.value().at("attacks").at("lira_online_global").at("auc"), "%.3f") + ")",
        roc.at("fpr").get<std::vector<double>>(), roc.at("tpr").get<std::vector<double>>()});
  }
  html << svg_plot("LiRA online ROC (log-log)", "false positive rate", "true positive rate", curves,
                   true, true)
       << "\n";
}

void tckr_section(std::ostringstream& html, const RunResults& run) {
  if (run.tckr.is_null()) return;
  {
    html << "<h3>TCKR's protocol (labelled: shadow pairs trained on the test split, best of 12 "
            "variants chosen on the challenge set; shadow pairs: "
         << run.tckr.value("shadow_pairs", 0)
         << ")</h3>\n<table><tr><th>target</th><th>test accuracy</th><th>best variant</th>"
            "<th>AUC</th><th>TPR@0.1 %</th><th>TPR@1 %</th><th>AOP</th></tr>";
    for (const auto& target : run.tckr.at("targets").items()) {
      const auto& t = target.value();
      const auto& b = t.at("best");
      html << "<tr><td>" << escape(target.key()) << "</td><td>" << percent(t.at("test_accuracy"))
           << "</td><td>" << escape(t.value("best_variant", "")) << "</td><td>"
           << number(b.at("auc")) << "</td><td>" << number(b.at("tpr_at_0.1%")) << "</td><td>"
           << number(b.at("tpr_at_1%")) << "</td><td>" << percent(b.at("aop")) << "</td></tr>";
    }
    html << "</table>\n";
    if (run.tckr.contains("flaws")) {
      html << "<p>The protocol as TCKR's notebook computes it, flaws kept so the figures compare "
              "with the paper's:</p><ul>";
      for (const auto& flaw : run.tckr.at("flaws"))
        html << "<li>" << escape(flaw.get<std::string>()) << "</li>";
      html << "</ul>\n";
    }
  }
}

void curves_section(std::ostringstream& html, const RunResults& run) {
  std::vector<Series> training;
  auto add_curve = [&](const std::string& name, const Json& results) {
    if (results.is_null()) return;
    Series s{name, {}, {}};
    for (const auto& epoch : results.at("history")) {
      s.x.push_back(epoch.value("epoch", 0));
      s.y.push_back(epoch.value("val_accuracy", 0.0));
    }
    training.push_back(s);
  };
  add_curve("teacher val accuracy", run.teacher);
  add_curve("student val accuracy", run.distill);
  if (!training.empty())
    html << svg_plot("Training curves", "epoch", "val accuracy", training, false, false) << "\n";
}

// Per class: teacher agreement, precision and recall (k-NN manifolds in the teacher's
// feature space); absent from results written before kr measured them.
void quality_table(std::ostringstream& html, const Json& q) {
  if (!q.contains("class_recall")) return;
  html << "<p>Precision " << number(q.at("precision"), "%.3f") << ", recall "
       << number(q.at("recall"), "%.3f")
       << " (means over classes; k = 3 nearest-neighbour manifolds in the teacher's feature "
          "space against real val images of each class, Kynkaanniemi et al. 2019). A recall "
          "near 0 is a class whose samples cover one corner of its real images.</p>\n"
       << "<table><tr><th>class</th><th>teacher agreement</th><th>precision</th><th>recall</th>"
          "<th>images per set</th></tr>";
  const auto& recall = q.at("class_recall");
  for (std::size_t c = 0; c < recall.size(); ++c)
    html << "<tr><td>" << c << "</td><td>" << percent(q.at("class_agreement").at(c)) << "</td><td>"
         << number(q.at("class_precision").at(c), "%.3f") << "</td><td>"
         << number(recall.at(c), "%.3f") << "</td><td>" << q.at("class_compared").at(c)
         << "</td></tr>";
  html << "</table>\n";
}

void samples_section(std::ostringstream& html, const RunResults& run) {
  const std::string grid = run.workdir + "/generator/samples.png";
  if (path_exists(grid)) {
    html << "<h3>Generator samples (" << escape(run.generator.value("model", ""))
         << "; one row per class)</h3>\n";
    if (run.generator.contains("quality") && !run.generator.at("quality").is_null()) {
      const auto& q = run.generator.at("quality");
      html << "<p>Teacher agreement " << percent(q.at("teacher_agreement"))
           << "; teacher-space Frechet distance "
           << number(q.at("frechet_teacher_features"), "%.3f") << " over " << q.at("samples")
           << " samples (not Inception FID).</p>\n";
      quality_table(html, q);
    }
    html << "<img alt='per-class sample grid' style='image-rendering: pixelated; width: 420px' "
            "src='data:image/png;base64,"
         << base64(read_file(grid)) << "'/>\n";
  }
}

// kr tune's search (Note [Tune stages]): a row per stage and a plot of every first-seed
// candidate's val accuracy, stage after stage.
void tune_section(std::ostringstream& html, const RunResults& run) {
  if (!run.tune.is_object() || !run.tune.contains("stages")) return;
  html << "<h3>Search on val (kr tune)</h3><p>Each stage keeps its best candidate by a fast "
          "student's val accuracy (test is never loaded); the best "
       << run.tune.at("settings").value("repeat", 0)
       << " of a stage run again with the next seed and the best mean wins. "
       << number(run.tune.value("wall_seconds", Json(nullptr)), "%.0f") << " s at "
       << run.tune.value("world_size", 0) << " rank(s).</p>\n"
       << "<table><tr><th>stage</th><th>option</th><th>candidates</th><th>runs</th><th>chosen</th>"
          "<th>mean val accuracy</th><th>wall (s)</th></tr>";
  std::vector<Series> series;
  double x = 0;
  for (const auto& stage : run.tune.at("stages")) {
    html << "<tr><td>" << escape(stage.at("stage").get<std::string>()) << "</td><td>"
         << escape(stage.at("step").get<std::string>() + " --" +
                   stage.at("option").get<std::string>())
         << "</td><td>" << stage.at("candidates") << "</td><td>" << stage.at("runs") << "</td><td>"
         << escape(stage.at("chosen").get<std::string>()) << "</td><td>"
         << percent(stage.at("mean_val_accuracy")) << "</td><td>"
         << number(stage.at("wall_seconds"), "%.0f") << "</td></tr>";
    Series s{stage.at("stage").get<std::string>(), {}, {}};
    for (const auto& candidate : run.tune.at("candidates"))
      if (candidate.at("stage") == stage.at("stage") && candidate.at("seed_index") == 0 &&
          candidate.at("val_accuracy").is_number()) {
        s.x.push_back(++x);
        s.y.push_back(candidate.at("val_accuracy").get<double>());
      }
    series.push_back(s);
  }
  html << "</table>\n"
       << svg_plot("Val accuracy of each candidate, stage after stage", "candidate", "val accuracy",
                   series, false, false)
       << "\n";
}

// kr audit (Note [Memorisation audit]): a row per audited source and space, the
// distance-to-closest-record curves, and each space's closest pairs.
void memorisation_section(std::ostringstream& html, const RunResults& run) {
  if (run.audits.empty()) return;
  html << "<h3>Memorisation (kr audit)</h3><p>Each audited sample's nearest real image in the "
          "train set, in a train reference and in the holdout (test) of the same size. "
          "Closer to train: the share of samples nearer the train reference than the holdout "
          "(about 0.5 when nothing is memorised). Normalised: Carlini et al. 2023's distance to "
          "the nearest train image over alpha times the mean distance to its n nearest; the "
          "count is of samples under the threshold. Pixels: L2 of images in [0, 1]; features: "
          "cosine distance of the teacher's penultimate features.</p>\n"
       << "<table><tr><th>audited</th><th>space</th><th>samples</th><th>closer to train</th>"
          "<th>exact copies</th><th>normalised under threshold</th><th>median distance to "
          "train</th><th>median to train reference</th><th>median to holdout</th><th>search "
          "(s)</th></tr>";
  std::vector<std::pair<std::string, std::vector<Series>>> curves;
  // Named references, not structured bindings: the lambdas below capture them (C++17,
  // and clang-tidy 14, cannot capture a structured binding).
  for (const auto& audit_item : run.audits.items()) {
    const std::string& name = audit_item.key();
    const Json& audit = audit_item.value();
    for (const auto& space_item : audit.at("spaces").items()) {
      const std::string& space = space_item.key();
      const Json& f = space_item.value();
      auto median = [&](const char* key) { return number(f.at(key).at(4), "%.4g"); };
      const Json timing = f.value("timing", Json::object());
      html << "<tr><td>" << escape(name) << "</td><td>" << escape(space) << "</td><td>"
           << f.at("samples") << "</td><td>" << number(f.at("closer_to_train_share"), "%.3f")
           << "</td><td>" << f.at("exact_copies") << "</td><td>"
           << f.at("normalised_under_threshold") << " (&lt; "
           << number(f.at("normalised_threshold"), "%.3g") << ")</td><td>"
           << median("train_distance_quantiles") << "</td><td>"
           << median("train_reference_distance_quantiles") << "</td><td>"
           << median("holdout_distance_quantiles") << "</td><td>"
           << number(timing.value("search_seconds", Json(nullptr)), "%.1f") << "</td></tr>";
      auto curve = [&](const std::string& label, const char* key) {
        return Series{name + " " + label, f.at(key).get<std::vector<double>>(),
                      f.at("curve_levels").get<std::vector<double>>()};
      };
      auto where = std::find_if(curves.begin(), curves.end(),
                                [&](const auto& c) { return c.first == space; });
      if (where == curves.end()) where = curves.insert(curves.end(), {space, {}});
      where->second.push_back(curve("train reference", "train_reference_curve"));
      where->second.push_back(curve("holdout", "holdout_curve"));
    }
  }
  html << "</table>\n";
  for (const auto& [space, series] : curves)
    html << svg_plot("Distance to the closest record, " + space, "distance", "share of samples",
                     series, false, false);
  html << "\n";
  for (const auto& [name, audit] : run.audits.items())
    for (const auto& [space, f] : audit.at("spaces").items()) {
      const std::string strip = f.value("strip", std::string());
      if (strip.empty() || !path_exists(strip)) continue;
      html << "<figure style='display:inline-block'><img alt='closest pairs' style='image-"
              "rendering: pixelated; width: 150px' src='data:image/png;base64,"
           << base64(read_file(strip)) << "'/><figcaption>" << escape(name) << ", " << escape(space)
           << ": sample | nearest train | nearest holdout</figcaption></figure>";
    }
  html << "\n";
}

// Each part's share of a step's wall time on rank 0 (Note [Cost split]), "-" for a
// step recorded before the split existed.
std::string share(const Json& step, const char* part) {
  const Json split = step.value("cost_split", Json(nullptr));
  if (!split.is_object() || !split.contains(std::string(part) + "_share")) return "-";
  return number(Json(100.0 * split.at(std::string(part) + "_share").get<double>()), "%.0f") + " %";
}

void cost_section(std::ostringstream& html, const Json& summary) {
  html << "<h3>Cost per step</h3><table><tr><th>step</th><th>wall time "
          "(s)</th><th>images/s</th><th>ranks</th><th>data</th><th>compute</th>"
          "<th>communication</th><th>I/O</th></tr>";
  for (const auto& step : summary.at("cost")) {
    html << "<tr><td>" << escape(step.at("step").get<std::string>()) << "</td><td>"
         << number(step.at("seconds"), "%.1f") << "</td><td>"
         << number(step.at("images_per_second"), "%.0f") << "</td><td>" << step.at("world_size")
         << "</td>";
    for (const char* part : {"data", "compute", "comm", "io"})
      html << "<td>" << share(step, part) << "</td>";
    html << "</tr>";
  }
  html << "</table>\n<p>Shares of each step's whole run on rank 0 (setup and evaluation "
          "included): data is batch assembly and augmentation, communication includes "
          "waiting for other ranks, I/O is files (HDF5, checkpoints, models).</p>\n";
}

}  // namespace

std::string run_section(const RunResults& run, const Json& summary) {
  std::ostringstream html;
  accuracy_section(html, run, summary);
  membership_section(html, run);
  tckr_section(html, run);
  curves_section(html, run);
  samples_section(html, run);
  tune_section(html, run);
  memorisation_section(html, run);
  cost_section(html, summary);
  return html.str();
}

std::string csv_header() {
  return "workdir,dataset,teacher_test_accuracy,student_test_accuracy,gap_points,teacher_lira_auc,"
         "student_lira_auc,student_tpr_at_0.1%,student_aop\n";
}

std::string csv_row(const Json& summary) {
  auto field = [&](const Json& v) { return v.is_null() ? std::string() : v.dump(); };
  auto mia = [&](const std::string& target, const std::string& key) {
    return summary.contains("mia_" + target) ? field(summary.at("mia_" + target).at(key))
                                             : std::string();
  };
  return summary.at("workdir").get<std::string>() + "," + field(summary["dataset"]) + "," +
         field(summary["teacher_test_accuracy"]) + "," + field(summary["student_test_accuracy"]) +
         "," + field(summary["gap_points"]) + "," + mia("teacher", "lira_online_auc") + "," +
         mia("student", "lira_online_auc") + "," + mia("student", "tpr_at_0.1%") + "," +
         mia("student", "aop") + "\n";
}

std::string page(const std::string& sections) {
  return "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>kr report</title><style>"
         "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
         "margin:0.5em 0}"
         "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}"
         "td:first-child,td:nth-child(2){text-align:left}svg{margin:0.5em 1em 0.5em "
         "0}</style></head><body>\n"
         "<h1>Knowledge Recycling report</h1>\n<p>Private: derived from the private training "
         "data.</p>\n" +
         sections + "</body></html>\n";
}

}  // namespace kr::report
