#include "flatmin/reports/tables.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

#include <nlohmann/json.hpp>

#include "flatmin/core/runtime.h"

namespace flatmin::reports {
namespace {

using json = nlohmann::ordered_json;
const char* const kNone = "—";

std::string format(double value, const char* spec) {
  if (!std::isfinite(value)) return kNone;
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, spec, value);
  return buffer;
}

// "+1.50" / "-26.7%": a signed change; "—" when undefined.
std::string signed_change(double value, const char* spec, const char* unit) {
  if (!std::isfinite(value)) return kNone;
  return (value >= 0 ? "+" : "") + format(value, spec) + unit;
}

std::string full_precision(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.17g", value);
  return buffer;
}

std::string csv_text(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char c : s) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

// Terminal columns of UTF-8 text: one per code point (±, λ, — are one column wide).
size_t display_width(const std::string& s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

std::string markdown_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out;
}

// Right-aligned in Markdown: a column whose cells are all numbers (or dashes / check marks).
bool numeric_column(const Table& t, size_t c) {
  for (const auto& row : t.rows) {
    const std::string& cell = row[c];
    if (cell.empty() || cell == kNone || cell == "✓") continue;
    if (!std::isdigit(static_cast<unsigned char>(cell[0])) && cell[0] != '+' && cell[0] != '-') return false;
  }
  return true;
}

json stat_json(const MeanStd& s) { return {{"mean", s.mean}, {"std", s.std}, {"n", s.n}}; }

json extra_json(const GroupSummary& g) {
  json j = json::object();
  for (const auto& [name, stat] : g.extra) j[name] = stat_json(stat);
  return j;
}

json comparison_json(const Comparison& c) {
  return {{"task", c.task},
          {"highlight", c.highlight},
          {"best_accuracy_method", c.best_accuracy_method},
          {"accuracy_points", c.accuracy_points},
          {"trace_vs_best_accuracy_percent", c.trace_vs_best_accuracy},
          {"lambda1_vs_best_accuracy_percent", c.lambda1_vs_best_accuracy},
          {"lowest_trace_method", c.lowest_trace_method},
          {"trace_vs_lowest_percent", c.trace_vs_lowest},
          {"lowest_lambda1_method", c.lowest_lambda1_method},
          {"lambda1_vs_lowest_percent", c.lambda1_vs_lowest}};
}

std::string not_done(const GroupSummary& g) {
  if (g.failed + g.diverged + g.pending == 0) return kNone;
  return std::to_string(g.failed) + " / " + std::to_string(g.diverged) + " / " + std::to_string(g.pending);
}

Table task_table(const Sweep& sweep, const Report& report, const std::string& task, const std::string& highlight) {
  Table t;
  t.title = "Task " + task;
  t.task = task;
  t.header = {"method", "setting", "seeds", "test acc (%)", "test loss", "loss gap", "acc gap (pts)", "Hessian trace",
              "trace SE", "λ1", "grad evals", "time (s)", "failed / diverged / pending"};
  // The runs' extra quantities (summary.json "extra"), a column each, before the cost columns.
  std::vector<std::string> extra;
  for (const GroupSummary* g : report.groups_of(task))
    for (const auto& [name, stat] : g->extra)
      if (std::find(extra.begin(), extra.end(), name) == extra.end()) extra.push_back(name);
  t.header.insert(t.header.begin() + 10, extra.begin(), extra.end());
  for (const GroupSummary* g : report.groups_of(task)) {
    bool on_edge = false;
    for (const SelectionGroup& s : sweep.selection)
      on_edge = on_edge || (s.task == g->task && s.method == g->method && s.chosen == g->setting_name && !s.edges.empty());
    std::vector<std::string> row{g->method, g->setting_name + (on_edge ? " (grid edge)" : ""), std::to_string(g->seeds),
                                 format_mean_std(g->test_acc, "%.2f", 100, g->seeds),
                                 format_mean_std(g->test_loss, "%.4g", 1, g->seeds),
                                 format_mean_std(g->gap_loss, "%.4g", 1, g->seeds),
                                 format_mean_std(g->gap_acc, "%.2f", 100, g->seeds),
                                 format_mean_std(g->trace, "%.4g", 1, g->seeds),
                                 format(g->trace_mean_std_error, "%.2g"),
                                 format_mean_std(g->lambda1, "%.4g", 1, g->seeds)};
    for (const std::string& name : extra) {
      const auto it = std::find_if(g->extra.begin(), g->extra.end(), [&](const auto& e) { return e.first == name; });
      row.push_back(it == g->extra.end() ? kNone : format_mean_std(it->second, "%.4g", 1, g->seeds));
    }
    for (const std::string& cell : {format_mean_std(g->gradient_evaluations, "%.0f", 1, g->seeds, true),
                                    format_mean_std(g->seconds, "%.1f", 1, g->seeds), not_done(*g)})
      row.push_back(cell);
    t.rows.push_back(std::move(row));
    t.emphasized.push_back(!highlight.empty() && g->method == highlight);
  }
  t.notes = {"Mean ± sample standard deviation (n − 1) over the seeds that finished; no ± with one seed; "
             "(n=k) where only k of them have the value.",
             "loss gap = test loss − train loss; acc gap = train − test accuracy in points; Hessian trace and λ1 "
             "from each run's geometry.json (trace SE: the mean of the runs' standard errors); time: wall "
             "seconds per run. (grid edge): the chosen setting lies on an edge of its selection grid."};
  return t;
}

// The NSO review version's Table 2 per task: the measured gap beside σ²/2·Tr, per method and noise law.
Table noise_stability_table(const Report& report, const std::string& task) {
  Table t;
  t.kind = TableKind::kNoiseStability;
  t.title = "Noise stability, task " + task;
  t.task = task;
  t.header = {"method", "noise", "σ", "gap E[f(W+U)] − f(W)", "gap SE", "σ²/2·Tr", "rel. error (%)", "RSS (%)",
              "f(W)", "Tr"};
  for (const GroupSummary* g : report.groups_of(task)) {
    for (const GapSummary& law : g->gaps) {
      for (size_t i = 0; i < law.rows.size(); ++i) {
        const GapRowSummary& r = law.rows[i];
        const bool first = i == 0;  // the table-wide numbers once per block
        t.rows.push_back({first ? g->method : "", first ? law.law : "", format(r.sigma, "%g"),
                          format_mean_std(r.gap, "%.4g", 1, g->seeds), format(r.gap_std_error.mean, "%.2g"),
                          format_mean_std(r.predicted, "%.4g", 1, g->seeds),
                          format_mean_std(r.relative_error, "%+.1f", 100, g->seeds),
                          first ? format_mean_std(law.rss, "%.2f", 100, g->seeds) : "",
                          first ? format_mean_std(law.loss, "%.4g", 1, g->seeds) : "",
                          first ? format_mean_std(law.trace, "%.4g", 1, g->seeds) : ""});
        t.emphasized.push_back(false);
      }
    }
  }
  t.notes = {"gap: the antithetic mean of (f(W+U) + f(W−U))/2 − f(W) over the draws (gap SE: its standard error, "
             "mean over seeds); σ²/2·Tr: the second-order prediction from the Hutchinson trace Tr of the same model "
             "on the same examples; rel. error = (σ²/2·Tr − gap)/gap.",
             "RSS = Σ(gap − σ²/2·Tr)²/Σgap² over the block's σ (the review version's Table 2 statistic); each "
             "column's mean ± std is over the seeds (one model each)."};
  return t;
}

bool is_accuracy(const std::string& quantity) { return quantity == "test_acc" || quantity == "gap_acc"; }

// Per task, every paired comparison: the per-seed differences of each quantity, with their tests.
Table paired_table(const Sweep& sweep, const Report& report, const std::string& task) {
  Table t;
  t.kind = TableKind::kPaired;
  t.title = "Paired differences, task " + task;
  t.task = task;
  t.header = {"method", "against", "quantity", "seeds", "difference", "relative", "seeds + / −", "p (paired t)",
              "p (sign)"};
  for (const PairedComparison& c : report.paired) {
    if (c.task != task) continue;
    bool first = true;
    for (const PairedMetric& m : c.metrics) {
      const bool points = is_accuracy(m.name);
      const double scale = points ? 100 : 1;
      const char* spec = points ? "%+.2f" : "%+.4g";
      std::string difference = format(m.stats.mean * scale, spec);
      if (std::isfinite(m.stats.std_error))
        difference += " ± " + format(m.stats.std_error * scale, points ? "%.2f" : "%.2g");
      t.rows.push_back({first ? c.group : "", first ? c.against + (c.basis == "best other" ? " (best other)" : "") : "",
                        quantity_label(m.name), std::to_string(m.stats.n), difference,
                        points || m.against_mean == 0 ? ""
                                                      : signed_change(100 * m.stats.mean / std::fabs(m.against_mean),
                                                                      "%.1f", "%"),
                        std::to_string(m.stats.positive) + " / " + std::to_string(m.stats.negative),
                        format(m.stats.t_p, "%.3g"), format(m.stats.sign_p, "%.3g")});
      t.emphasized.push_back(false);
      first = false;
    }
  }
  t.notes = {"difference: the mean over seeds of (method − against) computed seed by seed (the seeds share the "
             "data, the initialisation and the order), ± its standard error (SD/√n); accuracies in points. "
             "relative: that mean as a percentage of against's mean over the same seeds.",
             "against: the reference method (" + (sweep.reference.empty() ? std::string("none") : sweep.reference) +
             ", its setting with the best mean test accuracy) and, where it is another, the other method with the "
             "best mean test accuracy" + std::string(sweep.pairs.empty() ? "" : "; also the pairs the experiment names") +
             ". seeds + / −: how many differences are positive / negative. p: two-sided, "
             "the paired t test (n − 1 degrees of freedom) and the exact sign test (zero differences left out)."};
  return t;
}

Table comparison_table(const Report& report) {
  Table t;
  t.kind = TableKind::kComparison;
  const std::string h = report.comparisons.front().highlight;
  t.title = "Relative change of " + h;
  t.header = {"task", "best other by test acc", "test acc (pts)", "trace vs it", "λ1 vs it", "lowest-trace other",
              "trace vs it", "lowest-λ1 other", "λ1 vs it"};
  auto row = [](const Comparison& c) {
    return std::vector<std::string>{c.task,
                                    c.best_accuracy_method.empty() ? kNone : c.best_accuracy_method,
                                    signed_change(c.accuracy_points, "%.2f", ""),
                                    signed_change(c.trace_vs_best_accuracy, "%.1f", "%"),
                                    signed_change(c.lambda1_vs_best_accuracy, "%.1f", "%"),
                                    c.lowest_trace_method.empty() ? kNone : c.lowest_trace_method,
                                    signed_change(c.trace_vs_lowest, "%.1f", "%"),
                                    c.lowest_lambda1_method.empty() ? kNone : c.lowest_lambda1_method,
                                    signed_change(c.lambda1_vs_lowest, "%.1f", "%")};
  };
  for (const Comparison& c : report.comparisons) {
    t.rows.push_back(row(c));
    t.emphasized.push_back(false);
  }
  if (report.average) {
    t.rows.push_back(row(*report.average));
    t.emphasized.push_back(true);
  }
  t.notes = {"test acc: " + h + "'s mean test accuracy minus that of the other method with the best mean test "
             "accuracy, in percentage points.",
             "trace / λ1 vs it: relative change (%) of " + h + "'s mean Hessian trace / λ1 against that same "
             "best-accuracy method; the last four columns: against the other method with the lowest mean trace "
             "(λ1). Negative = flatter. average: the mean of the per-task values over the tasks that have them."};
  return t;
}

Table selection_table(const Sweep& sweep) {
  Table t;
  t.kind = TableKind::kSelection;
  t.title = "Selection grid (" + sweep.select_metric + ", " + sweep.select_mode + ")";
  t.header = {"task", "method", "setting", sweep.select_metric, "runs", "chosen", "on the grid's edge"};
  for (const SelectionGroup& g : sweep.selection) {
    for (const Candidate& c : g.candidates) {
      const bool chosen = c.setting_name == g.chosen;
      std::string edges;
      for (const std::string& e : g.edges) edges += (edges.empty() ? "" : "; ") + e;
      t.rows.push_back({g.task, g.method, c.setting_name, format(c.value, "%.4f"), std::to_string(c.runs),
                        chosen ? "✓" : "", chosen ? edges : ""});
      t.emphasized.push_back(chosen);
    }
  }
  t.notes = {"Validation value of each candidate setting (mean over its grid runs); ✓ the setting chosen for "
             "the final runs (" + sweep.select_mode + " " + sweep.select_metric + "; ties: the middle one of the "
             "tied settings in grid order).",
             "on the grid's edge: the chosen value is the smallest or largest of its axis, so the optimum may lie "
             "beyond it (select.extend_edges widens such an axis automatically)."};
  return t;
}

}  // namespace

