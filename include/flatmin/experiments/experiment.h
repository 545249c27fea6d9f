#pragma once
/// An experiment: many `flatmin train` runs described by one file (TOML, or the same structure in JSON).
/// Options are `flatmin train`'s long names without the dashes; a list value is an axis (every value is
/// tried); the runs are the product of the tasks, the methods, their axes and the seeds. Optionally a
/// pretraining stage that every other run starts from (--init), a selection of each (task, method)'s
/// setting on validation, and flatness measurements of the reported runs. docs/SWEEPS.md has the format.
///
///   name = "finetune"
///   seeds = [0, 1, 2, 3, 4]
///   [train]              model = "resnet18"  width = 8  epochs = 10
///   [pretrain]           classes = "0,1,2,3,4"  method = "sgd"
///   [tasks.fm5-50]       classes = "5,6,7,8,9"  per-class = 50
///   [methods.nso]        method = "nso"  sigma = [0.005, 0.01, 0.02]
///   [select]             metric = "val_acc"  seeds = [0]
///   [measure]            measures = "trace,eigen"  top-k = 1
///   [quick]              seeds = [0, 1]  train = { epochs = 1 }

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace flatmin::experiments {

/// Options in the order given: (long name without "--", value as the command line takes it). A flag's
/// value is "true" or "false".
using Options = std::vector<std::pair<std::string, std::string>>;

/// An option tried at several values.
struct Axis {
  std::string name;
  std::vector<std::string> values;
};

/// A table of options: fixed values and axes.
struct OptionSet {
  std::string name;  ///< the task's or method's name ("" for [train])
  Options fixed;
  std::vector<Axis> axes;
};

/// Choosing each (task, method)'s setting on validation.
struct Selection {
  std::string metric = "val_acc";  ///< a column of the runs' metrics (its last epoch)
  bool maximize = true;            ///< default: max for accuracies, min for losses
  std::vector<int64_t> seeds{0};   ///< seeds of the grid runs; the mean over them decides
  /// When the choice lies on the edge of a numeric axis (its smallest or largest value), the axis grows by
  /// one value beyond that edge (the grid's own ratio, or step where a value is ≤ 0) and the new settings are
  /// tried; at most this many times per axis of each (task, method) ([select] extend_edges; 0: never).
  int64_t extend_edges = 0;
};

struct Experiment {
  std::string name;
  std::string description;
  std::string file;                       ///< where it was read from
  OptionSet train;                        ///< every run
  std::optional<OptionSet> pretrain;      ///< fixed options only; trained once, the others start from it
  int64_t pretrain_seed = 0;
  std::vector<OptionSet> tasks;           ///< empty: one task without a name
  std::vector<OptionSet> methods;         ///< empty: one method, "default"
  std::vector<int64_t> seeds{0};          ///< the reported runs' seeds
  std::optional<Selection> select;
  std::optional<Options> measure;         ///< `flatmin geometry` options for every reported run
  Options overrides;                      ///< applied last to every run (the --quick form); replaces axes
  std::string highlight;                  ///< the method whose change the report states ([report] highlight)
  /// The method every other is compared with, seed by seed ([report] reference); empty: the plain base
  /// optimizer (reference_method()).
  std::string reference;
  /// Further paired comparisons the claims need ([report] pairs = ["a:b", ...]: method a against method b,
  /// seed by seed), such as NSO against its no-negative ablation at the same cost.
  std::vector<std::pair<std::string, std::string>> pairs;
  /// The command every run is: "train" (default) or "sensing" (the matrix sensing simulation: no
  /// pretraining, no [measure]; its runs write their exact Hessian trace themselves).
  std::string command = "train";

  /// The paired comparisons' reference: `reference` when given, else the method named "sgd", else the first
  /// whose only option is method = "sgd" (the base optimizer alone); empty when there is none.
  std::string reference_method() const;

  /// The experiment as normalised JSON (what the sweep stores and compares on a rerun).
  std::string to_json(int indent = 2) const;

  /// Whether `stored` (an earlier to_json) plans the same runs: equal but for [report], which says only how
  /// to present them, so a sweep root takes a changed [report] without starting over.
  bool plans_same_runs_as(const std::string& stored) const;
};

/// Reads an experiment file (.toml, or .json). With `quick`, its [quick] table is applied: seeds,
/// select-seeds, axes = "first" (every axis keeps its first value), and option overrides for every run (`train`), the pretraining (`pretrain`) and the
/// measurements (`measure`). Throws flatmin::Error "<file>:<line>:<column>: ..." or "<file>: <key>: ...".
Experiment load_experiment(const std::string& path, bool quick = false);

/// The same from text (`name` for messages; `toml` picks the syntax).
Experiment parse_experiment(const std::string& text, const std::string& name, bool toml, bool quick = false);

}  // namespace flatmin::experiments
