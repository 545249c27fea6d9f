#pragma once
/// The report's figures, drawn by gnuplot. Each figure NAME is three kinds of files in one folder: NAME.dat
/// (the numbers, whitespace separated, a `#` header naming the columns), NAME.gp (a gnuplot script that reads
/// NAME.dat by relative path and writes NAME.svg and/or NAME.png) and the images — so a figure can be
/// restyled by editing NAME.gp and running `gnuplot NAME.gp` in that folder.

#include <string>
#include <vector>

#include <torch/arg.h>

#include "flatmin/reports/aggregate.h"

namespace flatmin::reports {

struct PlotOptions {
  /// Image formats: "svg" (inlined in index.html) and/or "png".
  TORCH_ARG(std::vector<std::string>, formats) = std::vector<std::string>{"svg", "png"};
  /// Run gnuplot on each script; off: only the .dat and .gp files are written.
  TORCH_ARG(bool, run_gnuplot) = true;
  /// The gnuplot executable (a name looked up on PATH, or a path).
  TORCH_ARG(std::string, gnuplot) = "gnuplot";
};

struct Figure {
  std::string name;  ///< file stem in the plots folder
  std::string task;
  std::string caption;
  std::vector<std::string> images;  ///< the image files gnuplot wrote ("NAME.svg", "NAME.png"); empty if none
};

/// Writes, per task: test accuracy and test loss per epoch (mean over seeds, ±1 std band, one colour per
/// method), the final test accuracy, Hessian trace and λ1 per method with ±1 std error bars (the last two
/// when measured), and the trace and λ1 per epoch where metrics.csv has finite geo_* values. Creates `dir`.
/// gnuplot missing or failing is not an error: one line per problem goes to `warnings`, the .dat and .gp
/// files stay. Throws flatmin::Error when a file cannot be written.
std::vector<Figure> write_plots(const Report& report, const std::string& dir, const PlotOptions& options,
                                std::vector<std::string>& warnings);

/// One model's loss landscape over a grid (flatmin landscape): values row-major, y outer, x inner; one y
/// value for a 1-D landscape. NaN where a point is not measured yet.
struct LandscapeGrid {
  std::string label;  ///< the model's name in legends and titles
  std::vector<double> xs, ys;
  std::vector<double> loss, accuracy;
};

/// The landscape figures of several models measured along the same (seeded) directions: 1-D, one figure of
/// the loss and one of the accuracy with a line per model; 2-D, per model a contour plot of the loss and a
/// heat map of log10(loss). `stem` prefixes the files; `x_label` names the axis ("α (filter-normalised
/// direction 1)", "t (0 = A, 1 = B)"). As write_plots: gnuplot problems are warnings, the .gp and .dat stay.
std::vector<Figure> write_landscape_plots(const std::vector<LandscapeGrid>& grids, const std::string& dir,
                                          const std::string& stem, const std::string& x_label,
                                          const std::string& y_label, const PlotOptions& options,
                                          std::vector<std::string>& warnings);

/// A file-name-safe form of `text`: letters, digits, '.', '_' and '-' kept, anything else '_'.
std::string file_stem(const std::string& text);

}  // namespace flatmin::reports
