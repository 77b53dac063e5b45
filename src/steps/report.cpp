// `kr report`: one offline HTML page (no external assets) plus JSON and CSV over
// a run's results: accuracy, privacy, cost, sample grids, ROC and training curves.
#include <cmath>
#include <sstream>

#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/core/strings.hpp"
#include "kr/steps/root_only.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

void add_report_options(po::options_description& options) {
  // clang-format off
  options.add_options()
      ("runs", po::value<std::string>()->default_value(""), "comma-separated work directories for a sweep (default: --workdir)")
      ("out", po::value<std::string>()->default_value(""), "output stem (default: <workdir>/results/report for one run, report for a sweep)");
  // clang-format on
}

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string base64(const std::string& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], table[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    const unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    out += {table[v >> 18], table[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], '='};
  }
  return out;
}

Json load_json(const std::string& path) {
  if (!path_exists(path)) return nullptr;
  try {
    return Json::parse(read_file(path));
  } catch (const std::exception& error) {
    throw Error(path + ": cannot parse: " + error.what());
  }
}

std::string percent(const Json& value) {
  if (!value.is_number()) return "-";
  char text[32];
  std::snprintf(text, sizeof text, "%.2f %%", 100.0 * value.get<double>());
  return text;
}

std::string number(const Json& value, const char* format = "%.4f") {
  if (!value.is_number()) return "-";
  char text[32];
  std::snprintf(text, sizeof text, format, value.get<double>());
  return text;
}

const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"};

struct Series {
  std::string name;
  std::vector<double> x, y;
};

// A small SVG line plot; log axes clamp values to [1e-4, 1].
std::string svg_plot(const std::string& title, const std::string& x_label,
                     const std::string& y_label, const std::vector<Series>& series, bool log_axes,
                     bool diagonal) {
  const double width = 420, height = 320, left = 60, right = 20, top = 30, bottom = 45;
  double x_min = 1e300, x_max = -1e300, y_min = 1e300, y_max = -1e300;
  auto tx = [&](double v) { return log_axes ? std::log10(std::max(v, 1e-4)) : v; };
  for (const auto& s : series)
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      x_min = std::min(x_min, tx(s.x[i]));
      x_max = std::max(x_max, tx(s.x[i]));
      y_min = std::min(y_min, tx(s.y[i]));
      y_max = std::max(y_max, tx(s.y[i]));
    }
  if (log_axes) {
    x_min = y_min = -4;
    x_max = y_max = 0;
  }
  if (!(x_max > x_min)) {
    x_min -= 1;
    x_max += 1;
  }
  if (!(y_max > y_min)) {
    y_min -= 0.01;
    y_max += 0.01;
  }
  auto px = [&](double v) {
    return left + (tx(v) - x_min) / (x_max - x_min) * (width - left - right);
  };
  auto py = [&](double v) {
    return height - bottom - (tx(v) - y_min) / (y_max - y_min) * (height - top - bottom);
  };
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height
      << "' font-family='sans-serif' font-size='11'>"
      << "<text x='" << width / 2 << "' y='16' text-anchor='middle' font-size='13'>"
      << escape(title) << "</text>"
      << "<rect x='" << left << "' y='" << top << "' width='" << width - left - right
      << "' height='" << height - top - bottom << "' fill='none' stroke='#888'/>"
      << "<text x='" << width / 2 << "' y='" << height - 8 << "' text-anchor='middle'>"
      << escape(x_label) << "</text>"
      << "<text transform='translate(14," << height / 2 << ") rotate(-90)' text-anchor='middle'>"
      << escape(y_label) << "</text>";
  for (int t = 0; t <= 4; ++t) {
    const double fx = x_min + (x_max - x_min) * t / 4, fy = y_min + (y_max - y_min) * t / 4;
    const double vx = log_axes ? std::pow(10.0, fx) : fx, vy = log_axes ? std::pow(10.0, fy) : fy;
    char lx[32], ly[32];
    std::snprintf(lx, sizeof lx, log_axes ? "%g" : "%.3g", vx);
    std::snprintf(ly, sizeof ly, log_axes ? "%g" : "%.3g", vy);
    svg << "<text x='" << px(vx) << "' y='" << height - bottom + 14 << "' text-anchor='middle'>"
        << lx << "</text>"
        << "<text x='" << left - 4 << "' y='" << py(vy) + 4 << "' text-anchor='end'>" << ly
        << "</text>";
  }
  if (diagonal) {
    svg << "<line x1='" << px(log_axes ? 1e-4 : 0) << "' y1='" << py(log_axes ? 1e-4 : 0)
        << "' x2='" << px(1) << "' y2='" << py(1) << "' stroke='#bbb' stroke-dasharray='4 3'/>";
  }
  for (std::size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    svg << "<polyline fill='none' stroke-width='1.8' stroke='" << kColours[k % 5] << "' points='";
    for (std::size_t i = 0; i < s.x.size(); ++i) svg << px(s.x[i]) << "," << py(s.y[i]) << " ";
    svg << "'/><text x='" << left + 8 << "' y='" << top + 14 + 13 * k << "' fill='"
        << kColours[k % 5] << "'>" << escape(s.name) << "</text>";
  }
  svg << "</svg>";
  return svg.str();
}

