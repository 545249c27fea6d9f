// Experiment files → the runs they plan: expansion, selection on validation, the --quick form, errors.
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "flatmin/core/error.h"
#include "flatmin/experiments/experiment.h"
#include "flatmin/experiments/plan.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace plan_test {

namespace fx = flatmin::experiments;

namespace {

const char* kSmall = R"(
name = "small"
seeds = [0, 1]

[train]
model = "mlp"
epochs = 2
lr = [0.1, 0.01]

[tasks.a]
classes = "0,1"
[tasks.b]
classes = "2,3"
per-class = 10

[methods.sgd]
method = "sgd"
[methods.nso]
method = "nso"
sigma = [0.01, 0.02]
augment = true
)";

fx::RunOutcome pending(const fx::PlannedRun&) { return {fx::RunStatus::kPending, 0}; }

std::string value_of(const fx::Options& options, const std::string& name) {
  std::string value = "<absent>";
  for (const auto& [k, v] : options)
    if (k == name) value = v;  // the last one wins, as on a command line
  return value;
}

}  // namespace

TEST(ExperimentPlan, ExpandsTasksMethodsAxesAndSeedsExactly) {
  const fx::Experiment e = fx::parse_experiment(kSmall, "small.toml", /*toml=*/true);
  const fx::Plan plan = fx::plan_experiment(e, pending);
  std::vector<std::string> ids;
  for (const auto& run : plan.runs) ids.push_back(run.id);
  // Tasks and methods in the file's order; axes: [train]'s lr, then the method's sigma; seeds innermost.
  const std::vector<std::string> expected{
      "a/sgd/lr=0.1/seed0",           "a/sgd/lr=0.1/seed1",           "a/sgd/lr=0.01/seed0",
      "a/sgd/lr=0.01/seed1",          "a/nso/lr=0.1,sigma=0.01/seed0", "a/nso/lr=0.1,sigma=0.01/seed1",
      "a/nso/lr=0.1,sigma=0.02/seed0", "a/nso/lr=0.1,sigma=0.02/seed1", "a/nso/lr=0.01,sigma=0.01/seed0",
      "a/nso/lr=0.01,sigma=0.01/seed1", "a/nso/lr=0.01,sigma=0.02/seed0", "a/nso/lr=0.01,sigma=0.02/seed1",
      "b/sgd/lr=0.1/seed0",           "b/sgd/lr=0.1/seed1",           "b/sgd/lr=0.01/seed0",
      "b/sgd/lr=0.01/seed1",          "b/nso/lr=0.1,sigma=0.01/seed0", "b/nso/lr=0.1,sigma=0.01/seed1",
      "b/nso/lr=0.1,sigma=0.02/seed0", "b/nso/lr=0.1,sigma=0.02/seed1", "b/nso/lr=0.01,sigma=0.01/seed0",
      "b/nso/lr=0.01,sigma=0.01/seed1", "b/nso/lr=0.01,sigma=0.02/seed0", "b/nso/lr=0.01,sigma=0.02/seed1"};
  EXPECT_EQ(ids, expected);
  EXPECT_TRUE(plan.complete);
  EXPECT_TRUE(plan.selection.empty());

  const fx::PlannedRun& run = plan.runs[17];  // b/nso/lr=0.1,sigma=0.01/seed1
  EXPECT_EQ(run.dir, "runs/b/nso/lr=0.1,sigma=0.01/seed1");
  EXPECT_EQ(run.task, "b");
  EXPECT_EQ(run.method, "nso");
  EXPECT_EQ(run.seed, 1);
  EXPECT_EQ(run.roles, std::vector<std::string>{"final"});
  EXPECT_EQ(value_of(run.options, "model"), "mlp");
  EXPECT_EQ(value_of(run.options, "classes"), "2,3");
  EXPECT_EQ(value_of(run.options, "per-class"), "10");
  EXPECT_EQ(value_of(run.options, "method"), "nso");
  EXPECT_EQ(value_of(run.options, "augment"), "true");
  EXPECT_EQ(value_of(run.options, "lr"), "0.1");
  EXPECT_EQ(value_of(run.options, "sigma"), "0.01");
  const std::vector<std::string> args = run.train_arguments("root");
  EXPECT_EQ(args.front(), "--out=root/runs/b/nso/lr=0.1,sigma=0.01/seed1");
  EXPECT_EQ(args[1], "--seed=1");
  EXPECT_NE(std::find(args.begin(), args.end(), "--augment=true"), args.end());
  EXPECT_NE(std::find(args.begin(), args.end(), "--classes=2,3"), args.end());
}

