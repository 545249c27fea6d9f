#pragma once
/// The report's tables, built once as text cells and rendered as Markdown (results.md), HTML (html.h) and
/// aligned plain text (the command's summary); and the machine-readable results.csv and results.json.

#include <string>
#include <vector>

#include "flatmin/reports/aggregate.h"

namespace flatmin::reports {

enum class TableKind { kTask, kNoiseStability, kPaired, kComparison, kSelection };

/// A table of display strings (numbers already formatted, units in the header).
struct Table {
  TableKind kind = TableKind::kTask;
  std::string title;
  std::string task;  ///< the task of a kTask table
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<bool> emphasized;    ///< per row: the highlighted method, the chosen candidate
  std::vector<std::string> notes;  ///< lines under the table: what the columns mean
};

/// One table per task (rows = the final groups, in manifest order), a noise-stability table per task whose
/// runs measured the perturbation gap (rows = method × noise law × σ), a paired-differences table per task
/// (rows = comparison × quantity), then the highlighted method's relative changes (when the manifest names
/// one), then the selection grid (when the sweep selected).
std::vector<Table> result_tables(const Sweep& sweep, const Report& report);

/// "Averaged over 2 tasks, nso vs ...": the highlight summary in one sentence; empty without comparisons.
std::string highlight_sentence(const Report& report);

/// The per-task tables' columns the command prints (method, setting, seeds, test accuracy, trace, λ1, and
/// the runs not done), aligned for a terminal.
std::string text_summary(const Report& report, const std::vector<Table>& tables);

/// results.md: the experiment, the highlight sentence, every table, and the warnings.
std::string results_markdown(const Sweep& sweep, const Report& report, const std::vector<Table>& tables);

/// results.csv: one row per group, every statistic at full precision (%.17g; accuracies as fractions;
/// "nan" where undefined).
std::string results_csv(const Report& report);

/// paired.csv: one row per paired comparison and quantity (Report::paired), at full precision: task,
/// method, against, basis, quantity, n, mean, std, std_error, positive, negative, t_p, sign_p, against_mean.
std::string paired_csv(const Report& report);

/// A quantity's name for people: "test acc (pts)", "Hessian trace", or the name itself.
std::string quantity_label(const std::string& name);

/// results.json: the experiment, the groups (each statistic as {mean, std, n}; null where undefined), the
/// comparisons and their average, the selection grid, every run's values, the warnings.
std::string results_json(const Sweep& sweep, const Report& report);

/// "81.23 ± 0.45" (values × `scale`, printf `format`; with a %g format the spread gets two significant
/// digits: "11.5 ± 1.4"); the mean alone for n = 1 (or a zero spread when `hide_zero_spread`), " (n=2)"
/// appended when n < `expected_n`, "—" for n = 0.
std::string format_mean_std(const MeanStd& s, const char* format, double scale = 1, int64_t expected_n = 0,
                            bool hide_zero_spread = false);

}  // namespace flatmin::reports
