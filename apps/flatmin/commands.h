#pragma once
// The flatmin CLI: each subcommand registers its options on the app and returns the action to run.

#include <functional>

#include <CLI/CLI.hpp>

namespace flatmin::cli {

using Action = std::function<int()>;

/// Exit codes beyond 0 (done), 1 (error) and 2 (bad usage); `flatmin sweep` reads them from its runs.
constexpr int kExitDiverged = 3;       ///< the loss became non-finite: the sweep records the run as diverged
constexpr int kExitInterrupted = 130;  ///< stopped by SIGINT / SIGTERM after a checkpoint: resumable

/// Adds `flatmin train`; the returned action runs it after parsing.
Action add_train_command(CLI::App& app);

/// Adds `flatmin geometry` (flatness measurements of a checkpoint); the returned action runs it after parsing.
Action add_geometry_command(CLI::App& app);

/// Adds `flatmin landscape` (loss landscapes of checkpoints); the returned action runs it after parsing.
Action add_landscape_command(CLI::App& app);

/// Adds `flatmin export` (a trained model as TorchScript for Python); the returned action runs it after parsing.
Action add_export_command(CLI::App& app);

/// Adds `flatmin sensing` (the matrix sensing simulation); the returned action runs it after parsing.
Action add_sensing_command(CLI::App& app);

/// Adds `flatmin sweep` (every run of an experiment file, resumably); the returned action runs it after parsing.
Action add_sweep_command(CLI::App& app);

/// Adds `flatmin launch` (one training run, or one measurement, in several local processes); the returned action runs it.
Action add_launch_command(CLI::App& app);

/// Adds `flatmin report` (a sweep's tables, figures and HTML page); the returned action runs it after parsing.
Action add_report_command(CLI::App& app);

}  // namespace flatmin::cli