TEST(ExperimentPlan, LaterTablesReplaceEarlierOptionsAndQuickOverridesLast) {
  const std::string text = std::string(kSmall) + R"(
[quick]
seeds = [7]
train = { epochs = 1, lr = 0.5 }
)";
  const fx::Experiment full = fx::parse_experiment(text, "q.toml", true, /*quick=*/false);
  EXPECT_EQ(fx::plan_experiment(full, pending).runs.size(), 24u);
  const fx::Experiment quick = fx::parse_experiment(text, "q.toml", true, /*quick=*/true);
  const fx::Plan plan = fx::plan_experiment(quick, pending);
  // lr's axis is replaced by the override: per task sgd 1 + nso 2 settings, one seed.
  ASSERT_EQ(plan.runs.size(), 6u);
  EXPECT_EQ(plan.runs[0].id, "a/sgd/default/seed7");
  EXPECT_EQ(plan.runs[1].id, "a/nso/sigma=0.01/seed7");
  EXPECT_EQ(value_of(plan.runs[1].options, "epochs"), "1");
  EXPECT_EQ(value_of(plan.runs[1].options, "lr"), "0.5");
}

TEST(ExperimentPlan, PretrainingComesFirstAndEveryOtherRunStartsFromIt) {
  const fx::Experiment e = fx::parse_experiment(R"(
name = "ft"
[train]
epochs = 3
[pretrain]
classes = "0,1,2"
epochs = 5
seed = 4
[methods.sgd]
method = "sgd"
)",
                                                "ft.toml", true);
  const fx::Plan plan = fx::plan_experiment(e, pending);
  ASSERT_EQ(plan.runs.size(), 2u);
  EXPECT_EQ(plan.runs[0].id, "pretrain/seed4");
  EXPECT_EQ(plan.runs[0].roles, std::vector<std::string>{"pretrain"});
  EXPECT_EQ(value_of(plan.runs[0].options, "epochs"), "5");
  EXPECT_EQ(plan.runs[1].init_dir, "runs/pretrain/seed4");
  const auto args = plan.runs[1].train_arguments("r");
  EXPECT_NE(std::find(args.begin(), args.end(), "--init=r/runs/pretrain/seed4"), args.end());
}

TEST(ExperimentSelection, PicksTheBestValidationSettingThenRunsItOverTheSeeds) {
  const fx::Experiment e = fx::parse_experiment(R"(
name = "sel"
seeds = [0, 1, 2]
[methods.nso]
method = "nso"
sigma = [0.01, 0.02, 0.03]
[select]
metric = "val_acc"
seeds = [0, 5]
[measure]
measures = "trace"
)",
                                                "sel.toml", true);
  // Constructed validation accuracies: sigma=0.02 wins on the mean over seeds 0 and 5 (0.80) although
  // sigma=0.03 has the single best run (0.90, with 0.60 on the other seed).
  const std::map<std::string, double> val{
      {"nso/sigma=0.01/seed0", 0.70}, {"nso/sigma=0.01/seed5", 0.72}, {"nso/sigma=0.02/seed0", 0.79},
      {"nso/sigma=0.02/seed5", 0.81}, {"nso/sigma=0.03/seed0", 0.90}, {"nso/sigma=0.03/seed5", 0.60}};
  std::set<std::string> done;
  auto outcome = [&](const fx::PlannedRun& run) {
    const auto it = val.find(run.id);
    if (it == val.end() || !done.count(run.id)) return fx::RunOutcome{fx::RunStatus::kPending, 0};
    return fx::RunOutcome{fx::RunStatus::kDone, it->second};
  };
  fx::Plan plan = fx::plan_experiment(e, outcome);
  EXPECT_FALSE(plan.complete);
  EXPECT_EQ(plan.runs.size(), 6u);  // the grid only
  for (const auto& run : plan.runs) EXPECT_EQ(run.roles, std::vector<std::string>{"grid"});
  for (const auto& [id, v] : val) done.insert(id);
  plan = fx::plan_experiment(e, outcome);
  EXPECT_TRUE(plan.complete);
  ASSERT_EQ(plan.selection.size(), 1u);
  ASSERT_EQ(plan.selection[0].chosen, 1);
  EXPECT_NEAR(plan.selection[0].candidates[1].value, 0.80, 1e-12);
  // Final runs: sigma=0.02 for seeds 0, 1, 2; seed 0 is the grid's own run (both roles, measured).
  std::vector<std::string> finals;
  for (const auto& run : plan.runs)
    if (run.has_role("final")) {
      finals.push_back(run.id);
      EXPECT_TRUE(run.measure);
    }
  EXPECT_EQ(finals, (std::vector<std::string>{"nso/sigma=0.02/seed0", "nso/sigma=0.02/seed1", "nso/sigma=0.02/seed2"}));
  EXPECT_EQ(plan.runs.size(), 8u);
  EXPECT_EQ(plan.runs[2].roles, (std::vector<std::string>{"grid", "final"}));
}

