// `flatmin report ROOT`: a sweep's results as tables (Markdown, CSV, JSON), gnuplot figures and one
// self-contained HTML page (reports::write_report). No LibTorch here: it reads files and writes files.
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "flatmin/reports/report.h"

namespace flatmin::cli {
namespace {

namespace fs = std::filesystem;

struct ReportArgs {
  std::string root;
  std::string out;  // empty: ROOT/report
  bool no_plots = false;
  std::vector<std::string> formats{"svg", "png"};
};

int run_report(const ReportArgs& a) {
  const reports::WrittenReport written =
      reports::write_report(a.root, reports::ReportOptions().out(a.out).plots(!a.no_plots).formats(a.formats));
  std::cout << written.summary;
  for (const std::string& warning : written.warnings) std::cerr << "warning: " << warning << '\n';
  std::cout << "wrote " << written.out_dir << "/index.html, results.md, results.csv, results.json, paired.csv";
  if (!a.no_plots) std::cout << " and the figures in " << written.out_dir << "/plots";
  std::cout << '\n';
  return 0;
}

}  // namespace

Action add_report_command(CLI::App& app) {
  auto args = std::make_shared<ReportArgs>();
  CLI::App* cmd = app.add_subcommand("report", "Aggregate a sweep into tables, gnuplot figures and one HTML page");
  cmd->footer(
      "Reads ROOT/manifest.json (written by flatmin sweep), selection.json and each run's summary.json,\n"
      "metrics.csv and geometry.json. Groups the runs with role 'final' by task and method: mean ± sample\n"
      "standard deviation (n − 1) over the seeds that finished of test accuracy, test loss, the generalisation\n"
      "gaps, Hessian trace, λ1, gradient evaluations and time; counts the runs failed, diverged or pending.\n"
      "With report.highlight in the manifest: per task, that method's test accuracy difference (points) to the\n"
      "best other method by test accuracy, and its trace / λ1 change (%) against that method and against the\n"
      "other method with the lowest trace / λ1, and their averages over tasks.\n"
      "Paired, per task: every method against the reference (report.reference; default the plain base\n"
      "optimizer, sgd) and against the best other method by test accuracy, seed by seed: the mean difference\n"
      "± its standard error, the sign count, and two-sided p-values (paired t, exact sign test).\n\n"
      "Writes OUT/results.md, results.csv (one row per group, full precision), paired.csv (one row per paired\n"
      "comparison and quantity), results.json (also every run),\n"
      "index.html (self-contained: tables and inline SVG figures) and plots/NAME.{dat,gp,svg,png}: rerun\n"
      "`gnuplot NAME.gp` in OUT/plots after editing a script to restyle a figure.\n\n"
      "Examples:\n"
      "  flatmin report runs/finetune\n"
      "  flatmin report runs/finetune --out /tmp/report --formats svg\n"
      "  flatmin report runs/finetune --no-plots       # tables only (no gnuplot needed)");
  cmd->option_defaults()->always_capture_default();
  cmd->add_option("root", args->root, "Sweep root directory (holds manifest.json)")->required();
  cmd->add_option("--out", args->out, "Output directory (default: ROOT/report)");
  cmd->add_flag("--no-plots", args->no_plots, "Write no figures (the page has the tables only)");
  cmd->add_option("--formats", args->formats, "Image formats gnuplot writes: svg (inlined in the page), png")
      ->delimiter(',')
      ->check(CLI::IsMember({"svg", "png"}));
  return [args] { return run_report(*args); };
}

}  // namespace flatmin::cli
