#pragma once
/// A sweep's results, read from its root directory (manifest.json, selection.json and each run's
/// summary.json, metrics.csv, geometry.json) and aggregated over seeds per (task, method, setting).
/// Standard library only: reports build without LibTorch.

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "flatmin/reports/statistics.h"

namespace flatmin::reports {

/// The one format of a sweep root this reader understands (manifest.json's "format").
inline constexpr const char* kSweepFormat = "flatmin-sweep/1";

// ------------------------------------------------------------------------------------------------ stats

/// Mean and sample standard deviation (divisor n − 1) of the finite values of a sample; non-finite values
/// (a run without that measurement) are left out and not counted. With n = 1 the standard deviation is NaN —
/// undefined, shown as "n = 1" without a ± rather than a misleading ± 0; with n = 0 both are NaN.
struct MeanStd {
  double mean = std::numeric_limits<double>::quiet_NaN();
  double std = std::numeric_limits<double>::quiet_NaN();
  int64_t n = 0;
};
MeanStd mean_std(const std::vector<double>& values);

/// 100·(value − reference)/|reference|: the relative change in percent; NaN when either is NaN or the
/// reference is 0.
double percent_change(double value, double reference);

// ------------------------------------------------------------------------------------------------ input

/// One epoch of a run's metrics.csv (the columns the report uses; NaN where absent or not measured).
struct EpochPoint {
  int64_t epoch = 0;
  double test_acc = std::numeric_limits<double>::quiet_NaN();
  double test_loss = std::numeric_limits<double>::quiet_NaN();
  double train_loss = std::numeric_limits<double>::quiet_NaN();  ///< on the scored training examples
  double val_acc = std::numeric_limits<double>::quiet_NaN();     ///< scored every epoch
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  double objective = std::numeric_limits<double>::quiet_NaN();   ///< mean training loss at the method's points
  double trace = std::numeric_limits<double>::quiet_NaN();    ///< geo_hessian_trace
  double lambda1 = std::numeric_limits<double>::quiet_NaN();  ///< geo_lambda1
  std::map<std::string, double> extra;  ///< the run's extra quantities (RunRecord::extra) at this epoch
};

/// One σ of a perturbation-gap table (geometry.json "perturbation_gaps", `flatmin geometry --measures gap`).
struct GapPoint {
  double sigma = 0;
  double gap = std::numeric_limits<double>::quiet_NaN();            ///< E[f(W+U)] − f(W), mean over draws
  double gap_std_error = std::numeric_limits<double>::quiet_NaN();  ///< of that mean
  double predicted = std::numeric_limits<double>::quiet_NaN();      ///< σ²/2·Tr∇²f(W)
  double relative_error = std::numeric_limits<double>::quiet_NaN(); ///< (predicted − gap)/gap
};

/// One noise law's gap table of one model.
struct GapTable {
  std::string law;
  double loss = std::numeric_limits<double>::quiet_NaN();   ///< f(W) on the measured sample
  double trace = std::numeric_limits<double>::quiet_NaN();  ///< the Tr∇²f the prediction used
  double rss = std::numeric_limits<double>::quiet_NaN();    ///< Σ(gap − predicted)²/Σgap² over the rows
  std::vector<GapPoint> rows;
};

/// One run of the manifest with what its directory holds. Numbers are NaN where the file or key is absent.
struct RunRecord {
  std::string id, dir, stage, method, setting_name, status, error;
  std::string task;  ///< "default" for the runs of an experiment without tasks
  std::string setting_json;  ///< the varied hyperparameters, as compact JSON ({} if none)
  std::vector<std::string> roles;
  int64_t seed = 0;
  int64_t exit_code = 0;
  double manifest_seconds = std::numeric_limits<double>::quiet_NaN();
  // summary.json (accuracies are fractions in [0, 1])
  double test_acc = std::numeric_limits<double>::quiet_NaN();
  double test_loss = std::numeric_limits<double>::quiet_NaN();
  double val_acc = std::numeric_limits<double>::quiet_NaN();
  double train_acc = std::numeric_limits<double>::quiet_NaN();
  double train_loss = std::numeric_limits<double>::quiet_NaN();
  double gradient_evaluations = std::numeric_limits<double>::quiet_NaN();
  double seconds = std::numeric_limits<double>::quiet_NaN();  ///< total_seconds
  // geometry.json
  double trace = std::numeric_limits<double>::quiet_NaN();            ///< trace.estimate
  double trace_std_error = std::numeric_limits<double>::quiet_NaN();  ///< trace.std_error
  double lambda1 = std::numeric_limits<double>::quiet_NaN();          ///< eigenvalues.values[0]
  double lambda1_residual = std::numeric_limits<double>::quiet_NaN();
  std::vector<GapTable> gaps;     ///< geometry.json's perturbation-gap tables, one per noise law
  /// summary.json's "extra": quantities of a run kind the report has no column for (matrix sensing's
  /// recovery error, ...), in the file's order; each is also read per epoch from the same-named
  /// metrics.csv column when there is one.
  std::vector<std::pair<std::string, double>> extra;
  std::vector<EpochPoint> curve;  ///< metrics.csv, one point per epoch