TEST(ExperimentSelection, LossesAreMinimisedAndFailedRunsDoNotCount) {
  std::vector<fx::Candidate> c{{{}, "a", 0.5, 1, 0}, {{}, "b", 0.3, 2, 0}, {{}, "c", std::nan(""), 0, 0}};
  EXPECT_EQ(fx::best_candidate(c, /*maximize=*/false), 1);
  EXPECT_EQ(fx::best_candidate(c, /*maximize=*/true), 0);
  EXPECT_EQ(fx::best_candidate({{{}, "x", std::nan(""), 0, 0}}, true), -1);
}

// Ties go to the middle of the tied settings in grid order, not to the first listed.
TEST(ExperimentSelection, TiesGoToTheMiddleOfTheTiedSettings) {
  const auto c = [](double v) { return fx::Candidate{{}, "", v, 1, 0}; };
  EXPECT_EQ(fx::best_candidate({c(0.896), c(0.896), c(0.896)}, true), 1);
  EXPECT_EQ(fx::best_candidate({c(0.5), c(0.9), c(0.9), c(0.9), c(0.9)}, true), 2);  // tied 1-4: lower middle
  EXPECT_EQ(fx::best_candidate({c(0.9), c(0.5), c(0.9)}, true), 0);  // tied 0 and 2: the lower middle
}

// A choice on the grid's edge widens that axis beyond it, one value at a time (the grid's ratio), at most
// select.extend_edges times; where the budget ends on an edge, the selection says so.
TEST(ExperimentSelection, AnEdgeChoiceWidensTheGridThenIsMarked) {
  const std::string text = R"(
name = "edge"
seeds = [0, 1]
[methods.nso]
method = "nso"
sigma = [0.008, 0.01, 0.0125]
[select]
metric = "val_acc"
seeds = [0]
extend_edges = 2
)";
  const fx::Experiment e = fx::parse_experiment(text, "edge.toml", true);
  // Validation accuracy keeps rising with σ up to 0.02, then falls: the optimum lies beyond the first grid.
  auto accuracy = [](double sigma) { return 0.9 - 100 * (sigma - 0.017) * (sigma - 0.017); };
  std::set<std::string> done;
  auto outcome = [&](const fx::PlannedRun& run) {
    if (!done.count(run.id)) return fx::RunOutcome{fx::RunStatus::kPending, 0};
    return fx::RunOutcome{fx::RunStatus::kDone, accuracy(std::stod(run.setting.at(0).second))};
  };
  auto finish_grid = [&](const fx::Plan& plan) {
    for (const auto& run : plan.runs) done.insert(run.id);
  };
  fx::Plan plan = fx::plan_experiment(e, outcome);
  ASSERT_EQ(plan.selection[0].candidates.size(), 3u);
  finish_grid(plan);
  plan = fx::plan_experiment(e, outcome);  // 0.0125 wins, on the edge: 0.0125 · 1.25 = 0.015625 is added
  EXPECT_FALSE(plan.complete);
  ASSERT_EQ(plan.selection[0].candidates.size(), 4u);
  EXPECT_EQ(plan.selection[0].candidates[3].setting_name, "sigma=0.015625");
  EXPECT_EQ(plan.selection[0].chosen, -1);
  finish_grid(plan);
  plan = fx::plan_experiment(e, outcome);  // 0.015625 wins, on the edge again: 0.0195312 is added
  ASSERT_EQ(plan.selection[0].candidates.size(), 5u);
  EXPECT_EQ(plan.selection[0].candidates[4].setting_name, "sigma=0.0195312");
  finish_grid(plan);
  plan = fx::plan_experiment(e, outcome);  // 0.015625 (closest to 0.017) wins inside the widened grid
  EXPECT_TRUE(plan.complete);
  EXPECT_EQ(plan.selection[0].candidates[plan.selection[0].chosen].setting_name, "sigma=0.015625");
  EXPECT_TRUE(plan.selection[0].edges.empty());
  EXPECT_EQ(plan.selection[0].extended, (std::vector<std::pair<std::string, int64_t>>{{"sigma", 2}}));

  // Without widening, the same outcomes choose 0.0125 and mark it as the largest value tried.
  done.clear();
  const fx::Experiment fixed = fx::parse_experiment(text.substr(0, text.find("extend_edges")), "edge.toml", true);
  finish_grid(fx::plan_experiment(fixed, outcome));
  plan = fx::plan_experiment(fixed, outcome);
  EXPECT_TRUE(plan.complete);
  EXPECT_EQ(plan.selection[0].edges, std::vector<std::string>{"sigma=0.0125 is the largest tried"});
  EXPECT_NE(fx::selection_json(fixed, plan).find("sigma=0.0125 is the largest tried"), std::string::npos);
}

