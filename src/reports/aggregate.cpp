#include "flatmin/reports/aggregate.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <tuple>

#include <nlohmann/json.hpp>

#include "flatmin/core/error.h"

namespace flatmin::reports {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

json read_json(const fs::path& path) {
  std::ifstream in(path);
  check(in.good(), path.string() + ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw Error(path.string() + ": not valid JSON: " + e.what());
  }
}

// A number field: NaN when absent or null (the training writer stores non-finite values as null).
double number_or_nan(const json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || object.at(key).is_null()) return kNaN;
  check(object.at(key).is_number(), std::string(key) + ": not a number");
  return object.at(key).get<double>();
}

std::string string_or(const json& object, const char* key, const std::string& fallback) {
  if (!object.is_object() || !object.contains(key) || object.at(key).is_null()) return fallback;
  return object.at(key).get<std::string>();
}

// Splits one CSV line; quoted cells may hold commas and doubled quotes (the metrics writer's quoting).
std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> cells(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') cells.back() += '"', ++i;
      else if (c == '"') quoted = false;
      else cells.back() += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      cells.emplace_back();
    } else if (c != '\r') {
      cells.back() += c;
    }
  }
  return cells;
}

// A task-less experiment's runs (task "" in the manifest) are reported under one task named "default":
// tables, figures and links need a name.
std::string task_name(const json& j) {
  const std::string task = j.at("task").get<std::string>();
  return task.empty() ? "default" : task;
}

RunRecord parse_run(const json& j) {
  RunRecord r;
  r.id = j.at("id").get<std::string>();
  r.dir = j.at("dir").get<std::string>();
  r.task = task_name(j);
  r.method = j.at("method").get<std::string>();
  r.status = j.at("status").get<std::string>();
  r.stage = string_or(j, "stage", "");
  r.setting_name = string_or(j, "setting_name", "default");
  r.setting_json = j.contains("setting") && !j.at("setting").is_null() ? j.at("setting").dump() : "{}";
  r.error = string_or(j, "error", "");
  if (j.contains("seed") && !j.at("seed").is_null()) r.seed = j.at("seed").get<int64_t>();
  if (j.contains("exit_code") && !j.at("exit_code").is_null()) r.exit_code = j.at("exit_code").get<int64_t>();
  r.manifest_seconds = number_or_nan(j, "seconds");
  if (j.contains("roles")) r.roles = j.at("roles").get<std::vector<std::string>>();
  return r;
}

void read_summary(RunRecord& r, const fs::path& path) {
  const json s = read_json(path);
  check(s.is_object(), path.string() + ": not a JSON object");
  try {
    r.test_acc = number_or_nan(s, "final_test_acc");
    r.test_loss = number_or_nan(s, "final_test_loss");
    r.val_acc = number_or_nan(s, "final_val_acc");
    r.train_acc = number_or_nan(s, "final_train_acc");
    r.train_loss = number_or_nan(s, "final_train_loss");
    r.gradient_evaluations = number_or_nan(s, "gradient_evaluations");
    r.seconds = number_or_nan(s, "total_seconds");
    if (s.contains("extra") && s.at("extra").is_object())
      for (const auto& [name, value] : s.at("extra").items()) r.extra.emplace_back(name, number_or_nan(s.at("extra"), name.c_str()));
  } catch (const Error& e) {
    throw Error(path.string() + ": " + e.what());
  }
}

void read_geometry(RunRecord& r, const fs::path& path) {
  const json g = read_json(path);
  try {
    if (g.contains("trace")) {
      r.trace = number_or_nan(g.at("trace"), "estimate");
      r.trace_std_error = number_or_nan(g.at("trace"), "std_error");
    }
    if (g.contains("eigenvalues")) {
      const json& e = g.at("eigenvalues");
      if (e.contains("values") && !e.at("values").empty() && e.at("values")[0].is_number())
        r.lambda1 = e.at("values")[0].get<double>();
      if (e.contains("residuals") && !e.at("residuals").empty() && e.at("residuals")[0].is_number())
        r.lambda1_residual = e.at("residuals")[0].get<double>();
    }
    // One table per noise law; files written before several laws were possible hold one ("perturbation_gap").
    const json* tables = g.contains("perturbation_gaps") ? &g.at("perturbation_gaps") : nullptr;
    const json single = g.contains("perturbation_gap") ? json::array({g.at("perturbation_gap")}) : json::array();
    for (const json& t : tables ? *tables : single) {
      GapTable table;
      table.law = t.value("law", std::string{});
      table.loss = number_or_nan(t, "loss");
      table.trace = number_or_nan(t, "trace");
      table.rss = number_or_nan(t, "rss");
      for (const json& row : t.at("rows"))
        table.rows.push_back({row.at("sigma").get<double>(), number_or_nan(row, "gap"), number_or_nan(row, "gap_std_error"),
                              number_or_nan(row, "predicted"), number_or_nan(row, "relative_error")});
      r.gaps.push_back(std::move(table));
    }
  } catch (const std::exception& e) {
    throw Error(path.string() + ": " + e.what());
  }
}

