#pragma once
/// A sweep's report as one library call (`flatmin report ROOT`, Python's flatmin.report): aggregates the sweep
/// root and writes results.md, results.csv, results.json, paired.csv, the gnuplot figures and index.html.

#include <string>
#include <vector>

#include <torch/arg.h>

namespace flatmin::reports {

struct ReportOptions {
  /// Output directory ("" = ROOT/report).
  TORCH_ARG(std::string, out);
  /// Draw the figures with gnuplot (off: the page has the tables only).
  TORCH_ARG(bool, plots) = true;
  TORCH_ARG(std::vector<std::string>, formats) = std::vector<std::string>{"svg", "png"};
};

struct WrittenReport {
  std::string out_dir;
  std::string summary;                ///< the report's text summary (what `flatmin report` prints)
  std::vector<std::string> warnings;  ///< the sweep's and gnuplot's
  std::vector<std::string> files;     ///< the files written (figures included)
};

/// Throws flatmin::Error on a root that is not a sweep or an output directory that cannot be made.
WrittenReport write_report(const std::string& root, const ReportOptions& options = {});

}  // namespace flatmin::reports