// On a grid of two axes, a widening adds one setting, the chosen one with the edge axis a step further (a
// coordinate search), not a row of the grid; the other axis keeps the values it had.
TEST(ExperimentSelection, WideningAGridOfTwoAxesAddsOneSettingAStep) {
  const std::string text = R"(
name = "edge2"
seeds = [0]
[methods.sam]
method = "sam"
rho = [0.01, 0.02, 0.05]
lr = [0.1, 0.2]
[select]
metric = "val_acc"
seeds = [0]
extend_edges = 3
)";
  const fx::Experiment e = fx::parse_experiment(text, "edge2.toml", true);
  // Best at ρ = 0.125 and lr = 0.1: the optimum lies beyond ρ's grid, and on the edge of lr's.
  auto accuracy = [](const fx::Options& s) {
    const double rho = std::log(std::stod(s.at(0).second) / 0.125), lr = std::log(std::stod(s.at(1).second) / 0.1);
    return 0.9 - (rho * rho + lr * lr) / 100;
  };
  std::set<std::string> done;
  auto outcome = [&](const fx::PlannedRun& run) {
    if (!done.count(run.id)) return fx::RunOutcome{fx::RunStatus::kPending, 0};
    return fx::RunOutcome{fx::RunStatus::kDone, accuracy(run.setting)};
  };
  fx::Plan plan = fx::plan_experiment(e, outcome);
  ASSERT_EQ(plan.selection[0].candidates.size(), 6u);
  std::vector<std::string> added;
  for (int pass = 0; pass < 6 && !plan.complete; ++pass) {
    for (const auto& run : plan.runs) done.insert(run.id);
    const size_t before = plan.selection[0].candidates.size();
    plan = fx::plan_experiment(e, outcome);
    for (size_t i = before; i < plan.selection[0].candidates.size(); ++i)
      added.push_back(plan.selection[0].candidates[i].setting_name);
  }
  // ρ = 0.05 · 2.5 = 0.125 at lr 0.1, then 0.3125 (worse); lr 0.1 is the smallest learning rate tried,
  // so 0.05 is tried at ρ = 0.125 (worse): three settings, one per step, where a plane would have added six.
  EXPECT_TRUE(plan.complete);
  EXPECT_EQ(added, (std::vector<std::string>{"rho=0.125,lr=0.1", "rho=0.3125,lr=0.1", "rho=0.125,lr=0.05"}));
  const auto& g = plan.selection[0];
  EXPECT_EQ(g.candidates[g.chosen].setting_name, "rho=0.125,lr=0.1");
  EXPECT_TRUE(g.edges.empty());
  EXPECT_EQ(g.extended, (std::vector<std::pair<std::string, int64_t>>{{"rho", 2}, {"lr", 1}}));
}

