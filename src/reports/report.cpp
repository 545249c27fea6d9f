#include "flatmin/reports/report.h"

#include <filesystem>

#include "flatmin/core/error.h"
#include "flatmin/core/files.h"
#include "flatmin/reports/aggregate.h"
#include "flatmin/reports/html.h"
#include "flatmin/reports/plots.h"
#include "flatmin/reports/tables.h"

namespace flatmin::reports {

namespace fs = std::filesystem;

WrittenReport write_report(const std::string& root, const ReportOptions& options) {
  Sweep sweep = load_sweep(root);
  const Report report = aggregate(sweep);
  const fs::path out = options.out().empty() ? fs::path(root) / "report" : fs::path(options.out());
  std::error_code ec;
  fs::create_directories(out, ec);
  check(!ec, out.string() + ": cannot create directory: " + ec.message());

  WrittenReport written;
  written.out_dir = out.string();
  // The figures first: gnuplot's problems become warnings that the tables and the page list too.
  std::vector<Figure> figures;
  const fs::path plots = out / "plots";
  if (options.plots()) figures = write_plots(report, plots.string(), PlotOptions().formats(options.formats()), sweep.warnings);
  const std::vector<Table> tables = result_tables(sweep, report);
  auto write = [&](const std::string& name, const std::string& text) {
    flatmin::write_text_file((out / name).string(), text);
    written.files.push_back((out / name).string());
  };
  write("results.md", results_markdown(sweep, report, tables));
  write("results.csv", results_csv(report));
  write("results.json", results_json(sweep, report));
  write("paired.csv", paired_csv(report));
  write("index.html", html_page(sweep, report, tables, figures, plots.string(), "plots"));
  for (const Figure& f : figures)
    for (const std::string& image : f.images) written.files.push_back((plots / image).string());

  size_t final_runs = 0, done = 0;
  for (const RunRecord& r : sweep.runs)
    if (r.has_role("final")) ++final_runs, done += r.done();
  written.summary = "flatmin report: " + root + " | " + (sweep.name.empty() ? "sweep" : sweep.name) + ", " +
                    std::to_string(sweep.runs.size()) + " runs, " + std::to_string(final_runs) + " final (" +
                    std::to_string(done) + " done)" +
                    (sweep.complete ? "" : " | not complete: runs remain to be planned or run") + "\n\n" +
                    text_summary(report, tables) + '\n';
  written.warnings = sweep.warnings;
  return written;
}

}  // namespace flatmin::reports