struct RunSummary {
  std::string workdir;
  Json teacher, generator, generate, distill, mia, tckr;
};

RunSummary load_run(const std::string& workdir) {
  RunSummary run;
  run.workdir = workdir;
  run.teacher = load_json(workdir + "/results/teacher.json");
  run.generator = load_json(workdir + "/results/generator.json");
  run.generate = load_json(workdir + "/results/generate.json");
  run.distill = load_json(workdir + "/results/distill.json");
  run.mia = load_json(workdir + "/results/mia.json");
  run.tckr = load_json(workdir + "/results/mia-tckr.json");
  if (run.teacher.is_null() && run.distill.is_null())
    throw Error(workdir + "/results: no teacher.json or distill.json; run the pipeline first");
  return run;
}

Json lira(const RunSummary& run, const std::string& target,
          const std::string& attack = "lira_online_global") {
  if (run.mia.is_null() || !run.mia.at("targets").contains(target)) return nullptr;
  return run.mia.at("targets").at(target).at("attacks").at(attack);
}

Json summary_json(const RunSummary& run) {
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
  for (const std::string target : {"teacher", "student", "student_hard"}) {
    const auto attack = lira(run, target);
    if (attack.is_null()) continue;
    summary["mia_" + target] = Json{
        {"lira_online_auc", attack.at("auc")},
        {"tpr_at_0.1%", attack.at("tpr_at_0.1%")},
        {"tpr_at_1%", attack.at("tpr_at_1%")},
        {"aop", attack.at("aop")},
        {"recipe_mean_test_accuracy", run.mia.at("targets").at(target).at("mean_test_accuracy")}};
  }
  if (!run.tckr.is_null())
    for (const auto& target : run.tckr.at("targets").items())
      summary["tckr_" + target.key()] =
          Json{{"best_variant", target.value().at("best_variant")},
               {"auc", target.value().at("best").at("auc")},
               {"tpr_at_0.1%", target.value().at("best").at("tpr_at_0.1%")},
               {"test_accuracy", target.value().at("test_accuracy")}};
  Json cost = Json::array();
  auto add_cost = [&](const std::string& step, const Json& json, const std::string& seconds_key) {
    if (json.is_null()) return;
    cost.push_back(Json{{"step", step},
                        {"seconds", json.value(seconds_key, Json(nullptr))},
                        {"images_per_second", json.value("images_per_second", Json(nullptr))},
                        {"world_size", json.value("world_size", Json(nullptr))}});
  };
  add_cost("train-teacher", run.teacher, "train_seconds_this_run");
  add_cost("train-generator", run.generator, "train_seconds_this_run");
  add_cost("generate", run.generate, "seconds");
  add_cost("distill", run.distill, "train_seconds_this_run");
  add_cost("mia", run.mia, "seconds");
  if (!run.mia.is_null() && run.mia.contains("run_seconds")) {
    // A rerun that reuses complete runs only rescores: show what the runs cost as well.
    cost.back()["run_seconds"] = run.mia.at("run_seconds");
    cost.back()["step"] = "mia (" + std::to_string(run.mia.value("runs", 0)) +
                          " runs: " + number(run.mia.at("run_seconds"), "%.0f") + " s of run time)";
  }
  summary["cost"] = cost;
  return summary;
}