// [report] pairs: "method:other" strings naming methods of the file; they reach the manifest.
TEST(ExperimentFile, ReportPairsNameTwoMethodsEach) {
  const std::string text = R"(
name = "pairs"
[methods.sgd]
method = "sgd"
[methods.nso]
method = "nso"
[report]
pairs = ["nso:sgd"]
)";
  const fx::Experiment e = fx::parse_experiment(text, "p.toml", true);
  EXPECT_EQ(e.pairs, (std::vector<std::pair<std::string, std::string>>{{"nso", "sgd"}}));
  const std::string manifest = fx::manifest_json(e, fx::plan_experiment(e, [](const fx::PlannedRun&) {
    return fx::RunOutcome{fx::RunStatus::kPending, 0};
  }), "train", [](const fx::PlannedRun&) { return fx::RunRecord{}; });
  EXPECT_NE(manifest.find("\"pairs\""), std::string::npos);
  auto error = [&](const std::string& pairs) {
    try {
      fx::parse_experiment(text.substr(0, text.find("pairs =")) + "pairs = " + pairs, "p.toml", true);
    } catch (const flatmin::Error& err) {
      return std::string(err.what());
    }
    return std::string();
  };
  EXPECT_NE(error(R"(["nso:wp-sgd"])").find("report.pairs: 'wp-sgd' is not one of [methods]"), std::string::npos);
  EXPECT_NE(error(R"(["nso"])").find("a list of \"method:other\" strings (got \"nso\")"), std::string::npos)
      << error(R"(["nso"])");
  EXPECT_NE(error(R"("nso:sgd")").find("report.pairs"), std::string::npos);
}

// A sweep root refuses a changed experiment, but not a changed [report]: that changes how the same runs are
// presented.
TEST(ExperimentFile, OnlyAChangedReportPlansTheSameRuns) {
  const fx::Experiment e = fx::parse_experiment(kSmall, "s.toml", true);
  const std::string stored = e.to_json();
  EXPECT_TRUE(e.plans_same_runs_as(stored));
  EXPECT_TRUE(fx::parse_experiment(std::string(kSmall) + "\n[report]\nhighlight = \"nso\"\npairs = [\"nso:sgd\"]\n", "s.toml", true)
                  .plans_same_runs_as(stored));
  std::string other = kSmall;
  other.replace(other.find("epochs = 2"), 10, "epochs = 3");
  EXPECT_FALSE(fx::parse_experiment(other, "s.toml", true).plans_same_runs_as(stored));
  EXPECT_FALSE(e.plans_same_runs_as("not json"));
}

TEST(ExperimentFile, JsonAndTomlGiveTheSameExperiment) {
  const fx::Experiment toml = fx::parse_experiment(kSmall, "s.toml", true);
  const fx::Experiment json = fx::parse_experiment(R"({"name": "small", "seeds": [0, 1],
    "train": {"model": "mlp", "epochs": 2, "lr": [0.1, 0.01]},
    "tasks": {"a": {"classes": "0,1"}, "b": {"classes": "2,3", "per-class": 10}},
    "methods": {"sgd": {"method": "sgd"}, "nso": {"method": "nso", "sigma": [0.01, 0.02], "augment": true}}})",
                                                   "s.json", false);
  EXPECT_EQ(toml.to_json(), json.to_json());
}