  bool has_role(const std::string& role) const;
  bool done() const { return status == "done"; }
};

/// One validation candidate of selection.json.
struct Candidate {
  std::string setting_name;
  double value = std::numeric_limits<double>::quiet_NaN();
  int64_t runs = 0;
};

/// The hyperparameter selection of one (task, method): every candidate's validation value and the choice.
struct SelectionGroup {
  std::string task, method, chosen;
  std::vector<Candidate> candidates;
  /// The chosen setting's grid edges ("sigma=0.012 is the largest tried"): its optimum may lie beyond.
  std::vector<std::string> edges;
};

/// A sweep root as read from disk.
struct Sweep {
  std::string root;
  std::string name, file, description, command;  ///< manifest.json's "experiment"
  std::string select_metric, select_mode;        ///< empty when the sweep selects nothing
  std::string highlight;                         ///< "report.highlight"; empty when absent
  /// "report.reference": the method every other is compared with seed by seed; a sweep written before it
  /// existed: "sgd" when that method has final runs, else empty.
  std::string reference;
  /// "report.pairs": further (method, other) comparisons, paired by seed; empty when absent.
  std::vector<std::pair<std::string, std::string>> pairs;
  bool complete = true;  ///< manifest "complete": false while runs are still to be planned (selection pending)
  std::vector<RunRecord> runs;                   ///< in manifest order
  std::vector<SelectionGroup> selection;         ///< selection.json's groups
  /// Problems that did not stop the report (a done run without summary.json, a corrupt geometry.json, ...),
  /// one line each naming the file.
  std::vector<std::string> warnings;
};

/// Reads `root`. Throws flatmin::Error (one line naming the file) when the root, manifest.json or
/// selection.json is missing or malformed. Per-run problems become warnings: a run marked done whose
/// summary.json is missing or corrupt is reported as failed; a missing metrics.csv leaves its curves empty,
/// a missing geometry.json its trace and λ1 (no warning: geometry is optional).
Sweep load_sweep(const std::string& root);

/// Reads a metrics.csv (header, one row per epoch; columns found by name; "nan" and empty cells are NaN),
/// and the `extra` columns into EpochPoint::extra where present.
/// Throws flatmin::Error naming the file when it cannot be read or has no epoch column.
std::vector<EpochPoint> read_metrics_csv(const std::string& path, const std::vector<std::string>& extra = {});

// ------------------------------------------------------------------------------------------ aggregation

/// Mean ± std over seeds at one epoch.
struct CurvePoint {
  int64_t epoch = 0;
  MeanStd test_acc, test_loss, trace, lambda1;
  MeanStd gap_loss;  ///< test loss − train loss (the generalisation gap)
  MeanStd train_loss;
  MeanStd val_acc, val_loss, objective;
  std::map<std::string, MeanStd> extra;
};

/// One σ of a gap table over the seeds of a group.
struct GapRowSummary {
  double sigma = 0;
  MeanStd gap, gap_std_error, predicted, relative_error;
};

/// One noise law's gap table over the seeds of a group (rows matched by σ).
struct GapSummary {
  std::string law;
  MeanStd loss, trace, rss;
  std::vector<GapRowSummary> rows;
};

/// The runs of one (task, method, setting) with role "final": statistics over those that are done.
struct GroupSummary {
  std::string task, method, setting_name;
  int64_t seeds = 0;  ///< done runs
  MeanStd test_acc, test_loss;
  MeanStd gap_loss;  ///< test loss − train loss
  MeanStd gap_acc;   ///< train accuracy − test accuracy (fractions)
  MeanStd trace;     ///< over the runs with a geometry.json; trace.std is the spread over seeds
  double trace_mean_std_error = std::numeric_limits<double>::quiet_NaN();  ///< mean of the per-run SEs
  MeanStd lambda1;
  MeanStd gradient_evaluations, seconds;
  int64_t failed = 0, diverged = 0;
  int64_t pending = 0;  ///< not finished: pending, running or interrupted (may still run or resume)
  std::vector<size_t> runs;  ///< indices into Sweep::runs, done or not
  std::vector<CurvePoint> curve;  ///< per epoch, over the done runs
  std::vector<GapSummary> gaps;   ///< per noise law measured, in the runs' order
  std::vector<std::pair<std::string, MeanStd>> extra;  ///< RunRecord::extra over the done runs, first-seen order
};

/// Per task, the highlighted method against the others (NaN where a side has no value):
/// - accuracy: test accuracy difference in percentage points vs the best other method by mean test accuracy;
/// - *_vs_best_accuracy: relative change (%) of the mean trace / λ1 vs that same best-accuracy method;
/// - *_vs_lowest: relative change (%) vs the other method with the lowest mean trace / λ1.
/// Negative trace/λ1 changes mean the highlighted method found flatter minima.
struct Comparison {
  std::string task;  ///< "average" for the mean over tasks
  /// The groups compared, named by method ("method (setting)" when the method has several in the task).
  std::string highlight, best_accuracy_method, lowest_trace_method, lowest_lambda1_method;
  double accuracy_points = std::numeric_limits<double>::quiet_NaN();
  double trace_vs_best_accuracy = std::numeric_limits<double>::quiet_NaN();
  double lambda1_vs_best_accuracy = std::numeric_limits<double>::quiet_NaN();
  double trace_vs_lowest = std::numeric_limits<double>::quiet_NaN();
  double lambda1_vs_lowest = std::numeric_limits<double>::quiet_NaN();
};

/// One quantity's per-seed differences between two groups of a task: group − against, over the seeds
/// both have done with a finite value (seeds share data, initialisation and order: the comparison is paired).
struct PairedMetric {
  /// "test_acc", "test_loss", "gap_loss", "gap_acc" (as in GroupSummary), "trace", "lambda1", or the name
  /// of a run's extra quantity.
  std::string name;
  PairedStats stats;  ///< in the quantity's own units (accuracies as fractions)
  double against_mean = std::numeric_limits<double>::quiet_NaN();  ///< `against` over the same seeds
};

/// A group against another group of the same task, paired by seed.
struct PairedComparison {
  std::string task;
  std::string group, against;  ///< labels: the method, "method (setting)" where the task has several of it
  /// Why `against`: "reference" (the sweep's reference method), "best other" (the other method with the
  /// best mean test accuracy, when that is not the reference) or "pair" (report.pairs names it).
  std::string basis;
  std::vector<PairedMetric> metrics;  ///< the quantities with at least one pair, in a fixed order
};

struct Report {
  std::vector<std::string> tasks;  ///< in manifest order
  std::vector<GroupSummary> groups;  ///< by task, then methods in manifest order
  std::vector<Comparison> comparisons;  ///< one per task with the highlighted method and another method
  /// The mean over tasks of each per-task change, over the tasks where it is finite (task = "average",
  /// highlight = the method, the other names empty); absent when `comparisons` is empty.
  std::optional<Comparison> average;
  /// Per task: every group against the reference method's group (its best by mean test accuracy) and
  /// against the best other method, paired by seed; empty without a reference and with fewer than two groups.
  std::vector<PairedComparison> paired;
  std::vector<const GroupSummary*> groups_of(const std::string& task) const;
  /// A group's name in tables and legends: its method, with its setting where the task has several of it.
  std::string label(const GroupSummary& g) const;
};

/// Groups the final runs of `sweep` by (task, method, setting) and compares the highlighted method per task.
/// When a method has several final settings in a task (a sweep without selection), the highlighted method's
/// best one by mean test accuracy is compared, and every group of another method is a candidate; such
/// groups are named "method (setting)".
Report aggregate(const Sweep& sweep);

}  // namespace flatmin::reports
