// `kr report`: one offline HTML page (no external assets) plus JSON and CSV over
// a run's results: accuracy, privacy, cost, sample grids, ROC and training curves
// (the reading and rendering are kr::report's).
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"
#include "kr/core/log.hpp"
#include "kr/core/strings.hpp"
#include "kr/report/run_report.hpp"
#include "kr/steps/root_only.hpp"
#include "kr/steps/step.hpp"

namespace kr::steps {

namespace {

struct ReportOptions {
  std::string runs;
  std::string out;
};

void add_report_options(OptionTable& table, ReportOptions& options) {
  // clang-format off
  table
      ("runs", &options.runs, "", "comma-separated work directories for a sweep (default: --workdir)")
      ("out", &options.out, "", "output stem (default: <workdir>/results/report for one run, report for a sweep)").operational();
  // clang-format on
}

int run_report(Context& context, const ReportOptions& options) {
  run_on_root(context.comm, [&] {
    std::vector<std::string> workdirs = split_list(options.runs);
    if (workdirs.empty()) workdirs.push_back(context.workdir());
    std::string stem = options.out;
    if (stem.empty())
      stem = workdirs.size() == 1 ? workdirs[0] + "/results/report" : std::string("report");
    Json all = Json::array();
    std::string sections;
    std::string csv = report::csv_header();
    for (const auto& workdir : workdirs) {
      const auto run = report::load_run(workdir);
      const auto summary = report::summarize_run(run);
      all.push_back(summary);
      sections += report::run_section(run, summary);
      csv += report::csv_row(summary);
    }
    make_dirs(parent_dir(stem + ".html"));
    write_file_atomic(stem + ".html", report::page(sections));
    write_file_atomic(stem + ".json", Json{{"runs", all}}.dump(2) + "\n");
    write_file_atomic(stem + ".csv", csv);
    log::info("report: wrote " + stem + ".html, .json and .csv");
  });
  return exit_code::ok;
}

}  // namespace

Step report_step() {
  return typed_step<ReportOptions>("report", "HTML + JSON + CSV report over one run or a sweep",
                                   add_report_options, run_report);
}

}  // namespace kr::steps