std::string format_mean_std(const MeanStd& s, const char* spec, double scale, int64_t expected_n,
                            bool hide_zero_spread) {
  if (s.n == 0) return kNone;
  std::string text = format(s.mean * scale, spec);
  const bool significant_digits = spec[std::strlen(spec) - 1] == 'g';  // the spread: two of them are enough
  if (std::isfinite(s.std) && !(hide_zero_spread && s.std == 0))
    text += " ± " + format(s.std * scale, significant_digits ? "%.2g" : spec);
  if (s.n < expected_n) text += " (n=" + std::to_string(s.n) + ")";
  return text;
}

std::vector<Table> result_tables(const Sweep& sweep, const Report& report) {
  std::vector<Table> tables;
  for (const std::string& task : report.tasks) tables.push_back(task_table(sweep, report, task, sweep.highlight));
  for (const std::string& task : report.tasks) {
    Table gaps = noise_stability_table(report, task);
    if (!gaps.rows.empty()) tables.push_back(std::move(gaps));
  }
  for (const std::string& task : report.tasks) {
    Table paired = paired_table(sweep, report, task);
    if (!paired.rows.empty()) tables.push_back(std::move(paired));
  }
  if (!report.comparisons.empty()) tables.push_back(comparison_table(report));
  if (!sweep.selection.empty()) tables.push_back(selection_table(sweep));
  return tables;
}