// The done runs' values of one field.
template <typename Get>
MeanStd over_runs(const std::vector<const RunRecord*>& runs, Get get) {
  std::vector<double> values;
  for (const RunRecord* r : runs) values.push_back(get(*r));
  return mean_std(values);
}

void count_status(GroupSummary& g, const std::string& status) {
  if (status == "done") return;
  if (status == "diverged") ++g.diverged;
  else if (status == "pending" || status == "running" || status == "interrupted") ++g.pending;
  else ++g.failed;  // "failed", or a status this reader does not know
}

std::vector<CurvePoint> mean_curve(const std::vector<const RunRecord*>& runs) {
  std::map<int64_t, std::vector<const EpochPoint*>> by_epoch;
  for (const RunRecord* r : runs)
    for (const EpochPoint& p : r->curve) by_epoch[p.epoch].push_back(&p);
  std::vector<CurvePoint> curve;
  for (const auto& [epoch, points] : by_epoch) {
    std::vector<double> acc, loss, trace, lambda1, gap, train, val_acc, val_loss, objective;
    std::map<std::string, std::vector<double>> extra;
    for (const EpochPoint* p : points) {
      acc.push_back(p->test_acc);
      loss.push_back(p->test_loss);
      trace.push_back(p->trace);
      lambda1.push_back(p->lambda1);
      gap.push_back(p->test_loss - p->train_loss);
      train.push_back(p->train_loss);
      val_acc.push_back(p->val_acc);
      val_loss.push_back(p->val_loss);
      objective.push_back(p->objective);
      for (const auto& [name, value] : p->extra) extra[name].push_back(value);
    }
    CurvePoint c{epoch, mean_std(acc), mean_std(loss), mean_std(trace), mean_std(lambda1), mean_std(gap), mean_std(train),
                 mean_std(val_acc), mean_std(val_loss), mean_std(objective), {}};
    for (const auto& [name, values] : extra) c.extra[name] = mean_std(values);
    curve.push_back(std::move(c));
  }
  return curve;
}

std::vector<std::string> extra_names(const RunRecord& r) {
  std::vector<std::string> names;
  for (const auto& [name, value] : r.extra) names.push_back(name);
  return names;
}

// Items grouped by a key, the keys in first-seen order (tables and columns keep the runs' order).
template <typename Key, typename Item>
struct FirstSeenGroups {
  std::vector<Key> keys;
  std::map<Key, std::vector<Item>> items;
  void add(const Key& key, Item item) {
    auto [it, inserted] = items.try_emplace(key);
    if (inserted) keys.push_back(key);
    it->second.push_back(std::move(item));
  }
};