std::string run_section(const RunSummary& run, const Json& summary) {
  std::ostringstream html;
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
  if (!run.mia.is_null()) {
    html << "<h3>Membership inference (" << escape(run.mia.value("protocol", ""))
         << "; M = " << run.mia.value("runs", 0) << ", pool " << run.mia.value("pool_size", 0)
         << ")</h3>\n<table><tr><th>target</th><th>attack</th><th>AUC</th>"
            "<th>95 % CI</th><th>balanced acc.</th><th>TPR@0.1 %</th><th>TPR@1 %</th><th>TPR@10 "
            "%</th><th>OUT scores</th><th>AOP</th></tr>";
    for (const auto& target : run.mia.at("targets").items()) {
      for (const auto& attack : target.value().at("attacks").items()) {
        const auto& a = attack.value();
        const auto& ci = a.at("bootstrap_95").at("auc");
        html << "<tr><td>" << escape(target.key()) << "</td><td>" << escape(attack.key())
             << "</td><td>" << number(a.at("auc")) << "</td><td>"
             << (ci.size() == 2 ? number(ci[0]) + "-" + number(ci[1]) : "-") << "</td><td>"
             << number(a.at("balanced_accuracy")) << "</td><td>" << number(a.at("tpr_at_0.1%"))
             << "</td><td>" << number(a.at("tpr_at_1%")) << "</td><td>"
             << number(a.at("tpr_at_10%")) << "</td><td>" << a.at("non_members") << "</td><td>"
             << percent(a.at("aop")) << "</td></tr>";
      }
    }
    html << "</table>\n";
    std::vector<Series> curves;
    for (const auto& target : run.mia.at("targets").items()) {
      const auto& roc = target.value().at("attacks").at("lira_online_global").at("roc");
      curves.push_back(Series{
          target.key() + " (AUC " +
              number(target.value().at("attacks").at("lira_online_global").at("auc"), "%.3f") + ")",
          roc.at("fpr").get<std::vector<double>>(), roc.at("tpr").get<std::vector<double>>()});
    }
    html << svg_plot("LiRA online ROC (log-log)", "false positive rate", "true positive rate",
                     curves, true, true)
         << "\n";
  }
  if (!run.tckr.is_null()) {
    html << "<h3>TCKR's protocol (labelled: shadows trained on test halves, best of 12 variants "
            "chosen on the challenge set; M = "
         << run.tckr.value("runs", 0)
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
  }
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
    }
    html << "<img alt='per-class sample grid' style='image-rendering: pixelated; width: 420px' "
            "src='data:image/png;base64,"
         << base64(read_file(grid)) << "'/>\n";
  }
  html << "<h3>Cost per step</h3><table><tr><th>step</th><th>wall time "
          "(s)</th><th>images/s</th><th>ranks</th></tr>";
  for (const auto& step : summary.at("cost"))
    html << "<tr><td>" << escape(step.at("step").get<std::string>()) << "</td><td>"
         << number(step.at("seconds"), "%.1f") << "</td><td>"
         << number(step.at("images_per_second"), "%.0f") << "</td><td>" << step.at("world_size")
         << "</td></tr>";
  html << "</table>\n";
  return html.str();
}

int run_report(Context& context) {
  run_on_root(context.comm, [&] {
    std::vector<std::string> workdirs = split_list(context.get<std::string>("runs"));
    if (workdirs.empty()) workdirs.push_back(context.workdir());
    std::string stem = context.get<std::string>("out");
    if (stem.empty())
      stem = workdirs.size() == 1 ? workdirs[0] + "/results/report" : std::string("report");
    Json all = Json::array();
    std::string body;
    std::string csv =
        "workdir,dataset,teacher_test_accuracy,student_test_accuracy,gap_points,teacher_lira_auc,"
        "student_lira_auc,student_tpr_at_0.1%,student_aop\n";
    for (const auto& workdir : workdirs) {
      const auto run = load_run(workdir);
      const auto summary = summary_json(run);
      all.push_back(summary);
      body += run_section(run, summary);
      auto field = [&](const Json& v) { return v.is_null() ? std::string() : v.dump(); };
      auto mia = [&](const std::string& target, const std::string& key) {
        return summary.contains("mia_" + target) ? field(summary.at("mia_" + target).at(key))
                                                 : std::string();
      };
      csv += workdir + "," + field(summary["dataset"]) + "," +
             field(summary["teacher_test_accuracy"]) + "," +
             field(summary["student_test_accuracy"]) + "," + field(summary["gap_points"]) + "," +
             mia("teacher", "lira_online_auc") + "," + mia("student", "lira_online_auc") + "," +
             mia("student", "tpr_at_0.1%") + "," + mia("student", "aop") + "\n";
    }
    const std::string html =
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>kr report</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
        "margin:0.5em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}"
        "td:first-child,td:nth-child(2){text-align:left}svg{margin:0.5em 1em 0.5em "
        "0}</style></head><body>\n"
        "<h1>Knowledge Recycling report</h1>\n<p>Private: derived from the private training "
        "data.</p>\n" +
        body + "</body></html>\n";
    make_dirs(parent_dir(stem + ".html"));
    write_file_atomic(stem + ".html", html);
    write_file_atomic(stem + ".json", Json{{"runs", all}}.dump(2) + "\n");
    write_file_atomic(stem + ".csv", csv);
    log::info("report: wrote " + stem + ".html, .json and .csv");
  });
  return exit_code::ok;
}

}  // namespace

Step report_step() {
  return Step{"report", "HTML + JSON + CSV report over one run or a sweep", add_report_options,
              run_report};
}

}  // namespace kr::steps
