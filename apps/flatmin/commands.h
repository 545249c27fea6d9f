#pragma once
// The flatmin CLI: each subcommand registers its options on the app and returns the action to run.

#include <functional>

#include <CLI/CLI.hpp>

#include "flatmin/jobs/options.h"
#include "flatmin/jobs/train.h"

namespace flatmin::cli {

using Action = std::function<int()>;

/// Exit codes beyond 0 (done), 1 (error) and 2 (bad usage), as the jobs define them.
using jobs::kExitDiverged;
using jobs::kExitInterrupted;
/// The option checks and the shared --device / --precision options.
using jobs::add_device_option;
using jobs::add_precision_option;
using jobs::integer_in;
using jobs::number_at_least;
using jobs::number_between;

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
