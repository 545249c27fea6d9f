#pragma once
/// A whole training run from one declarative config: split → model → method + base optimizer → Trainer.
/// The CLI, the tests and the experiments all go through here, so they run the same thing.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>

#include "flatmin/data/dataset.h"
#include "flatmin/models/models.h"
#include "flatmin/optim/base_optimizer.h"
#include "flatmin/optim/methods.h"
#include "flatmin/optim/perturbed_optimizer.h"
#include "flatmin/training/losses.h"
#include "flatmin/training/trainer.h"

namespace flatmin::training {

struct RunConfig {
  TORCH_ARG(optim::MethodSpec, method) = {};
  TORCH_ARG(models::ModelSpec, model) = {};  ///< channels, image size and classes are taken from the data
  TORCH_ARG(data::SplitOptions, split) = {};  ///< its seed is derived from `seed`
  TORCH_ARG(optim::BaseOptimizerOptions, optimizer) = {};
  TORCH_ARG(TrainerOptions, trainer) = {};    ///< its seed (and its augmentation's) are derived from `seed`
  TORCH_ARG(double, max_grad_norm) = 0.0;
  /// The training loss (label smoothing); evaluation always scores plain cross-entropy.
  TORCH_ARG(LossOptions, loss) = {};
  /// L2-SP λ: λ·‖W − W₀‖² to the weights at the start of the run (W₀ = the initialisation here), added
  /// as 2λ(W − W₀) to the combined gradient at W (optim::L2Sp). 0 = off.
  TORCH_ARG(double, l2sp) = 0.0;
  /// The one seed of the run: model init, split, shuffling and noise each get an independent stream.
  TORCH_ARG(uint64_t, seed) = 0;

 public:
  /// Everything above as JSON (for config.json).
  std::string to_json(int indent = 2) const;
};

struct RunResult {
  std::vector<EpochMetrics> history;
  models::ModelSpec spec;  ///< the model as built (channels, size and classes filled in)
  models::Model model;
  std::shared_ptr<optim::PerturbedOptimizer> optimizer;
  data::Splits splits;
  int64_t parameter_count = 0;
};

/// Called once everything is built, before the first step (to print or record the setup).
using RunStartCallback = std::function<void(const RunResult& setup)>;

/// Runs the config on `data`. Throws flatmin::Error on an invalid config.
RunResult run_training(const RunConfig& config, const data::TrainTest& data, const RunStartCallback& on_start = {},
                       const Trainer::EpochCallback& on_epoch = {}, Progress* progress = nullptr);

}  // namespace flatmin::training