// Per noise law and σ, over the runs that measured them (matched by law name and σ, in first-seen order).
std::vector<GapSummary> mean_gaps(const std::vector<const RunRecord*>& runs) {
  FirstSeenGroups<std::string, const GapTable*> by_law;
  for (const RunRecord* r : runs)
    for (const GapTable& t : r->gaps) by_law.add(t.law, &t);
  std::vector<GapSummary> out;
  for (const std::string& law : by_law.keys) {
    const std::vector<const GapTable*>& tables = by_law.items.at(law);
    auto over = [&](auto get) {
      std::vector<double> v;
      for (const GapTable* t : tables) v.push_back(get(*t));
      return mean_std(v);
    };
    GapSummary s;
    s.law = law;
    s.loss = over([](const GapTable& t) { return t.loss; });
    s.trace = over([](const GapTable& t) { return t.trace; });
    s.rss = over([](const GapTable& t) { return t.rss; });
    FirstSeenGroups<double, const GapPoint*> by_sigma;
    for (const GapTable* t : tables)
      for (const GapPoint& p : t->rows) by_sigma.add(p.sigma, &p);
    for (double sigma : by_sigma.keys) {
      std::vector<double> gap, se, predicted, relative;
      for (const GapPoint* p : by_sigma.items.at(sigma)) {
        gap.push_back(p->gap), se.push_back(p->gap_std_error), predicted.push_back(p->predicted);
        relative.push_back(p->relative_error);
      }
      s.rows.push_back({sigma, mean_std(gap), mean_std(se), mean_std(predicted), mean_std(relative)});
    }
    out.push_back(std::move(s));
  }
  return out;
}

// RunRecord::extra over the runs, by name in first-seen order (a run without a quantity does not count).
std::vector<std::pair<std::string, MeanStd>> mean_extra(const std::vector<const RunRecord*>& runs) {
  FirstSeenGroups<std::string, double> by_name;
  for (const RunRecord* r : runs)
    for (const auto& entry : r->extra) by_name.add(entry.first, entry.second);
  std::vector<std::pair<std::string, MeanStd>> out;
  for (const std::string& name : by_name.keys) out.emplace_back(name, mean_std(by_name.items.at(name)));
  return out;
}

// The per-run quantities a group summarises over its seeds and a paired comparison differences.
struct Quantity {
  const char* name;
  double (*of)(const RunRecord&);
  MeanStd GroupSummary::*summary;
};
const Quantity kQuantities[] = {
    {"test_acc", [](const RunRecord& r) { return r.test_acc; }, &GroupSummary::test_acc},
    {"test_loss", [](const RunRecord& r) { return r.test_loss; }, &GroupSummary::test_loss},
    {"gap_loss", [](const RunRecord& r) { return r.test_loss - r.train_loss; }, &GroupSummary::gap_loss},
    {"gap_acc", [](const RunRecord& r) { return r.train_acc - r.test_acc; }, &GroupSummary::gap_acc},
    {"trace", [](const RunRecord& r) { return r.trace; }, &GroupSummary::trace},
    {"lambda1", [](const RunRecord& r) { return r.lambda1; }, &GroupSummary::lambda1}};

// kQuantities, then the extra ones the runs report.
std::vector<std::pair<std::string, std::function<double(const RunRecord&)>>> paired_quantities(
    const std::vector<const RunRecord*>& runs) {
  std::vector<std::pair<std::string, std::function<double(const RunRecord&)>>> q;
  for (const Quantity& quantity : kQuantities) q.emplace_back(quantity.name, quantity.of);
  std::vector<std::string> extra;
  for (const RunRecord* r : runs)
    for (const std::string& name : extra_names(*r))
      if (std::find(extra.begin(), extra.end(), name) == extra.end()) extra.push_back(name);
  for (const std::string& name : extra)
    q.push_back({name, [name](const RunRecord& r) {
                   for (const auto& [n, v] : r.extra)
                     if (n == name) return v;
                   return kNaN;
                 }});
  return q;
}

// `group` − `against`, seed by seed, over the seeds both have done.
std::vector<PairedMetric> paired_metrics(const Sweep& sweep, const GroupSummary& group, const GroupSummary& against) {
  std::map<int64_t, const RunRecord*> theirs;
  for (size_t i : against.runs)
    if (sweep.runs[i].done()) theirs[sweep.runs[i].seed] = &sweep.runs[i];
  std::vector<std::pair<const RunRecord*, const RunRecord*>> pairs;
  std::vector<const RunRecord*> both;
  for (size_t i : group.runs) {
    const RunRecord& r = sweep.runs[i];
    const auto it = theirs.find(r.seed);
    if (!r.done() || it == theirs.end()) continue;
    pairs.push_back({&r, it->second});
    both.push_back(&r);
    both.push_back(it->second);
  }
  std::vector<PairedMetric> metrics;
  for (const auto& [name, get] : paired_quantities(both)) {
    std::vector<double> differences, reference;
    for (const auto& [mine, other] : pairs) {
      const double a = get(*mine), b = get(*other);
      if (!std::isfinite(a) || !std::isfinite(b)) continue;
      differences.push_back(a - b);
      reference.push_back(b);
    }
    if (differences.empty()) continue;
    metrics.push_back({name, paired_stats(differences), mean_std(reference).mean});
  }
  return metrics;
}

}  // namespace

