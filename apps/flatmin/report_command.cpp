// `flatmin report ROOT`: a sweep's results as tables (Markdown, CSV, JSON), gnuplot figures and one
// self-contained HTML page. No LibTorch here: the command reads files and writes files.
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "flatmin/core/files.h"
#include "flatmin/core/error.h"
#include "flatmin/reports/aggregate.h"
#include "flatmin/reports/html.h"
#include "flatmin/reports/plots.h"
#include "flatmin/reports/tables.h"

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
  reports::Sweep sweep = reports::load_sweep(a.root);
  const reports::Report report = reports::aggregate(sweep);
  const fs::path out = a.out.empty() ? fs::path(a.root) / "report" : fs::path(a.out);
  std::error_code ec;
  fs::create_directories(out, ec);
  check(!ec, out.string() + ": cannot create directory: " + ec.message());

  // The figures first: gnuplot's problems become warnings that the tables and the page list too.
  std::vector<reports::Figure> figures;
  const fs::path plots = out / "plots";
  if (!a.no_plots)
    figures = reports::write_plots(report, plots.string(), reports::PlotOptions().formats(a.formats), sweep.warnings);
  const std::vector<reports::Table> tables = reports::result_tables(sweep, report);
  flatmin::write_text_file((out / "results.md").string(), reports::results_markdown(sweep, report, tables));
  flatmin::write_text_file((out / "results.csv").string(), reports::results_csv(report));
  flatmin::write_text_file((out / "results.json").string(), reports::results_json(sweep, report));
  flatmin::write_text_file((out / "paired.csv").string(), reports::paired_csv(report));
  flatmin::write_text_file((out / "index.html").string(),
                            reports::html_page(sweep, report, tables, figures, plots.string(), "plots"));

  size_t final_runs = 0, done = 0;
  for (const reports::RunRecord& r : sweep.runs)
    if (r.has_role("final")) ++final_runs, done += r.done();
  std::cout << "flatmin report: " << a.root << " | " << (sweep.name.empty() ? "sweep" : sweep.name) << ", "
            << sweep.runs.size() << " runs, " << final_runs << " final (" << done << " done)"
            << (sweep.complete ? "" : " | not complete: runs remain to be planned or run") << "\n\n"
            << reports::text_summary(report, tables) << '\n';
  for (const std::string& warning : sweep.warnings) std::cerr << "warning: " << warning << '\n';
  std::cout << "wrote " << (out / "index.html").string() << ", results.md, results.csv, results.json, paired.csv";
  if (!a.no_plots) std::cout << " and " << figures.size() << " figures in " << plots.string();
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