namespace {

// The error parse_experiment throws on `text` (read as bad.toml), or "no error".
std::string parse_error(const std::string& text) {
  try {
    fx::parse_experiment(text, "bad.toml", true);
  } catch (const flatmin::Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(ExperimentFile, ErrorsNameTheFileAndThePlace) {
  const auto message = parse_error;
  EXPECT_NE(message("name = \"x\"\n[train]\nlr = [").find("bad.toml:3:"), std::string::npos);
  EXPECT_NE(message("name = \"x\"\nsedes = [0]").find("unknown key 'sedes'"), std::string::npos);
  EXPECT_NE(message("[train]\nlr = 0.1").find("name = \"...\" is required"), std::string::npos);
  EXPECT_NE(message("name = \"x\"\nseeds = [1, 1]").find("seed 1 repeated"), std::string::npos);
  EXPECT_NE(message("name = \"x\"\n[pretrain]\nlr = [0.1, 0.2]").find("not allowed"), std::string::npos);
  EXPECT_NE(message("name = \"x\"\n[methods.sgd]\nmethod = \"sgd\"\n[report]\nhighlight = \"nso\"").find("highlight"),
            std::string::npos);
  EXPECT_NE(message("name = \"x\"\n[train]\nlr = { a = 1 }").find("train.lr"), std::string::npos);
}

// The paired comparisons' reference: given, or the plain base optimizer; a name that is no method is refused.
TEST(ExperimentFile, ReportReferenceIsGivenOrThePlainBaseOptimizer) {
  const auto parse = [](const std::string& text) { return fx::parse_experiment(text, "x.toml", true); };
  EXPECT_EQ(parse("name = \"x\"\n[methods.sgd]\nmethod = \"sgd\"\n[methods.nso]\nmethod = \"nso\"").reference_method(),
            "sgd");
  EXPECT_EQ(parse("name = \"x\"\n[methods.ls]\nmethod = \"sgd\"\nlabel-smoothing = 0.1\n[methods.base]\n"
                  "method = \"sgd\"\n[methods.nso]\nmethod = \"nso\"").reference_method(),
            "base");  // the first whose only option is method = "sgd"
  const fx::Experiment given =
      parse("name = \"x\"\n[methods.gd]\nmethod = \"sgd\"\n[methods.nso]\nmethod = \"nso\"\n[report]\nreference = \"nso\"");
  EXPECT_EQ(given.reference_method(), "nso");
  EXPECT_NE(given.to_json().find("\"reference\""), std::string::npos);
  EXPECT_EQ(parse("name = \"x\"\n[methods.nso]\nmethod = \"nso\"").reference_method(), "");
  // Without [report] reference the stored experiment is as before (older sweeps still match).
  EXPECT_EQ(parse("name = \"x\"\n[methods.sgd]\nmethod = \"sgd\"").to_json().find("\"reference\""), std::string::npos);
  EXPECT_NE(parse_error("name = \"x\"\n[methods.sgd]\nmethod = \"sgd\"\n[report]\nreference = \"adam\"")
                .find("report.reference: 'adam' is not one of [methods]"),
            std::string::npos);
  EXPECT_NE(parse_error("name = \"x\"\n[select]\nextend_edges = -1").find("select.extend_edges"), std::string::npos);
  EXPECT_NE(parse_error("name = \"x\"\n[report]\nbaseline = \"sgd\"").find("report.baseline: unknown"), std::string::npos);
}

TEST(ExperimentFile, CommandIsTrainOrSensing) {
  const auto message = parse_error;
  EXPECT_NE(message("name = \"x\"\ncommand = \"evaluate\"").find("not train or sensing"), std::string::npos);
  EXPECT_NE(message("name = \"x\"\ncommand = \"sensing\"\n[measure]\nmeasures = \"trace\"").find("no [pretrain] or [measure]"),
            std::string::npos);
  EXPECT_EQ(fx::parse_experiment("name = \"x\"", "c.toml", true).command, "train");
  // Absent from the normalised form for train: sweeps made before the key existed still match their file.
  EXPECT_EQ(fx::parse_experiment("name = \"x\"", "c.toml", true).to_json().find("command"), std::string::npos);
  EXPECT_NE(fx::parse_experiment("name = \"x\"\ncommand = \"sensing\"", "c.toml", true).to_json().find("sensing"),
            std::string::npos);
}

TEST(ExperimentPlan, QuickAxesFirstKeepsEachAxisFirstValue) {
  const std::string text = std::string(kSmall) + "\n[quick]\naxes = \"first\"\nseeds = [3]\n";
  const fx::Plan plan = fx::plan_experiment(fx::parse_experiment(text, "q.toml", true, /*quick=*/true), pending);
  std::vector<std::string> ids;
  for (const auto& run : plan.runs) ids.push_back(run.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"a/sgd/lr=0.1/seed3", "a/nso/lr=0.1,sigma=0.01/seed3",
                                           "b/sgd/lr=0.1/seed3", "b/nso/lr=0.1,sigma=0.01/seed3"}));
}

// The units a cluster's processes may start: each stage only once the one before it has finished on disk.
TEST(ExperimentUnits, EachStageBecomesRunnableOnlyWhenTheOneBeforeIsFinal) {
  const fx::Experiment e = fx::parse_experiment(R"(
name = "units"
seeds = [0, 1]
[pretrain]
classes = "0,1"
[methods.nso]
method = "nso"
sigma = [0.01, 0.02]
[select]
seeds = [0]
[measure]
measures = "trace"
)",
                                                "units.toml", true);
  std::map<std::string, fx::RunRecord> disk;  // run id -> what its directory shows
  auto record = [&](const fx::PlannedRun& run) {
    const auto it = disk.find(run.id);
    return it == disk.end() ? fx::RunRecord{} : it->second;
  };
  auto outcome = [&](const fx::PlannedRun& run) {
    const fx::RunRecord r = record(run);
    return fx::RunOutcome{r.status, run.id == "nso/sigma=0.02/seed0" ? 0.9 : 0.5};
  };
  auto units = [&] {
    const fx::Plan plan = fx::plan_experiment(e, outcome);
    std::vector<std::string> out;
    for (const auto& u : fx::runnable_units(plan, record))
      out.push_back(plan.runs[u.run].id + (u.step == fx::UnitStep::kTrain    ? " train"
                                           : u.step == fx::UnitStep::kResume ? " resume"
                                                                             : " measure"));
    return out;
  };
  auto set = [&](const std::string& id, fx::RunStatus status, const std::string& measured = "") {
    fx::RunRecord r;
    r.status = status;
    r.measure_status = measured;
    disk[id] = r;
  };
  using V = std::vector<std::string>;
  // The fine-tuning grid waits for the pretraining, even when the pretraining is interrupted or running.
  EXPECT_EQ(units(), V{"pretrain/seed0 train"});
  set("pretrain/seed0", fx::RunStatus::kInterrupted);
  EXPECT_EQ(units(), V{"pretrain/seed0 resume"});
  set("pretrain/seed0", fx::RunStatus::kRunning);
  EXPECT_EQ(units(), V{});
  set("pretrain/seed0", fx::RunStatus::kDone);
  EXPECT_EQ(units(), (V{"nso/sigma=0.01/seed0 train", "nso/sigma=0.02/seed0 train"}));
  // The reported seeds wait for the whole grid: one grid run final is not enough.
  set("nso/sigma=0.01/seed0", fx::RunStatus::kDone);
  set("nso/sigma=0.02/seed0", fx::RunStatus::kInterrupted);
  EXPECT_EQ(units(), V{"nso/sigma=0.02/seed0 resume"});
  // Once the grid is final, sigma=0.02 is chosen: its grid run (now also reported) is measured, seed 1 trains;
  // the losing setting's run is neither measured nor listed again.
  set("nso/sigma=0.02/seed0", fx::RunStatus::kDone);
  EXPECT_EQ(units(), (V{"nso/sigma=0.02/seed0 measure", "nso/sigma=0.02/seed1 train"}));
  set("nso/sigma=0.02/seed0", fx::RunStatus::kDone, "done");
  set("nso/sigma=0.02/seed1", fx::RunStatus::kDone);
  EXPECT_EQ(units(), V{"nso/sigma=0.02/seed1 measure"});
  // Failed measurements and runs are final: nothing is left to list, and the list stays empty.
  set("nso/sigma=0.02/seed1", fx::RunStatus::kDone, "failed");
  EXPECT_EQ(units(), V{});
}

TEST(ExperimentUnits, RunsStartingFromAFailedPretrainingAreBlockedNotListed) {
  const fx::Experiment e = fx::parse_experiment(R"(
name = "blocked"
[pretrain]
classes = "0,1"
[methods.sgd]
method = "sgd"
)",
                                                "blocked.toml", true);
  const fx::Plan plan = fx::plan_experiment(e, pending);
  auto record = [](const fx::PlannedRun& run) {
    fx::RunRecord r;
    if (run.stage == "pretrain") r.status = fx::RunStatus::kFailed;
    return r;
  };
  EXPECT_TRUE(fx::runnable_units(plan, record).empty());
}

}  // namespace plan_test