std::string highlight_sentence(const Report& report) {
  if (!report.average) return "";
  const Comparison& a = *report.average;
  const size_t tasks = report.comparisons.size();
  return "Averaged over " + std::to_string(tasks) + (tasks == 1 ? " task" : " tasks") + ", " + a.highlight +
         " vs the best other method by test accuracy: test accuracy " +
         signed_change(a.accuracy_points, "%.2f", " points") + ", Hessian trace " +
         signed_change(a.trace_vs_best_accuracy, "%.1f", "%") + ", λ1 " +
         signed_change(a.lambda1_vs_best_accuracy, "%.1f", "%") +
         "; vs the other method with the lowest trace (λ1): trace " + signed_change(a.trace_vs_lowest, "%.1f", "%") +
         ", λ1 " + signed_change(a.lambda1_vs_lowest, "%.1f", "%") + ".";
}

std::string text_summary(const Report& report, const std::vector<Table>& tables) {
  const std::vector<std::string> wanted = {"method", "setting", "seeds", "test acc (%)", "Hessian trace", "λ1",
                                           "failed / diverged / pending"};
  std::ostringstream out;
  for (const Table& t : tables) {
    if (t.kind != TableKind::kTask) continue;
    std::vector<size_t> columns;
    for (const std::string& name : wanted) {
      const auto it = std::find(t.header.begin(), t.header.end(), name);
      if (it != t.header.end()) columns.push_back(static_cast<size_t>(it - t.header.begin()));
    }
    std::vector<size_t> width(columns.size(), 0);
    auto measure = [&](const std::vector<std::string>& row) {
      for (size_t c = 0; c < columns.size(); ++c) width[c] = std::max(width[c], display_width(row[columns[c]]));
    };
    measure(t.header);
    for (const auto& row : t.rows) measure(row);
    auto print = [&](const std::vector<std::string>& row, bool mark) {
      out << (mark ? "* " : "  ");
      for (size_t c = 0; c < columns.size(); ++c) {
        const std::string& cell = row[columns[c]];
        out << cell << (c + 1 < columns.size() ? std::string(width[c] - display_width(cell) + 2, ' ') : "");
      }
      out << '\n';
    };
    out << (out.tellp() > 0 ? "\n" : "") << t.title << '\n';
    print(t.header, false);
    for (size_t r = 0; r < t.rows.size(); ++r) print(t.rows[r], t.emphasized[r]);
  }
  const std::string sentence = highlight_sentence(report);
  if (!sentence.empty()) out << sentence << '\n';
  return out.str();
}