// ------------------------------------------------------------------------------------------------ stats

MeanStd mean_std(const std::vector<double>& values) {
  MeanStd s;
  double sum = 0;
  for (double v : values)
    if (std::isfinite(v)) sum += v, ++s.n;
  if (s.n == 0) return s;
  s.mean = sum / static_cast<double>(s.n);
  if (s.n < 2) return s;
  double squares = 0;  // two passes: no cancellation for values far from 0
  for (double v : values)
    if (std::isfinite(v)) squares += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(squares / static_cast<double>(s.n - 1));
  return s;
}

double percent_change(double value, double reference) {
  if (!std::isfinite(value) || !std::isfinite(reference) || reference == 0) return kNaN;
  return 100.0 * (value - reference) / std::abs(reference);
}

// ------------------------------------------------------------------------------------------------ input

bool RunRecord::has_role(const std::string& role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

std::vector<EpochPoint> read_metrics_csv(const std::string& path, const std::vector<std::string>& extra) {
  std::ifstream in(path);
  check(in.good(), path + ": cannot open");
  std::string line;
  check(static_cast<bool>(std::getline(in, line)), path + ": empty (no header)");
  const std::vector<std::string> header = split_csv_line(line);
  auto column = [&](const std::string& name) -> int {
    const auto it = std::find(header.begin(), header.end(), name);
    return it == header.end() ? -1 : static_cast<int>(it - header.begin());
  };
  const int epoch = column("epoch"), acc = column("test_acc"), loss = column("test_loss"), train_loss = column("train_loss"),
            trace = column("geo_hessian_trace"), lambda1 = column("geo_lambda1"), val_acc = column("val_acc"),
            val_loss = column("val_loss"), objective = column("objective");
  check(epoch >= 0, path + ": no 'epoch' column in the header");
  std::vector<EpochPoint> points;
  for (int line_number = 2; std::getline(in, line); ++line_number) {
    if (line.empty() || line == "\r") continue;
    const std::vector<std::string> cells = split_csv_line(line);
    check(cells.size() == header.size(), path + ":" + std::to_string(line_number) + ": " +
                                             std::to_string(cells.size()) + " cells, the header has " +
                                             std::to_string(header.size()));
    auto number = [&](int c) {
      if (c < 0 || cells[c].empty()) return kNaN;
      char* end = nullptr;
      const double v = std::strtod(cells[c].c_str(), &end);
      check(end && *end == '\0', path + ":" + std::to_string(line_number) + ": '" + cells[c] + "' in column '" +
                                     header[c] + "' is not a number");
      return v;
    };
    EpochPoint p;
    const double e = number(epoch);
    check(std::isfinite(e), path + ":" + std::to_string(line_number) + ": no epoch number");
    p.epoch = static_cast<int64_t>(e);
    p.test_acc = number(acc);
    p.test_loss = number(loss);
    p.train_loss = number(train_loss);
    p.val_acc = number(val_acc);
    p.val_loss = number(val_loss);
    p.objective = number(objective);
    p.trace = number(trace);
    p.lambda1 = number(lambda1);
    for (const std::string& name : extra)
      if (column(name) >= 0) p.extra[name] = number(column(name));
    points.push_back(p);
  }
  return points;
}

Sweep load_sweep(const std::string& root) {
  check(fs::is_directory(root), root + ": no such directory (expected a sweep root with manifest.json)");
  const fs::path manifest_path = fs::path(root) / "manifest.json";
  check(fs::exists(manifest_path), manifest_path.string() + ": not found (is " + root + " a sweep root?)");
  const json manifest = read_json(manifest_path);
  const std::string where = manifest_path.string() + ": ";
  check(manifest.is_object(), where + "not a JSON object");
  const std::string format = string_or(manifest, "format", "");
  check(format == kSweepFormat, where + "format '" + format + "', this reader understands '" + kSweepFormat + "'");
  check(manifest.contains("runs") && manifest.at("runs").is_array(), where + "no \"runs\" array");

  Sweep sweep;
  sweep.root = root;
  try {
    const json experiment = manifest.value("experiment", json::object());
    sweep.name = string_or(experiment, "name", "");
    sweep.file = string_or(experiment, "file", "");
    sweep.description = string_or(experiment, "description", "");
    sweep.command = string_or(experiment, "command", "");
    if (manifest.contains("select") && manifest.at("select").is_object()) {
      sweep.select_metric = manifest.at("select").at("metric").get<std::string>();
      sweep.select_mode = manifest.at("select").at("mode").get<std::string>();
    }
    if (manifest.contains("complete") && manifest.at("complete").is_boolean())
      sweep.complete = manifest.at("complete").get<bool>();
    if (manifest.contains("report") && manifest.at("report").is_object()) {
      sweep.highlight = string_or(manifest.at("report"), "highlight", "");
      sweep.reference = string_or(manifest.at("report"), "reference", "");
      if (manifest.at("report").contains("pairs"))
        for (const json& pair : manifest.at("report").at("pairs"))
          sweep.pairs.emplace_back(pair.at(0).get<std::string>(), pair.at(1).get<std::string>());
    }
  } catch (const std::exception& e) {
    throw Error(where + e.what());
  }
  const json& runs = manifest.at("runs");
  for (size_t i = 0; i < runs.size(); ++i) {
    try {
      sweep.runs.push_back(parse_run(runs[i]));
    } catch (const std::exception& e) {  // a missing key, a wrong type
      throw Error(where + "runs[" + std::to_string(i) + "]: " + e.what());
    }
  }
  if (!(manifest.contains("report") && manifest.at("report").is_object() && manifest.at("report").contains("reference")) &&
      std::any_of(sweep.runs.begin(), sweep.runs.end(), [](const RunRecord& r) { return r.method == "sgd"; }))
    sweep.reference = "sgd";  // written before report.reference existed: the plain base optimizer
  if (!sweep.highlight.empty() && std::none_of(sweep.runs.begin(), sweep.runs.end(), [&](const RunRecord& r) {
        return r.method == sweep.highlight && r.has_role("final");
      }))
    sweep.warnings.push_back(where + "report.highlight '" + sweep.highlight + "' is not the method of any final run");

  for (RunRecord& r : sweep.runs) {
    if (!r.done()) continue;  // no summary yet, or a partial one: counted by status, not read
    const fs::path dir = fs::path(root) / r.dir;
    const fs::path summary = dir / "summary.json";
    try {
      check(fs::exists(summary), summary.string() + ": not found, but the manifest says the run is done");
      read_summary(r, summary);
    } catch (const Error& e) {
      sweep.warnings.push_back(std::string(e.what()) + "; run " + r.id + " counted as failed");
      r.status = "failed";
      r.error = e.what();
      continue;
    }
    try {
      if (fs::exists(dir / "metrics.csv")) r.curve = read_metrics_csv((dir / "metrics.csv").string(), extra_names(r));
      else sweep.warnings.push_back((dir / "metrics.csv").string() + ": not found; no curves for run " + r.id);
    } catch (const Error& e) {
      sweep.warnings.push_back(std::string(e.what()) + "; no curves for run " + r.id);
    }
    try {
      if (fs::exists(dir / "geometry.json")) read_geometry(r, dir / "geometry.json");
    } catch (const Error& e) {
      sweep.warnings.push_back(std::string(e.what()) + "; no trace or λ1 for run " + r.id);
    }
  }

  if (!sweep.select_metric.empty()) {
    const fs::path selection_path = fs::path(root) / "selection.json";
    if (!fs::exists(selection_path)) {
      sweep.warnings.push_back(selection_path.string() + ": not found; the selection grid is left out");
    } else {
      const json selection = read_json(selection_path);
      try {
        for (const json& g : selection.at("groups")) {
          SelectionGroup group;
          group.task = task_name(g);
          group.method = g.at("method").get<std::string>();
          group.chosen = string_or(g, "chosen", "");
          if (g.contains("edges") && g.at("edges").is_array())
            for (const json& edge : g.at("edges")) group.edges.push_back(edge.get<std::string>());
          for (const json& c : g.at("candidates")) {
            Candidate candidate;
            candidate.setting_name = string_or(c, "setting_name", "default");
            candidate.value = number_or_nan(c, "value");
            if (c.contains("runs") && c.at("runs").is_number()) candidate.runs = c.at("runs").get<int64_t>();
            group.candidates.push_back(candidate);
          }
          sweep.selection.push_back(group);
        }
      } catch (const std::exception& e) {
        throw Error(selection_path.string() + ": " + e.what());
      }
    }
  }
  return sweep;
}

// ------------------------------------------------------------------------------------------ aggregation

std::string Report::label(const GroupSummary& g) const {
  const std::vector<const GroupSummary*> same_task = groups_of(g.task);
  const auto same_method = std::count_if(same_task.begin(), same_task.end(), [&](auto* o) { return o->method == g.method; });
  return same_method > 1 ? g.method + " (" + g.setting_name + ")" : g.method;
}

std::vector<const GroupSummary*> Report::groups_of(const std::string& task) const {
  std::vector<const GroupSummary*> out;
  for (const GroupSummary& g : groups)
    if (g.task == task) out.push_back(&g);
  return out;
}

Report aggregate(const Sweep& sweep) {
  Report report;
  // Groups in order of first appearance: the experiment's own order of tasks and methods.
  std::vector<std::string> methods;
  std::map<std::tuple<std::string, std::string, std::string>, std::vector<size_t>> members;
  std::vector<std::tuple<std::string, std::string, std::string>> keys;
  for (size_t i = 0; i < sweep.runs.size(); ++i) {
    const RunRecord& r = sweep.runs[i];
    if (!r.has_role("final")) continue;
    if (std::find(report.tasks.begin(), report.tasks.end(), r.task) == report.tasks.end()) report.tasks.push_back(r.task);
    if (std::find(methods.begin(), methods.end(), r.method) == methods.end()) methods.push_back(r.method);
    const auto key = std::make_tuple(r.task, r.method, r.setting_name);
    if (!members.count(key)) keys.push_back(key);
    members[key].push_back(i);
  }
  for (const std::string& task : report.tasks) {
    for (const std::string& method : methods) {
      for (const auto& key : keys) {
        if (std::get<0>(key) != task || std::get<1>(key) != method) continue;
        GroupSummary g;
        std::tie(g.task, g.method, g.setting_name) = key;
        g.runs = members[key];
        std::vector<const RunRecord*> done;
        for (size_t i : g.runs) {
          count_status(g, sweep.runs[i].status);
          if (sweep.runs[i].done()) done.push_back(&sweep.runs[i]);
        }
        g.seeds = static_cast<int64_t>(done.size());
        for (const Quantity& quantity : kQuantities) g.*quantity.summary = over_runs(done, quantity.of);
        g.trace_mean_std_error =
            over_runs(done, [](const RunRecord& r) { return std::isfinite(r.trace) ? r.trace_std_error : kNaN; }).mean;
        g.gradient_evaluations = over_runs(done, [](const RunRecord& r) { return r.gradient_evaluations; });
        g.seconds = over_runs(done, [](const RunRecord& r) { return r.seconds; });
        g.curve = mean_curve(done);
        g.gaps = mean_gaps(done);
        g.extra = mean_extra(done);
        report.groups.push_back(std::move(g));
      }
    }
  }

  // Paired: every group against the reference method, the best other method by test accuracy, and the
  // methods report.pairs names for it.
  for (const std::string& task : report.tasks) {
    const std::vector<const GroupSummary*> groups = report.groups_of(task);
    auto best_accuracy = [&](auto keep) -> const GroupSummary* {
      const GroupSummary* chosen = nullptr;
      for (const GroupSummary* g : groups)
        if (keep(g) && std::isfinite(g->test_acc.mean) && (!chosen || g->test_acc.mean > chosen->test_acc.mean))
          chosen = g;
      return chosen;
    };
    const GroupSummary* reference = sweep.reference.empty() ? nullptr : best_accuracy([&](const GroupSummary* g) {
      return g->method == sweep.reference;
    });
    for (const GroupSummary* g : groups) {
      auto compare = [&](const GroupSummary* against, const char* basis) {
        PairedComparison c{task, report.label(*g), report.label(*against), basis, paired_metrics(sweep, *g, *against)};
        if (!c.metrics.empty()) report.paired.push_back(std::move(c));
      };
      if (reference && g->method != reference->method) compare(reference, "reference");
      const GroupSummary* other = best_accuracy([&](const GroupSummary* o) { return o->method != g->method; });
      if (other && other != reference) compare(other, "best other");
      for (const auto& pair : sweep.pairs) {
        if (g->method != pair.first) continue;
        // The other method at the same setting where it has one (NSO against WP-GD at each σ of a sweep
        // without selection), else its setting with the best mean test accuracy.
        const std::string& against = pair.second;
        const GroupSummary* named = nullptr;
        for (const GroupSummary* o : groups)
          if (o->method == against && o->setting_name == g->setting_name) named = o;
        if (!named) named = best_accuracy([&](const GroupSummary* o) { return o->method == against; });
        if (named && named != reference && named != other) compare(named, "pair");
      }
    }
  }

  if (sweep.highlight.empty()) return report;
  for (const std::string& task : report.tasks) {
    const std::vector<const GroupSummary*> groups = report.groups_of(task);
    auto label = [&](const GroupSummary* g) { return report.label(*g); };
    // The best by a mean, over the groups that pass `keep`; `better(a, b)`: a beats b. Ties: the first.
    auto best = [&](auto keep, auto value, auto better) -> const GroupSummary* {
      const GroupSummary* chosen = nullptr;
      for (const GroupSummary* g : groups)
        if (keep(g) && std::isfinite(value(g)) && (!chosen || better(value(g), value(chosen)))) chosen = g;
      return chosen;
    };
    auto is_highlight = [&](const GroupSummary* g) { return g->method == sweep.highlight; };
    auto is_other = [&](const GroupSummary* g) { return g->method != sweep.highlight; };
    auto accuracy = [](const GroupSummary* g) { return g->test_acc.mean; };
    auto trace = [](const GroupSummary* g) { return g->trace.mean; };
    auto lambda1 = [](const GroupSummary* g) { return g->lambda1.mean; };
    auto higher = [](double a, double b) { return a > b; };
    auto lower = [](double a, double b) { return a < b; };

    const GroupSummary* h = best(is_highlight, accuracy, higher);
    const GroupSummary* by_accuracy = best(is_other, accuracy, higher);
    if (!h || !by_accuracy) continue;
    Comparison c;
    c.task = task;
    c.highlight = label(h);
    c.best_accuracy_method = label(by_accuracy);
    c.accuracy_points = 100.0 * (h->test_acc.mean - by_accuracy->test_acc.mean);
    c.trace_vs_best_accuracy = percent_change(h->trace.mean, by_accuracy->trace.mean);
    c.lambda1_vs_best_accuracy = percent_change(h->lambda1.mean, by_accuracy->lambda1.mean);
    if (const GroupSummary* flattest = best(is_other, trace, lower)) {
      c.lowest_trace_method = label(flattest);
      c.trace_vs_lowest = percent_change(h->trace.mean, flattest->trace.mean);
    }
    if (const GroupSummary* flattest = best(is_other, lambda1, lower)) {
      c.lowest_lambda1_method = label(flattest);
      c.lambda1_vs_lowest = percent_change(h->lambda1.mean, flattest->lambda1.mean);
    }
    report.comparisons.push_back(c);
  }
  if (!report.comparisons.empty()) {
    Comparison a;
    a.task = "average";
    a.highlight = sweep.highlight;
    auto average_of = [&](double Comparison::*field) {
      std::vector<double> values;
      for (const Comparison& c : report.comparisons) values.push_back(c.*field);
      return mean_std(values).mean;
    };
    a.accuracy_points = average_of(&Comparison::accuracy_points);
    a.trace_vs_best_accuracy = average_of(&Comparison::trace_vs_best_accuracy);
    a.lambda1_vs_best_accuracy = average_of(&Comparison::lambda1_vs_best_accuracy);
    a.trace_vs_lowest = average_of(&Comparison::trace_vs_lowest);
    a.lambda1_vs_lowest = average_of(&Comparison::lambda1_vs_lowest);
    report.average = a;
  }
  return report;
}

}  // namespace flatmin::reports
