#include "flatmin/reports/plots.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <limits>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "flatmin/core/error.h"
#include "flatmin/core/files.h"

namespace flatmin::reports {
namespace {

namespace fs = std::filesystem;

// matplotlib's default colours: one per method, the same in every figure.
const std::vector<std::string> kPalette = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string number(double value) {
  if (std::isnan(value)) return "nan";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.10g", value);
  return buffer;
}

// A gnuplot single-quoted string: no escapes are processed inside, a quote is doubled (a line break would
// end the command: a space instead).
std::string gp_string(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c == '\n' ? ' ' : c);
  return out + "'";
}

// The smallest and the largest finite value (+inf and 0 when there is none).
std::pair<double, double> finite_range(const std::vector<double>& values) {
  double lowest = std::numeric_limits<double>::infinity(), highest = 0;
  for (double v : values)
    if (std::isfinite(v)) lowest = std::min(lowest, v), highest = std::max(highest, v);
  return {lowest, highest};
}

// Quantities over several orders of magnitude (matrix sensing's losses, a landscape's loss far from the
// minimum) get a logarithmic axis: all positive, the largest over 1,000 times the smallest.
bool wants_log_axis(const std::vector<double>& values) {
  const auto [lowest, highest] = finite_range(values);
  return lowest > 0 && highest > 1e3 * lowest;
}

// Contour levels for a loss over several decades: 1-2-5 steps from its smallest to its largest value
// (gnuplot's linear levels would draw every line far from the minimum); otherwise gnuplot's own.
std::string contour_levels(const std::vector<double>& values) {
  if (!wants_log_axis(values)) return "set cntrparam levels auto 15\n";
  const auto [lowest, highest] = finite_range(values);
  std::string levels;
  for (int e = static_cast<int>(std::floor(std::log10(lowest))); std::pow(10.0, e) < highest; ++e)
    for (double m : {1.0, 2.0, 5.0}) {
      const double level = m * std::pow(10.0, e);
      if (level > lowest && level < highest) levels += (levels.empty() ? "" : ",") + number(level);
    }
  return "set cntrparam levels discrete " + levels + "\n";
}

// One line of a .dat file's header comment (no line breaks may slip into the data).
std::string comment(const std::string& s) {
  std::string out = s;
  std::replace(out.begin(), out.end(), '\n', ' ');
  return "# " + out + "\n";
}

// A label as one whitespace-separated data column: double-quoted, inner double quotes made single.
std::string dat_label(const std::string& s) {
  std::string out = s;
  std::replace(out.begin(), out.end(), '"', '\'');
  std::replace(out.begin(), out.end(), '\n', ' ');
  return "\"" + out + "\"";
}

struct Series {
  std::string label, colour;
  const GroupSummary* group;
};

// The script's preamble and the commands that draw `plot` once per requested format.
std::string script(const std::string& stem, const std::string& about, const std::string& settings,
                   const std::string& plot, const std::vector<std::string>& formats) {
  std::ostringstream gp;
  gp << "# flatmin report: " << about << "\n# Data: " << stem << ".dat. Restyle here, then run `gnuplot " << stem
     << ".gp` in this folder.\n"
     << "set encoding utf8\n"
     << "sd(c) = valid(c) ? column(c) : 0  # no spread (n = 1) draws no band / bar\n"
     << settings << "set border lc rgb '#555555'\n";
  bool first = true;
  for (const std::string& format : formats) {
    if (format == "svg")
      gp << "set terminal svg size 720,450 dynamic font 'sans,14' noenhanced background rgb 'white'\n";
    else
      gp << "set terminal pngcairo size 1080,675 font 'sans,15' noenhanced background rgb 'white'\n";
    gp << "set output " << gp_string(stem + "." + format) << '\n' << (first ? plot : "replot\n");
    first = false;
  }
  gp << "unset output\n";
  return gp.str();
}

// Runs `gnuplot script` in `dir`; "" on success, else one line saying why. 127 = the program was not found.
std::string run_gnuplot(const std::string& gnuplot, const std::string& dir, const std::string& script_name,
                        int& exit_status) {
  int pipe_fds[2];
  check(pipe(pipe_fds) == 0, "cannot create a pipe to run gnuplot");
  const pid_t pid = fork();
  check(pid >= 0, "cannot start gnuplot: fork failed");
  if (pid == 0) {  // the child: only async-signal-safe calls until exec
    close(pipe_fds[0]);
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    if (chdir(dir.c_str()) != 0) _exit(126);
    execlp(gnuplot.c_str(), gnuplot.c_str(), script_name.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(pipe_fds[1]);
  std::string output;
  char buffer[4096];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof buffer)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (output.size() < 65536) output.append(buffer, static_cast<size_t>(n));
  }
  close(pipe_fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (exit_status == 0) return "";
  // gnuplot ends with `"NAME.gp" line N: what went wrong`: the last non-empty line says it.
  std::istringstream lines(output);
  std::string line, last;
  while (std::getline(lines, line))
    if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
  return last.empty() ? "exit status " + std::to_string(exit_status) : last;
}

class PlotWriter {
 public:
  PlotWriter(const Report& report, std::string dir, const PlotOptions& options, std::vector<std::string>& warnings)
      : report_(report), dir_(std::move(dir)), options_(options), warnings_(warnings) {
    for (const GroupSummary& g : report.groups) {
      const std::string label = label_of(g);
      if (!colours_.count(label)) colours_[label] = kPalette[colours_.size() % kPalette.size()];
    }
  }

  std::vector<Figure> write_landscape(const std::vector<LandscapeGrid>& grids, const std::string& stem,
                                      const std::string& x_label, const std::string& y_label) {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    check(!ec, dir_ + ": cannot create directory: " + ec.message());
    if (grids.empty()) return figures_;
    if (grids.front().ys.size() <= 1) {
      landscape_lines(grids, stem + "-loss", "loss", x_label, false);
      landscape_lines(grids, stem + "-accuracy", "accuracy", x_label, true);
    } else {
      for (const LandscapeGrid& g : grids) landscape_plane(g, unique_stem(stem + "-" + file_stem(g.label)), x_label, y_label);
    }
    return figures_;
  }

  std::vector<Figure> write_all() {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    check(!ec, dir_ + ": cannot create directory: " + ec.message());
    for (const std::string& task : report_.tasks) {
      std::vector<Series> series;
      for (const GroupSummary* g : report_.groups_of(task)) series.push_back({label_of(*g), colours_[label_of(*g)], g});
      const std::string stem = unique_stem(file_stem(task));
      // Validation and the training objective come every epoch; the test set and the clean training loss
      // where the runs scored them (the last epoch, and every --eval-every epochs): curves need two epochs.
      curves(task, series, stem + "-val-acc", "validation accuracy", "%", 100,
             [](const CurvePoint& p) { return p.val_acc; });
      curves(task, series, stem + "-val-loss", "validation loss", "", 1,
             [](const CurvePoint& p) { return p.val_loss; });
      curves(task, series, stem + "-objective", "training objective (mean loss at the method's points)", "", 1,
             [](const CurvePoint& p) { return p.objective; });
      curves(task, series, stem + "-test-acc", "test accuracy", "%", 100,
             [](const CurvePoint& p) { return p.test_acc; });
      curves(task, series, stem + "-test-loss", "test loss", "", 1,
             [](const CurvePoint& p) { return p.test_loss; });
      curves(task, series, stem + "-train-loss", "training loss", "", 1,
             [](const CurvePoint& p) { return p.train_loss; });
      curves(task, series, stem + "-loss-gap", "generalisation gap (test − train loss)", "", 1,
             [](const CurvePoint& p) { return p.gap_loss; });
      // The runs' extra quantities (matrix sensing's recovery error, ...), where metrics.csv has them.
      std::vector<std::string> extra;
      for (const Series& s : series)
        for (const auto& [name, stat] : s.group->extra)
          if (std::find(extra.begin(), extra.end(), name) == extra.end()) extra.push_back(name);
      for (const std::string& name : extra)
        curves(task, series, unique_stem(stem + "-" + file_stem(name)), name, "", 1, [name](const CurvePoint& p) {
          const auto it = p.extra.find(name);
          return it == p.extra.end() ? MeanStd{} : it->second;
        });
      per_method(task, series, stem + "-final-acc", "final test accuracy", "%", 100,
                 [](const GroupSummary& g) { return g.test_acc; });
      per_method(task, series, stem + "-trace", "Hessian trace", "", 1, [](const GroupSummary& g) { return g.trace; });
      per_method(task, series, stem + "-lambda1", "λ1 (top Hessian eigenvalue)", "", 1,
                 [](const GroupSummary& g) { return g.lambda1; });
      curves(task, series, stem + "-trace-epochs", "Hessian trace", "", 1,
             [](const CurvePoint& p) { return p.trace; });
      curves(task, series, stem + "-lambda1-epochs", "λ1 (top Hessian eigenvalue)", "", 1,
             [](const CurvePoint& p) { return p.lambda1; });
      for (const Series& s : series)
        if (!s.group->gaps.empty()) noise_stability(task, s, unique_stem(stem + "-" + file_stem(s.label) + "-gap"));
      paired(task, stem + "-paired-acc", "test_acc", "test accuracy", "points", 100);
      paired(task, stem + "-paired-trace", "trace", "Hessian trace", "", 1);
    }
    return figures_;
  }

 private:
  // A method's name, with its setting when the task has several final settings of it.
  std::string label_of(const GroupSummary& g) const {
    int same = 0;
    for (const GroupSummary* o : report_.groups_of(g.task)) same += o->method == g.method;
    return same > 1 ? g.method + " (" + g.setting_name + ")" : g.method;
  }

  // Tasks whose names differ only in characters that file_stem replaces still get their own files.
  std::string unique_stem(const std::string& stem) {
    std::string candidate = stem;
    for (int i = 2; !stems_.insert(candidate).second; ++i) candidate = stem + "-" + std::to_string(i);
    return candidate;
  }

  static std::string axis_label(const std::string& quantity, const std::string& unit) {
    return unit.empty() ? quantity : quantity + " (" + unit + ")";
  }

  // One quantity per epoch: one data block per method (mean, std, n), a ±1 std band and a line each.
  void curves(const std::string& task, const std::vector<Series>& series, const std::string& stem,
              const std::string& quantity, const std::string& unit, double scale,
              const std::function<MeanStd(const CurvePoint&)>& get) {
    const std::string ylabel = axis_label(quantity, unit);
    std::ostringstream dat, plot;
    dat << comment(ylabel + " per epoch, task " + task + ": mean and sample std over seeds (std nan for one seed)")
        << comment("one block per method (gnuplot: index i); columns: epoch mean std n");
    int block = 0;
    int64_t last_epoch = 0;
    size_t most_epochs = 0;  // a "curve" of one epoch (the test set scored once) is no curve: no figure
    for (const Series& s : series)
      most_epochs = std::max<size_t>(
          most_epochs, std::count_if(s.group->curve.begin(), s.group->curve.end(),
                                     [&](const CurvePoint& p) { return std::isfinite(get(p).mean); }));
    if (most_epochs < 2) return;
    std::vector<double> means;
    for (const Series& s : series)
      for (const CurvePoint& p : s.group->curve) means.push_back(get(p).mean * scale);
    const bool log_y = wants_log_axis(means);
    for (const Series& s : series) {
      std::ostringstream rows;
      for (const CurvePoint& p : s.group->curve) {
        const MeanStd m = get(p);
        if (!std::isfinite(m.mean)) continue;
        rows << p.epoch << ' ' << number(m.mean * scale) << ' ' << number(m.std * scale) << ' ' << m.n << '\n';
        last_epoch = std::max(last_epoch, p.epoch);
      }
      if (rows.str().empty()) continue;
      dat << (block ? "\n\n" : "") << comment("index " + std::to_string(block) + ": " + s.label) << rows.str();
      const std::string source = block == 0 ? gp_string(stem + ".dat") : "''";
      plot << (block ? ", \\\n     " : "plot ") << source << " index " << block
           << (log_y ? " using 1:($2-sd(3) > 0 ? $2-sd(3) : $2/10):($2+sd(3))" : " using 1:($2-sd(3)):($2+sd(3))")
           << " with filledcurves lc rgb '" << s.colour << "' notitle, \\\n     '' index "
           << block << " using 1:2 with linespoints lw 2 pt 7 ps 0.6 lc rgb '" << s.colour << "' title "
           << gp_string(s.label);
      ++block;
    }
    if (block == 0) return;  // nothing measured per epoch
    plot << '\n';
    const std::string title = task + ": " + quantity + " per epoch";
    const std::string settings = "set title " + gp_string(title + ", mean ± 1 std over seeds") +
                                 "\nset xlabel 'epoch'\nset ylabel " + gp_string(ylabel) +
                                 (last_epoch <= 20 ? "\nset xtics 1" : "") +  // whole epochs, while legible
                                 (log_y ? "\nset logscale y" : "") +
                                 "\nset grid xtics ytics lc rgb '#dddddd'\nset key below horizontal" +
                                 "\nset style fill transparent solid 0.18 noborder\n";
    emit(task, stem, dat.str(), script(stem, title, settings, plot.str(), options_.formats()),
         title + ": mean over seeds, shaded ±1 standard deviation.");
  }

  // One statistic per method: a point with ±1 std error bars, methods along x.
  void per_method(const std::string& task, const std::vector<Series>& series, const std::string& stem,
                  const std::string& quantity, const std::string& unit, double scale,
                  const std::function<MeanStd(const GroupSummary&)>& get) {
    const std::string ylabel = axis_label(quantity, unit);
    std::ostringstream dat;
    dat << comment(ylabel + " per method, task " + task + ": mean and sample std over seeds (std nan for one seed)")
        << comment("columns: x method mean std n colour (0xRRGGBB as an integer)");
    int x = 0;
    for (const Series& s : series) {
      const MeanStd m = get(*s.group);
      if (!std::isfinite(m.mean)) continue;
      dat << x++ << ' ' << dat_label(s.label) << ' ' << number(m.mean * scale) << ' ' << number(m.std * scale) << ' '
          << m.n << ' ' << std::stol(s.colour.substr(1), nullptr, 16) << '\n';
    }
    if (x == 0) return;  // not measured in this task
    const std::string title = task + ": " + quantity + " per method";
    const std::string settings = "set title " + gp_string(title + ", mean ± 1 std over seeds") + "\nset ylabel " +
                                 gp_string(ylabel) + "\nset xrange [-0.5:" + std::to_string(x) +
                                 "-0.5]\nset offsets 0, 0, graph 0.08, graph 0.08\nset xtics nomirror" +
                                 (x > 5 ? " rotate by -25" : "") + "\nset grid ytics lc rgb '#dddddd'\nunset key\n";
    const std::string plot = "plot " + gp_string(stem + ".dat") +
                             " using 1:3:(sd(4)):6:xtic(2) with yerrorbars lc rgb variable lw 2 pt 7 ps 1.5\n";
    emit(task, stem, dat.str(), script(stem, title, settings, plot, options_.formats()),
         title + ": mean over seeds, error bars ±1 standard deviation.");
  }

  // Each method's paired difference from the reference in one quantity: the mean over seeds ± its standard
  // error, against a zero line (a bar that crosses it is no detectable difference).
  void paired(const std::string& task, const std::string& stem, const std::string& quantity,
              const std::string& name, const std::string& unit, double scale) {
    std::ostringstream dat;
    dat << comment(name + " difference (method − reference), task " + task +
                   ": per-seed paired differences, their mean and standard error")
        << comment("columns: x method mean std_error n positive negative colour (0xRRGGBB as an integer)");
    int x = 0;
    std::string against;
    for (const PairedComparison& c : report_.paired) {
      if (c.task != task || c.basis != "reference") continue;
      for (const PairedMetric& m : c.metrics) {
        if (m.name != quantity || !std::isfinite(m.stats.mean)) continue;
        const auto colour = colours_.count(c.group) ? colours_.at(c.group) : kPalette.front();
        dat << x++ << ' ' << dat_label(c.group) << ' ' << number(m.stats.mean * scale) << ' '
            << number(m.stats.std_error * scale) << ' ' << m.stats.n << ' ' << m.stats.positive << ' '
            << m.stats.negative << ' ' << std::stol(colour.substr(1), nullptr, 16) << '\n';
        against = c.against;
      }
    }
    if (x == 0) return;
    const std::string ylabel = axis_label(name + " − " + against, unit);
    const std::string title = task + ": " + name + " paired against " + against;
    const std::string settings = "set title " + gp_string(title + ", mean ± 1 standard error over seeds") +
                                 "\nset ylabel " + gp_string(ylabel) + "\nset xrange [-0.5:" + std::to_string(x) +
                                 "-0.5]\nset offsets 0, 0, graph 0.08, graph 0.08\nset xtics nomirror" +
                                 (x > 5 ? " rotate by -25" : "") +
                                 "\nset grid ytics lc rgb '#dddddd'\nset xzeroaxis lt 1 lc rgb '#333333'\nunset key\n";
    const std::string plot = "plot " + gp_string(stem + ".dat") +
                             " using 1:3:(sd(4)):8:xtic(2) with yerrorbars lc rgb variable lw 2 pt 7 ps 1.5\n";
    emit(task, stem, dat.str(), script(stem, title, settings, plot, options_.formats()),
         title + ": per-seed differences (the seeds share data, initialisation and order), their mean, error bars ±1 "
                 "standard error; a bar across zero is no detectable difference.");
  }

  // The noise-stability gap against σ, one colour per noise law, with its quadratic prediction σ²/2·Tr
  // (one line: every law's table used the same trace); log-log, where both are straight lines of slope 2.
  void noise_stability(const std::string& task, const Series& s, const std::string& stem) {
    static const std::vector<std::string> law_colours{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};
    std::ostringstream dat, plot;
    dat << comment("noise-stability gap E[f(W+U)] − f(W) vs σ²/2·Tr, task " + task + ", " + s.label +
                   ": means over seeds (std nan for one seed)")
        << comment("one block per noise law (gnuplot: index i); columns: sigma gap_mean gap_std predicted_mean n");
    int block = 0;
    for (const GapSummary& g : s.group->gaps) {
      dat << (block ? "\n\n" : "") << comment("index " + std::to_string(block) + ": " + g.law);
      for (const GapRowSummary& r : g.rows)
        dat << number(r.sigma) << ' ' << number(r.gap.mean) << ' ' << number(r.gap.std) << ' '
            << number(r.predicted.mean) << ' ' << r.gap.n << '\n';
      const std::string colour = law_colours[block % law_colours.size()];
      plot << (block ? ", \\\n     " : "plot ") << (block ? "''" : gp_string(stem + ".dat")) << " index " << block
           << " using 1:2:(sd(3)) with yerrorbars lc rgb '" << colour << "' pt 7 ps 0.8 lw 1.5 title "
           << gp_string(g.law + " gap") << ", \\\n     '' index " << block << " using 1:2 with lines lc rgb '" << colour
           << "' lw 1.5 notitle";
      ++block;
    }
    plot << ", \\\n     '' index 0 using 1:4 with lines lc rgb '#333333' lw 2 dt 2 title 'σ²/2·Tr'\n";
    const std::string title = task + ", " + s.label + ": noise stability";
    const std::string settings = "set title " + gp_string(title + " (mean over seeds, ±1 std)") +
                                 "\nset xlabel 'σ'\nset ylabel 'E[f(W+U)] − f(W)'\nset logscale xy\n"
                                 "set grid xtics ytics lc rgb '#dddddd'\nset key top left\n";
    emit(task, stem, dat.str(), script(stem, title, settings, plot.str(), options_.formats()),
         title + ": the antithetic gap per noise law against σ²/2·Tr∇²f (dashed), log-log.");
  }

  // 1-D landscapes: one line per model of `values` (loss or accuracy) against x.
  void landscape_lines(const std::vector<LandscapeGrid>& grids, const std::string& stem, const std::string& quantity,
                       const std::string& x_label, bool accuracy) {
    std::ostringstream dat, plot;
    dat << comment(quantity + " along the direction, one block per model (gnuplot: index i); columns: x value");
    int block = 0;
    std::vector<double> all;
    for (const LandscapeGrid& g : grids) all.insert(all.end(), g.loss.begin(), g.loss.end());
    const bool log_y = !accuracy && wants_log_axis(all);  // the loss far from a minimum: decades above it
    for (const LandscapeGrid& g : grids) {
      dat << (block ? "\n\n" : "") << comment("index " + std::to_string(block) + ": " + g.label);
      const std::vector<double>& values = accuracy ? g.accuracy : g.loss;
      for (size_t i = 0; i < g.xs.size() && i < values.size(); ++i)
        dat << number(g.xs[i]) << ' ' << number(accuracy ? 100 * values[i] : values[i]) << '\n';
      const std::string colour = kPalette[static_cast<size_t>(block) % kPalette.size()];
      plot << (block ? ", \\\n     ''" : "plot " + gp_string(stem + ".dat")) << " index " << block
           << " using 1:2 with lines lw 2 lc rgb '" << colour << "' title " << gp_string(g.label);
      ++block;
    }
    plot << '\n';
    const std::string title = "loss landscape: " + quantity;
    const std::string settings = "set title " + gp_string(title) + "\nset xlabel " + gp_string(x_label) +
                                 "\nset ylabel " + gp_string(accuracy ? "accuracy (%)" : quantity) +
                                 (log_y ? "\nset logscale y" : "") +
                                 "\nset grid xtics ytics lc rgb '#dddddd'\nset key below horizontal\n";
    emit("", stem, dat.str(), script(stem, title, settings, plot.str(), options_.formats()),
         title + " along the same seeded directions for every model.");
  }

  // 2-D landscape of one model: contour lines of the loss over the plane, and a heat map of log10(loss).
  void landscape_plane(const LandscapeGrid& g, const std::string& stem, const std::string& x_label,
                       const std::string& y_label) {
    std::ostringstream dat;
    dat << comment("loss landscape of " + g.label + " over the plane; columns: x y loss accuracy (blank line between rows)");
    for (size_t iy = 0; iy < g.ys.size(); ++iy) {
      for (size_t ix = 0; ix < g.xs.size(); ++ix) {
        const size_t k = iy * g.xs.size() + ix;
        dat << number(g.xs[ix]) << ' ' << number(g.ys[iy]) << ' ' << number(g.loss[k]) << ' ' << number(g.accuracy[k])
            << '\n';
      }
      dat << '\n';
    }
    const std::string axes = "\nset xlabel " + gp_string(x_label) + "\nset ylabel " + gp_string(y_label) +
                             "\nset size ratio -1\n";
    const std::string contour_title = g.label + ": loss contours";
    emit("", stem + "-contour", dat.str(),
         script(stem + "-contour", contour_title,
                "set title " + gp_string(contour_title) + axes +
                    "set view map\nset contour base\n" + contour_levels(g.loss) + "unset surface\nset key outside right\n",
                "splot " + gp_string(stem + "-contour.dat") + " using 1:2:3 with lines lw 1.5 title ''\n", options_.formats()),
         contour_title + " (the model at the origin).");
    const std::string heat_title = g.label + ": log10 loss";
    emit("", stem + "-heatmap", dat.str(),
         script(stem + "-heatmap", heat_title,
                "set title " + gp_string(heat_title) + axes + "set view map\nset palette rgbformulae 33,13,10\n",
                "splot " + gp_string(stem + "-heatmap.dat") + " using 1:2:(log10($3)) with pm3d notitle\n",
                options_.formats()),
         heat_title + " over the plane (the model at the origin).");
  }

  void emit(const std::string& task, const std::string& stem, const std::string& dat, const std::string& gp,
            const std::string& caption) {
    flatmin::write_text_file((fs::path(dir_) / (stem + ".dat")).string(), dat);
    flatmin::write_text_file((fs::path(dir_) / (stem + ".gp")).string(), gp);
    Figure figure{stem, task, caption, {}};
    for (const char* format : {"svg", "png"}) fs::remove(fs::path(dir_) / (stem + "." + format));  // no stale images
    if (options_.run_gnuplot() && !gnuplot_missing_) {
      int status = 0;
      const std::string problem = run_gnuplot(options_.gnuplot(), dir_, stem + ".gp", status);
      if (status == 127) {  // the child could not exec it (gnuplot itself never exits with 127)
        gnuplot_missing_ = true;
        warnings_.push_back(options_.gnuplot() + ": not found; the figures' .gp and .dat files are in " + dir_ +
                            " (install gnuplot, e.g. apt-get install gnuplot-nox, and run `gnuplot NAME.gp` there)");
      } else if (!problem.empty()) {
        warnings_.push_back((fs::path(dir_) / (stem + ".gp")).string() + ": gnuplot failed: " + problem);
      }
      for (const std::string& format : options_.formats())
        if (fs::exists(fs::path(dir_) / (stem + "." + format))) figure.images.push_back(stem + "." + format);
    }
    figures_.push_back(figure);
  }

  const Report& report_;
  std::string dir_;
  const PlotOptions& options_;
  std::vector<std::string>& warnings_;
  std::map<std::string, std::string> colours_;
  std::set<std::string> stems_;
  std::vector<Figure> figures_;
  bool gnuplot_missing_ = false;
};

}  // namespace

std::string file_stem(const std::string& text) {
  std::string out;
  for (unsigned char c : text) out += (std::isalnum(c) || c == '.' || c == '_' || c == '-') ? static_cast<char>(c) : '_';
  if (out.empty() || out.front() == '.') out.insert(out.begin(), '_');  // no hidden files, no ".."
  return out;
}

std::vector<Figure> write_landscape_plots(const std::vector<LandscapeGrid>& grids, const std::string& dir,
                                          const std::string& stem, const std::string& x_label,
                                          const std::string& y_label, const PlotOptions& options,
                                          std::vector<std::string>& warnings) {
  static const Report kNoReport;
  PlotWriter writer(kNoReport, dir, options, warnings);
  return writer.write_landscape(grids, stem, x_label, y_label);
}

std::vector<Figure> write_plots(const Report& report, const std::string& dir, const PlotOptions& options,
                                std::vector<std::string>& warnings) {
  check(!options.formats().empty(), "--formats: give svg, png or both");
  for (const std::string& format : options.formats())
    check(format == "svg" || format == "png", "--formats: '" + format + "' is not svg or png");
  return PlotWriter(report, dir, options, warnings).write_all();
}

}  // namespace flatmin::reports
