#include "flatmin/experiments/plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>

#include <nlohmann/json.hpp>

#include "flatmin/core/error.h"

namespace flatmin::experiments {
namespace {

using json = nlohmann::ordered_json;

// The options of one (task, method): fixed values and axes, later tables replacing earlier ones by name.
struct Composed {
  Options fixed;
  std::vector<Axis> axes;

  void set_fixed(const std::string& name, const std::string& value) {
    axes.erase(std::remove_if(axes.begin(), axes.end(), [&](const Axis& a) { return a.name == name; }), axes.end());
    for (auto& [k, v] : fixed)
      if (k == name) {
        v = value;
        return;
      }
    fixed.emplace_back(name, value);
  }
  void set_axis(const Axis& axis) {
    fixed.erase(std::remove_if(fixed.begin(), fixed.end(), [&](const auto& kv) { return kv.first == axis.name; }),
                fixed.end());
    for (auto& a : axes)
      if (a.name == axis.name) {
        a = axis;
        return;
      }
    axes.push_back(axis);
  }
  void add(const OptionSet& set) {
    for (const auto& [k, v] : set.fixed) set_fixed(k, v);
    for (const auto& axis : set.axes) set_axis(axis);
  }
};

// Every combination of the axes' values, the first axis varying slowest.
std::vector<Options> settings_of(const std::vector<Axis>& axes) {
  std::vector<Options> out{{}};
  for (const auto& axis : axes) {
    std::vector<Options> next;
    for (const auto& partial : out)
      for (const auto& value : axis.values) {
        Options o = partial;
        o.emplace_back(axis.name, value);
        next.push_back(std::move(o));
      }
    out = std::move(next);
  }
  return out;
}

std::string setting_name(const Options& setting) {
  if (setting.empty()) return "default";
  std::string name;
  for (const auto& [k, v] : setting) {
    std::string value = v;
    std::replace(value.begin(), value.end(), '/', '_');
    name += (name.empty() ? "" : ",") + k + "=" + value;
  }
  return name;
}

// The value of `name` in `setting` ("" when absent).
std::string value_of(const Options& setting, const std::string& name) {
  for (const auto& [k, v] : setting)
    if (k == name) return v;
  return "";
}

bool has_option(const Options& options, const std::string& name) {
  return std::any_of(options.begin(), options.end(), [&](const auto& kv) { return kv.first == name; });
}

json options_json(const Options& options) {
  json j = json::object();
  for (const auto& [k, v] : options) j[k] = v;
  return j;
}

}  // namespace

std::string to_string(RunStatus status) {
  switch (status) {
    case RunStatus::kPending: return "pending";
    case RunStatus::kRunning: return "running";
    case RunStatus::kInterrupted: return "interrupted";
    case RunStatus::kDone: return "done";
    case RunStatus::kDiverged: return "diverged";
    case RunStatus::kFailed: return "failed";
  }
  return "pending";
}

bool is_final(RunStatus status) {
  return status == RunStatus::kDone || status == RunStatus::kDiverged || status == RunStatus::kFailed;
}

bool PlannedRun::has_role(const std::string& role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

std::vector<std::string> PlannedRun::train_arguments(const std::string& root) const {
  std::vector<std::string> args{"--out=" + root + "/" + dir, "--seed=" + std::to_string(seed)};
  if (!init_dir.empty()) args.push_back("--init=" + root + "/" + init_dir);
  for (const auto& [k, v] : options) args.push_back("--" + k + "=" + v);
  return args;
}

int64_t best_candidate(const std::vector<Candidate>& candidates, bool maximize) {
  int64_t best = -1;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const Candidate& c = candidates[i];
    if (c.runs == 0 || !std::isfinite(c.value)) continue;
    if (best < 0 || (maximize ? c.value > candidates[best].value : c.value < candidates[best].value))
      best = static_cast<int64_t>(i);
  }
  if (best < 0) return best;
  std::vector<int64_t> tied;
  for (size_t i = 0; i < candidates.size(); ++i)
    if (candidates[i].runs > 0 && candidates[i].value == candidates[best].value) tied.push_back(static_cast<int64_t>(i));
  return tied[(tied.size() - 1) / 2];
}

namespace {

std::optional<double> number(const std::string& text) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used == text.size() && std::isfinite(v)) return v;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

// Where the chosen value sits on a numeric axis of two or more values: -1 its smallest, +1 its largest, 0
// inside (or not numeric).
int edge_of(const Axis& axis, const std::string& chosen) {
  if (axis.values.size() < 2) return 0;
  std::vector<double> values;
  for (const auto& v : axis.values) {
    const auto x = number(v);
    if (!x) return 0;
    values.push_back(*x);
  }
  const auto x = number(chosen);
  if (!x) return 0;
  if (*x == *std::min_element(values.begin(), values.end())) return -1;
  if (*x == *std::max_element(values.begin(), values.end())) return +1;
  return 0;
}

// One value beyond the `side` edge of a numeric axis: the ratio of the two outermost values when both are
// positive (grids of σ, ρ, learning rates are geometric), else their difference.
std::string beyond(const Axis& axis, int side) {
  std::vector<double> values;
  for (const auto& v : axis.values) values.push_back(*number(v));
  std::sort(values.begin(), values.end());
  const double edge = side > 0 ? values.back() : values.front();
  const double next = side > 0 ? values[values.size() - 2] : values[1];
  const double value = edge > 0 && next > 0 ? edge * (edge / next) : edge + (edge - next);
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.6g", value);
  return buffer;
}

// The values of axis `name` the settings have tried so far, each once.
Axis values_tried(const std::string& name, const std::vector<Options>& settings) {
  Axis axis;
  axis.name = name;
  for (const auto& setting : settings) {
    const std::string value = value_of(setting, name);
    if (std::find(axis.values.begin(), axis.values.end(), value) == axis.values.end()) axis.values.push_back(value);
  }
  return axis;
}

Options with_value(Options setting, const std::string& name, const std::string& value) {
  for (auto& [k, v] : setting)
    if (k == name) v = value;
  return setting;
}

}  // namespace