std::string results_markdown(const Sweep& sweep, const Report& report, const std::vector<Table>& tables) {
  std::ostringstream md;
  md << "# " << (sweep.name.empty() ? "Sweep" : markdown_cell(sweep.name)) << "\n\n";
  if (!sweep.description.empty()) md << markdown_cell(sweep.description) << "\n\n";
  if (!sweep.command.empty()) md << "Command: `" << sweep.command << "`";
  if (!sweep.file.empty()) md << (sweep.command.empty() ? "" : " · ") << "experiment file: `" << sweep.file << "`";
  if (!sweep.command.empty() || !sweep.file.empty()) md << "\n\n";
  if (!sweep.complete) md << "_The sweep is not complete: runs remain to be planned or run; these numbers will change._\n\n";
  const std::string sentence = highlight_sentence(report);
  if (!sentence.empty()) md << "**" << sentence << "**\n\n";
  for (const Table& t : tables) {
    md << "## " << markdown_cell(t.title) << "\n\n|";
    for (const std::string& h : t.header) md << ' ' << markdown_cell(h) << " |";
    md << "\n|";
    for (size_t c = 0; c < t.header.size(); ++c) md << (numeric_column(t, c) ? " ---: |" : " --- |");
    md << '\n';
    for (size_t r = 0; r < t.rows.size(); ++r) {
      md << '|';
      for (const std::string& cell : t.rows[r]) {
        const bool bold = t.emphasized[r] && !cell.empty();
        md << ' ' << (bold ? "**" : "") << markdown_cell(cell) << (bold ? "**" : "") << " |";
      }
      md << '\n';
    }
    md << '\n';
    for (const std::string& note : t.notes) md << "_" << markdown_cell(note) << "_\n";
    md << '\n';
  }
  if (!sweep.warnings.empty()) {
    md << "## Warnings\n\n";
    for (const std::string& w : sweep.warnings) md << "- " << markdown_cell(w) << '\n';
    md << '\n';
  }
  return md.str();
}

