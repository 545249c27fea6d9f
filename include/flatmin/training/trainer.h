#pragma once
/// The one training loop: any model, any PerturbedOptimizer (hence any method), per-epoch evaluation.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>
#include <torch/arg.h>

#include "flatmin/data/augment.h"
#include "flatmin/data/dataset.h"
#include "flatmin/models/models.h"
#include "flatmin/optim/perturbed_optimizer.h"
#include "flatmin/training/losses.h"
#include "flatmin/training/lr_schedule.h"
#include "flatmin/training/progress.h"

namespace flatmin::training {

struct TrainerOptions {
  TORCH_ARG(int64_t, epochs) = 10;
  TORCH_ARG(int64_t, batch_size) = 64;
  TORCH_ARG(LrSchedule, lr_schedule) = {};
  /// Seed of the shuffling stream.
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(int64_t, eval_batch_size) = 1000;
  /// Training examples scored (clean, eval mode) after each epoch; 0 = the whole training split.
  TORCH_ARG(int64_t, train_eval_size) = 10000;
  TORCH_ARG(bool, drop_last) = false;
  /// Random crop + flip of every training batch (when enabled), before the step: all evaluation points
  /// of a step see the same augmented batch. Evaluation is never augmented.
  TORCH_ARG(data::AugmentOptions, augment) = {};
};

struct EvalResult {
  double loss = 0;
  double accuracy = 0;
  int64_t count = 0;
};

/// Mean loss and accuracy of `model` on `data` in eval mode without gradients; the model's mode is
/// restored afterwards. An empty dataset gives count 0 (and NaN loss and accuracy).
EvalResult evaluate(const models::Model& model, const data::Dataset& data, int64_t batch_size);

struct EpochMetrics {
  int64_t epoch = 0;                 ///< 1-based
  int64_t steps = 0;                 ///< cumulative
  int64_t gradient_evaluations = 0;  ///< cumulative: the cost in SGD-step units
  double lr = 0;                     ///< of the first group, at the epoch's last step
  std::vector<std::pair<std::string, double>> method_scalars;  ///< σ, ρ, ... during the epoch
  double objective = 0;              ///< mean over the epoch of the loss at the evaluation points
  EvalResult train, val, test;       ///< clean, eval mode
  double train_seconds = 0;          ///< training steps only
  double ms_per_step = 0;
};

class Trainer {
 public:
  Trainer(models::Model model, std::shared_ptr<optim::PerturbedOptimizer> optimizer, TrainerOptions options = {});

  /// Cross-entropy by default (make_loss in losses.h: with label smoothing).
  void set_loss(LossFn loss) { loss_ = std::move(loss); }

  using EpochCallback = std::function<void(const EpochMetrics&)>;
  /// Trains for options.epochs epochs on splits.train, scoring train/val/test after each. Throws
  /// flatmin::Error when the loss becomes non-finite (naming the epoch and step).
  std::vector<EpochMetrics> fit(const data::Splits& splits, const EpochCallback& on_epoch = {},
                                Progress* progress = nullptr);

 private:
  models::Model model_;
  std::shared_ptr<optim::PerturbedOptimizer> optimizer_;
  TrainerOptions options_;
  LossFn loss_;
};

}  // namespace flatmin::training