Plan plan_experiment(const Experiment& e, const std::function<RunOutcome(const PlannedRun&)>& outcome) {
  Plan plan;
  std::map<std::string, size_t> by_dir;
  auto add = [&](PlannedRun run) {
    const auto found = by_dir.find(run.dir);
    if (found == by_dir.end()) {
      by_dir[run.dir] = plan.runs.size();
      plan.runs.push_back(std::move(run));
      return;
    }
    PlannedRun& existing = plan.runs[found->second];
    for (const auto& role : run.roles)
      if (!existing.has_role(role)) existing.roles.push_back(role);
    existing.measure = existing.measure || run.measure;
  };

  std::string pretrain_dir;
  if (e.pretrain) {
    Composed c;
    for (const auto& [k, v] : e.train.fixed) c.set_fixed(k, v);
    for (const auto& [k, v] : e.overrides) c.set_fixed(k, v);
    c.add(*e.pretrain);
    PlannedRun run;
    run.id = "pretrain/seed" + std::to_string(e.pretrain_seed);
    run.dir = "runs/" + run.id;
    run.stage = "pretrain";
    run.method = "pretrain";
    run.setting_name = "default";
    run.seed = e.pretrain_seed;
    run.roles = {"pretrain"};
    run.options = c.fixed;
    pretrain_dir = run.dir;
    add(std::move(run));
  }

  const std::vector<OptionSet> tasks = e.tasks.empty() ? std::vector<OptionSet>{OptionSet{}} : e.tasks;
  const std::vector<OptionSet> methods =
      e.methods.empty() ? std::vector<OptionSet>{OptionSet{"default", {}, {}}} : e.methods;
  plan.complete = true;
  for (const auto& task : tasks) {
    for (const auto& method : methods) {
      Composed c;
      c.add(e.train);
      c.add(task);
      c.add(method);
      for (const auto& [k, v] : e.overrides) c.set_fixed(k, v);
      auto make_run = [&](const Options& setting, int64_t seed, const std::string& role) {
        PlannedRun run;
        run.task = task.name;
        run.method = method.name;
        run.setting = setting;
        run.setting_name = setting_name(setting);
        run.seed = seed;
        run.id = (task.name.empty() ? "" : task.name + "/") + method.name + "/" + run.setting_name + "/seed" +
                 std::to_string(seed);
        run.dir = "runs/" + run.id;
        run.stage = "train";
        run.roles = {role};
        run.options = c.fixed;
        run.options.insert(run.options.end(), setting.begin(), setting.end());
        if (!pretrain_dir.empty() && !has_option(run.options, "init")) run.init_dir = pretrain_dir;
        run.measure = role == "final" && e.measure.has_value();
        return run;
      };
      if (!e.select) {
        for (const auto& setting : settings_of(c.axes))
          for (int64_t seed : e.seeds) add(make_run(setting, seed, "final"));
        continue;
      }
      // The grid, widened beyond an edge the choice lands on (select.extend_edges): a pure function of the
      // outcomes, so each replanning after new results takes the same path. When the choice holds the largest
      // or smallest value an axis has tried, a widening adds one candidate: the chosen setting with that axis
      // one step further (a coordinate search), not a plane of the grid, which on three axes of three values
      // would add nine settings a step.
      std::vector<Options> settings = settings_of(c.axes);
      std::vector<int64_t> extensions(c.axes.size(), 0);
      GroupSelection group{task.name, method.name, {}, -1, {}, {}};
      auto evaluate = [&](const Options& setting) {
        Candidate candidate{setting, setting_name(setting), 0, 0, 0};
        double sum = 0;
        for (int64_t seed : e.select->seeds) {
          PlannedRun run = make_run(setting, seed, "grid");
          const RunOutcome o = outcome(run);
          if (o.status == RunStatus::kDone) {
            sum += o.metric;
            ++candidate.runs;
          } else if (!is_final(o.status)) {
            ++candidate.unfinished;
          }
          add(std::move(run));
        }
        candidate.value = candidate.runs > 0 ? sum / static_cast<double>(candidate.runs)
                                             : std::numeric_limits<double>::quiet_NaN();
        group.candidates.push_back(std::move(candidate));
      };
      for (const auto& setting : settings) evaluate(setting);
      while (true) {
        group.edges.clear();
        const bool grid_finished = std::all_of(group.candidates.begin(), group.candidates.end(),
                                               [](const Candidate& c) { return c.unfinished == 0; });
        if (!grid_finished) {
          plan.complete = false;
          break;
        }
        group.chosen = best_candidate(group.candidates, e.select->maximize);
        if (group.chosen < 0) break;
        const Options chosen = group.candidates[group.chosen].setting;
        std::optional<Options> wider;
        for (size_t a = 0; a < c.axes.size() && !wider; ++a) {
          const Axis tried = values_tried(c.axes[a].name, settings);
          const std::string value = value_of(chosen, tried.name);
          const int side = edge_of(tried, value);
          if (side == 0) continue;
          if (extensions[a] < e.select->extend_edges) {
            wider = with_value(chosen, tried.name, beyond(tried, side));
            ++extensions[a];
          } else {
            group.edges.push_back(tried.name + "=" + value + " is the " + (side > 0 ? "largest" : "smallest") +
                                  " tried");
          }
        }
        if (!wider) {
          for (int64_t seed : e.seeds) add(make_run(chosen, seed, "final"));
          break;
        }
        settings.push_back(*wider);
        evaluate(*wider);
        group.chosen = -1;
      }
      for (size_t a = 0; a < c.axes.size(); ++a)
        if (extensions[a] > 0) group.extended.push_back({c.axes[a].name, extensions[a]});
      plan.selection.push_back(std::move(group));
    }
  }
  return plan;
}