std::string results_csv(const Report& report) {
  std::ostringstream csv;
  const std::vector<std::pair<std::string, MeanStd GroupSummary::*>> stats = {
      {"test_acc", &GroupSummary::test_acc},   {"test_loss", &GroupSummary::test_loss},
      {"gap_loss", &GroupSummary::gap_loss},   {"gap_acc", &GroupSummary::gap_acc},
      {"trace", &GroupSummary::trace},         {"lambda1", &GroupSummary::lambda1},
      {"gradient_evaluations", &GroupSummary::gradient_evaluations}, {"seconds", &GroupSummary::seconds}};
  csv << "task,method,setting,seeds,failed,diverged,pending";
  for (const auto& [name, field] : stats) csv << ',' << name << "_mean," << name << "_std," << name << "_n";
  csv << ",trace_mean_std_error\n";
  for (const GroupSummary& g : report.groups) {
    csv << csv_text(g.task) << ',' << csv_text(g.method) << ',' << csv_text(g.setting_name) << ',' << g.seeds << ','
        << g.failed << ',' << g.diverged << ',' << g.pending;
    for (const auto& [name, field] : stats) {
      const MeanStd& s = g.*field;
      csv << ',' << full_precision(s.mean) << ',' << full_precision(s.std) << ',' << s.n;
    }
    csv << ',' << full_precision(g.trace_mean_std_error) << '\n';
  }
  return csv.str();
}

std::string quantity_label(const std::string& name) {
  static const std::vector<std::pair<std::string, std::string>> labels = {
      {"test_acc", "test acc (pts)"}, {"test_loss", "test loss"},   {"gap_loss", "loss gap"},
      {"gap_acc", "acc gap (pts)"},   {"trace", "Hessian trace"}, {"lambda1", "λ1"}};
  for (const auto& [key, label] : labels)
    if (key == name) return label;
  return name;
}

std::string paired_csv(const Report& report) {
  std::ostringstream csv;
  csv << "task,method,against,basis,quantity,n,mean,std,std_error,positive,negative,t_p,sign_p,against_mean\n";
  for (const PairedComparison& c : report.paired)
    for (const PairedMetric& m : c.metrics)
      csv << csv_text(c.task) << ',' << csv_text(c.group) << ',' << csv_text(c.against) << ',' << csv_text(c.basis)
          << ',' << csv_text(m.name) << ',' << m.stats.n << ',' << full_precision(m.stats.mean) << ','
          << full_precision(m.stats.std) << ',' << full_precision(m.stats.std_error) << ',' << m.stats.positive << ','
          << m.stats.negative << ',' << full_precision(m.stats.t_p) << ',' << full_precision(m.stats.sign_p) << ','
          << full_precision(m.against_mean) << '\n';
  return csv.str();
}

