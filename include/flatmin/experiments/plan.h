#pragma once
/// From an experiment and the results so far to the runs it needs: the pretraining, the grid runs that
/// select each (task, method)'s setting, and the reported runs of the chosen settings over the seeds. The
/// plan is a pure function of the experiment and the finished runs' outcomes, so a sweep restarted at any
/// moment plans exactly the runs an uninterrupted one would.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "flatmin/experiments/experiment.h"

namespace flatmin::experiments {

enum class RunStatus { kPending, kRunning, kInterrupted, kDone, kDiverged, kFailed };

/// "pending" | "running" | "interrupted" | "done" | "diverged" | "failed".
std::string to_string(RunStatus status);
/// Done, diverged or failed: the run will not change any more.
bool is_final(RunStatus status);

/// One `flatmin train` run of the sweep.
struct PlannedRun {
  std::string id;            ///< "fm5-50/nso/sigma=0.01/seed0" (task/method/setting/seed), "pretrain/seed0"
  std::string dir;           ///< "runs/" + id, relative to the sweep's root
  std::string stage;         ///< "pretrain" or "train"
  std::string task;          ///< "" without tasks
  std::string method;        ///< the method's name in the experiment ("default" without methods)
  Options setting;           ///< the axes' values of this run
  std::string setting_name;  ///< "sigma=0.01,rho=0.05", "default" without axes
  int64_t seed = 0;
  std::vector<std::string> roles;  ///< "pretrain", "grid" (selects), "final" (reported)
  Options options;           ///< flatmin train's options, in order (later ones win), without out/seed/init
  std::string init_dir;      ///< the run whose model.ckpt it starts from ("" = none)
  bool measure = false;      ///< flatness measured after training (a reported run of an experiment with [measure])

  bool has_role(const std::string& role) const;
  /// The command line's arguments after `flatmin train`: --name=value per option, flags as --name=true.
  std::vector<std::string> train_arguments(const std::string& root) const;
};

/// What the sweep knows of a run.
struct RunOutcome {
  RunStatus status = RunStatus::kPending;
  double metric = 0;  ///< the selection metric of a done run
};

/// One (task, method)'s choice: the candidates' mean metric over the done grid runs.
struct Candidate {
  Options setting;
  std::string setting_name;
  double value = 0;  ///< mean over `runs` done runs (NaN when none is done)
  int64_t runs = 0;
  int64_t unfinished = 0;  ///< grid runs not yet done, diverged or failed
};

struct GroupSelection {
  std::string task, method;
  std::vector<Candidate> candidates;
  int64_t chosen = -1;  ///< index into candidates; -1 until every grid run is final (or none is done)
  /// The chosen setting's grid edges, one line each ("sigma=0.012 is the largest tried"): an optimum may
  /// lie beyond. Empty when every numeric axis was bracketed.
  std::vector<std::string> edges;
  /// The values each axis gained by select.extend_edges (name → how many), in axis order.
  std::vector<std::pair<std::string, int64_t>> extended;
};

struct Plan {
  std::vector<PlannedRun> runs;             ///< every run known so far (a run in two roles appears once)
  std::vector<GroupSelection> selection;    ///< empty without [select]
  bool complete = false;                    ///< every selection is made: no more runs will be added
};

/// The best candidate: the highest (or lowest) mean. Ties go to the middle one of the tied candidates in grid
/// order (the lower middle of an even number): the setting farthest from the tied block's ends, not the one
/// the grid happens to list first. -1 when none has a done run.
int64_t best_candidate(const std::vector<Candidate>& candidates, bool maximize);

/// Plans the runs of `experiment` given the outcomes known now (`outcome(run)` for any planned run).
Plan plan_experiment(const Experiment& experiment, const std::function<RunOutcome(const PlannedRun&)>& outcome);

/// Per-run state the sweep records next to the plan (manifest.json).
struct RunRecord {
  RunStatus status = RunStatus::kPending;
  int exit_code = 0;
  double seconds = 0;
  std::string error;  ///< one line, for failed and diverged runs
  std::string measure_status;  ///< "", "done", "failed" (flatness measurement)
};

/// The next step of a run that can start now (a unit of work for one process).
enum class UnitStep {
  kTrain,    ///< train from scratch (or from the pretraining's model)
  kResume,   ///< continue an interrupted run from its newest checkpoint
  kMeasure,  ///< the run is done: measure its model's flatness ([measure])
};

struct RunnableUnit {
  size_t run = 0;  ///< index into Plan::runs
  UnitStep step = UnitStep::kTrain;
};

/// The units that can start now, in the plan's order: every pending or interrupted run whose pretraining is
/// done (a fine-tuning run waits for it; one whose pretraining failed is blocked), and every done run still to
/// be measured. Runs the plan does not hold yet (the reported seeds of a selection not made) are not there:
/// they appear once the grid is final. A run recorded as running is not runnable. Empty when nothing can
/// start any more: every run is final (done, diverged or failed), or waits on a run that failed.
std::vector<RunnableUnit> runnable_units(const Plan& plan, const std::function<RunRecord(const PlannedRun&)>& record);

/// The sweep's manifest (docs/SWEEPS.md): the experiment, and every run with its status. `record(run)` gives
/// each run's state.
std::string manifest_json(const Experiment& experiment, const Plan& plan, const std::string& command,
                          const std::function<RunRecord(const PlannedRun&)>& record);
/// The selection as JSON (selection.json).
std::string selection_json(const Experiment& experiment, const Plan& plan);

}  // namespace flatmin::experiments