std::vector<RunnableUnit> runnable_units(const Plan& plan,
                                        const std::function<RunRecord(const PlannedRun&)>& record) {
  std::map<std::string, size_t> by_dir;
  for (size_t i = 0; i < plan.runs.size(); ++i) by_dir[plan.runs[i].dir] = i;
  std::vector<RunnableUnit> units;
  for (size_t i = 0; i < plan.runs.size(); ++i) {
    const PlannedRun& run = plan.runs[i];
    const RunRecord r = record(run);
    if (r.status == RunStatus::kPending || r.status == RunStatus::kInterrupted) {
      if (!run.init_dir.empty()) {
        const auto init = by_dir.find(run.init_dir);
        // An --init outside the plan is the experiment's own file: nothing to wait for.
        if (init != by_dir.end() && record(plan.runs[init->second]).status != RunStatus::kDone) continue;
      }
      units.push_back({i, r.status == RunStatus::kInterrupted ? UnitStep::kResume : UnitStep::kTrain});
    } else if (r.status == RunStatus::kDone && run.measure && r.measure_status.empty()) {
      units.push_back({i, UnitStep::kMeasure});
    }
  }
  return units;
}

std::string manifest_json(const Experiment& e, const Plan& plan, const std::string& command,
                          const std::function<RunRecord(const PlannedRun&)>& record) {
  json j;
  j["format"] = "flatmin-sweep/1";
  j["experiment"] = {{"name", e.name}, {"file", e.file}, {"description", e.description}, {"command", command}};
  j["select"] = e.select ? json{{"metric", e.select->metric}, {"mode", e.select->maximize ? "max" : "min"}} : json();
  j["report"] = {{"highlight", e.highlight}, {"reference", e.reference_method()}};
  for (const auto& [first, second] : e.pairs) j["report"]["pairs"].push_back({first, second});
  j["complete"] = plan.complete;
  json runs = json::array();
  for (const auto& run : plan.runs) {
    const RunRecord r = record(run);
    runs.push_back({{"id", run.id},
                    {"dir", run.dir},
                    {"stage", run.stage},
                    {"task", run.task},
                    {"method", run.method},
                    {"setting", options_json(run.setting)},
                    {"setting_name", run.setting_name},
                    {"seed", run.seed},
                    {"roles", run.roles},
                    {"status", to_string(r.status)},
                    {"exit_code", r.exit_code},
                    {"seconds", r.seconds},
                    {"error", r.error},
                    {"measure", run.measure ? (r.measure_status.empty() ? "pending" : r.measure_status) : ""},
                    {"init", run.init_dir}});
  }
  j["runs"] = std::move(runs);
  return j.dump(2) + "\n";
}

std::string selection_json(const Experiment& e, const Plan& plan) {
  json j;
  j["metric"] = e.select ? e.select->metric : "";
  j["mode"] = e.select && !e.select->maximize ? "min" : "max";
  json groups = json::array();
  for (const auto& g : plan.selection) {
    json candidates = json::array();
    for (const auto& c : g.candidates)
      candidates.push_back({{"setting", options_json(c.setting)},
                            {"setting_name", c.setting_name},
                            {"value", std::isfinite(c.value) ? json(c.value) : json()},
                            {"runs", c.runs},
                            {"unfinished", c.unfinished}});
    groups.push_back({{"task", g.task},
                      {"method", g.method},
                      {"candidates", std::move(candidates)},
                      {"chosen", g.chosen >= 0 ? json(g.candidates[g.chosen].setting_name) : json()},
                      {"edges", g.edges},
                      {"extended", json(std::map<std::string, int64_t>(g.extended.begin(), g.extended.end()))}});
  }
  j["groups"] = std::move(groups);
  return j.dump(2) + "\n";
}

}  // namespace flatmin::experiments