std::string results_json(const Sweep& sweep, const Report& report) {
  json j;
  j["format"] = "flatmin-report/1";
  j["flatmin"] = version_string();  // what drew the report (the runs' own versions are in their config.json)
  j["experiment"] = {{"name", sweep.name}, {"file", sweep.file}, {"description", sweep.description},
                     {"command", sweep.command}};
  j["select"] = sweep.select_metric.empty() ? json(nullptr)
                                            : json{{"metric", sweep.select_metric}, {"mode", sweep.select_mode}};
  j["highlight"] = sweep.highlight.empty() ? json(nullptr) : json(sweep.highlight);
  j["reference"] = sweep.reference.empty() ? json(nullptr) : json(sweep.reference);
  j["complete"] = sweep.complete;
  j["tasks"] = report.tasks;
  json groups = json::array();
  for (const GroupSummary& g : report.groups) {
    json runs = json::array();
    for (size_t i : g.runs) runs.push_back(sweep.runs[i].id);
    json gaps = json::array();
    for (const GapSummary& law : g.gaps) {
      json rows = json::array();
      for (const GapRowSummary& r : law.rows)
        rows.push_back({{"sigma", r.sigma}, {"gap", stat_json(r.gap)}, {"gap_std_error", stat_json(r.gap_std_error)},
                        {"predicted", stat_json(r.predicted)}, {"relative_error", stat_json(r.relative_error)}});
      gaps.push_back({{"law", law.law}, {"loss", stat_json(law.loss)}, {"trace", stat_json(law.trace)},
                      {"rss", stat_json(law.rss)}, {"rows", rows}});
    }
    groups.push_back({{"task", g.task},
                      {"method", g.method},
                      {"setting_name", g.setting_name},
                      {"seeds", g.seeds},
                      {"failed", g.failed},
                      {"diverged", g.diverged},
                      {"pending", g.pending},
                      {"test_acc", stat_json(g.test_acc)},
                      {"test_loss", stat_json(g.test_loss)},
                      {"gap_loss", stat_json(g.gap_loss)},
                      {"gap_acc", stat_json(g.gap_acc)},
                      {"trace", stat_json(g.trace)},
                      {"trace_mean_std_error", g.trace_mean_std_error},
                      {"lambda1", stat_json(g.lambda1)},
                      {"gradient_evaluations", stat_json(g.gradient_evaluations)},
                      {"seconds", stat_json(g.seconds)},
                      {"noise_stability", gaps},
                      {"extra", extra_json(g)},
                      {"runs", runs}});
  }
  j["groups"] = groups;
  json comparisons = json::array();
  for (const Comparison& c : report.comparisons) comparisons.push_back(comparison_json(c));
  j["comparisons"] = comparisons;
  j["average"] = report.average ? comparison_json(*report.average) : json(nullptr);
  json paired = json::array();
  for (const PairedComparison& c : report.paired) {
    json metrics = json::array();
    for (const PairedMetric& m : c.metrics)
      metrics.push_back({{"quantity", m.name}, {"n", m.stats.n}, {"mean", m.stats.mean}, {"std", m.stats.std},
                         {"std_error", m.stats.std_error}, {"positive", m.stats.positive},
                         {"negative", m.stats.negative}, {"t_p", m.stats.t_p}, {"sign_p", m.stats.sign_p},
                         {"against_mean", m.against_mean}});
    paired.push_back({{"task", c.task}, {"method", c.group}, {"against", c.against}, {"basis", c.basis},
                      {"metrics", metrics}});
  }
  j["paired"] = paired;
  json selection = json::array();
  for (const SelectionGroup& g : sweep.selection) {
    json candidates = json::array();
    for (const Candidate& c : g.candidates)
      candidates.push_back({{"setting_name", c.setting_name}, {"value", c.value}, {"runs", c.runs}});
    selection.push_back({{"task", g.task}, {"method", g.method}, {"chosen", g.chosen}, {"candidates", candidates}});
  }
  j["selection"] = selection;
  json runs = json::array();
  for (const RunRecord& r : sweep.runs) {
    runs.push_back({{"id", r.id},
                    {"dir", r.dir},
                    {"stage", r.stage},
                    {"task", r.task},
                    {"method", r.method},
                    {"setting", json::parse(r.setting_json)},
                    {"setting_name", r.setting_name},
                    {"seed", r.seed},
                    {"roles", r.roles},
                    {"status", r.status},
                    {"error", r.error},
                    {"test_acc", r.test_acc},
                    {"test_loss", r.test_loss},
                    {"val_acc", r.val_acc},
                    {"train_acc", r.train_acc},
                    {"train_loss", r.train_loss},
                    {"gradient_evaluations", r.gradient_evaluations},
                    {"seconds", r.seconds},
                    {"trace", r.trace},
                    {"trace_std_error", r.trace_std_error},
                    {"lambda1", r.lambda1},
                    {"lambda1_residual", r.lambda1_residual},
                    {"epochs", r.curve.size()}});
  }
  j["runs"] = runs;
  j["warnings"] = sweep.warnings;
  return j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace flatmin::reports
