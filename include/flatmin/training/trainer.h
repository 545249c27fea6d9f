#pragma once
/// The one training loop: any model, any PerturbedOptimizer (hence any method), per-epoch evaluation.

#include <cstdint>
#include <functional>
#include <optional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>
#include <torch/arg.h>

#include "flatmin/core/device.h"
#include "flatmin/core/error.h"

#include "flatmin/data/augment.h"
#include "flatmin/data/dataset.h"
#include "flatmin/models/models.h"
#include "flatmin/optim/perturbed_optimizer.h"
#include "flatmin/training/losses.h"
#include "flatmin/training/lr_schedule.h"
#include "flatmin/training/progress.h"

namespace torch::serialize {
class OutputArchive;
class InputArchive;
}  // namespace torch::serialize

namespace flatmin::training {

enum class DivergencePolicy { kStop, kSkip };

/// "stop" | "skip"; throws flatmin::Error otherwise.
DivergencePolicy parse_divergence_policy(const std::string& name);

/// The evaluation batch size measured fastest here for every model (docs/PERFORMANCE.md).
constexpr int64_t kDefaultEvalBatchSize = 100;

struct TrainerOptions {
  TORCH_ARG(int64_t, epochs) = 10;
  TORCH_ARG(int64_t, batch_size) = 64;
  TORCH_ARG(LrSchedule, lr_schedule) = {};
  /// Seed of the shuffling stream.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Examples per evaluation pass. Large batches are slower on the CPU, not faster: activations above
  /// glibc's 32 MiB mmap ceiling are mapped and unmapped per batch (docs/PERFORMANCE.md).
  TORCH_ARG(int64_t, eval_batch_size) = kDefaultEvalBatchSize;
  /// Validation is scored after every epoch; the test set and the clean training subset after the last
  /// epoch and, when N > 0, after every N-th (the other epochs' rows hold NaN there): scoring 10,000 test
  /// examples every epoch of a small run costs more than training it.
  TORCH_ARG(int64_t, eval_every) = 0;
  /// Training examples scored (clean, eval mode) with the test set; 0 = the whole training split.
  TORCH_ARG(int64_t, train_eval_size) = 10000;
  TORCH_ARG(bool, drop_last) = false;
  /// Random crop + flip of every training batch (when enabled), before the step: all evaluation points
  /// of a step see the same augmented batch. Evaluation is never augmented.
  TORCH_ARG(data::AugmentOptions, augment) = {};
  /// What a non-finite loss or gradient does (the optimizer skips such a step either way): stop the run
  /// with TrainingDiverged, or go on and count the step in EpochMetrics::skipped_steps.
  TORCH_ARG(DivergencePolicy, on_divergence) = DivergencePolicy::kStop;
  /// Call the checkpoint writer every N steps (0 = only at epoch ends, where it is always called).
  TORCH_ARG(int64_t, checkpoint_every_steps) = 0;
  /// Forward passes in bf16 autocast or in fp32; weights, gradients, noise and the methods' combination stay
  /// fp32 either way. The model's device (where its parameters are) is where batches go.
  TORCH_ARG(Precision, precision) = Precision::kFloat32;
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
  double eval_seconds = 0;           ///< scoring train/val/test after the epoch
  double measure_seconds = 0;        ///< the epoch measurements (set_epoch_measure)
  int64_t skipped_steps = 0;         ///< cumulative: steps skipped as non-finite (DivergencePolicy::kSkip)
  /// Extra per-epoch measurements (e.g. the Hessian trace), from Trainer::set_epoch_measure.
  std::vector<std::pair<std::string, double>> measures;
};

/// Where a run stands between two steps. With the model's weights and buffers and the optimizer's state
/// (base, method, step count — hence the noise), it decides the rest of the run exactly.
struct TrainerState {
  int64_t epoch = 0;              ///< the epoch in progress (0-based)
  int64_t batch = 0;              ///< the next batch of that epoch
  at::Tensor shuffle_state;       ///< the Batcher's generator before that epoch's permutation was drawn
  at::Tensor augment_state;       ///< the Augmenter's generator now (undefined without augmentation)
  double objective_sum = 0;       ///< over the epoch's applied steps
  int64_t objective_count = 0;    ///< the epoch's applied steps
  double train_seconds = 0;       ///< of the epoch so far
  int64_t skipped_steps = 0;      ///< cumulative
  std::vector<double> initial_lr; ///< per parameter group: the schedule's reference
  std::vector<EpochMetrics> history;  ///< the finished epochs

  void save(torch::serialize::OutputArchive& archive) const;
  void load(torch::serialize::InputArchive& archive);
};

/// Thrown when a step is non-finite under DivergencePolicy::kStop; the model holds the last good weights.
class TrainingDiverged : public Error {
 public:
  TrainingDiverged(const std::string& message, TrainerState state) : Error(message), state_(std::move(state)) {}
  const TrainerState& state() const { return state_; }

 private:
  TrainerState state_;
};

/// Thrown after a requested stop (signal): the checkpoint writer has been called with `state()`.
class TrainingInterrupted : public Error {
 public:
  TrainingInterrupted(const std::string& message, TrainerState state) : Error(message), state_(std::move(state)) {}
  const TrainerState& state() const { return state_; }

 private:
  TrainerState state_;
};

class Trainer {
 public:
  Trainer(models::Model model, std::shared_ptr<optim::PerturbedOptimizer> optimizer, TrainerOptions options = {});

  /// Cross-entropy by default (make_loss in losses.h: with label smoothing).
  void set_loss(LossFn loss) { loss_ = std::move(loss); }

  using EpochCallback = std::function<void(const EpochMetrics&)>;
  /// Writes a checkpoint of the model, the optimizer and `state` (run_training supplies one). Called every
  /// checkpoint_every_steps steps, after every epoch (after on_epoch) and on a requested stop.
  using CheckpointWriter = std::function<void(const TrainerState& state)>;
  void set_checkpoint_writer(CheckpointWriter writer) { checkpoint_writer_ = std::move(writer); }
  /// Polled after every step; when it returns true the Trainer writes a checkpoint and throws
  /// TrainingInterrupted (e.g. on SIGINT / SIGTERM).
  void set_stop_request(std::function<bool()> stop) { stop_requested_ = std::move(stop); }
  /// Measurements made after each epoch's evaluation (the model at the epoch's end), stored in
  /// EpochMetrics::measures and so in the checkpointed history. Must return the same names every epoch.
  using EpochMeasure = std::function<std::vector<std::pair<std::string, double>>(const EpochMetrics& epoch)>;
  void set_epoch_measure(EpochMeasure measure) { epoch_measure_ = std::move(measure); }
  /// Data-parallel processes: this one trains on rows [rank·n/count, (rank+1)·n/count) of every batch of n
  /// (cut after augmentation, so every process draws what one process would), its loss scaled by
  /// shard·count/n so that the processes' mean loss is the whole batch's.
  void set_shard(int rank, int count);
  /// Several processes: this one scores rows [rank·n/count, (rank+1)·n/count) of every evaluated split and
  /// `sum` (in place, across the processes) adds up their loss sums and correct counts, so that each gets
  /// the whole split's scores for a count-th of the work.
  void share_evaluation(int rank, int count, std::function<void(const std::vector<at::Tensor>&)> sum);
  /// Continue from `state` (the model and optimizer must already hold the checkpoint's weights and state).
  void resume_from(TrainerState state) { resume_ = std::move(state); }

  /// Trains until options.epochs epochs are done on splits.train, scoring train/val/test after each, and
  /// returns every epoch's metrics (a resumed run's earlier ones included). Throws TrainingDiverged on a
  /// non-finite step under kStop (naming the epoch, step and quantity) and TrainingInterrupted on a stop.
  std::vector<EpochMetrics> fit(const data::Splits& splits, const EpochCallback& on_epoch = {},
                                Progress* progress = nullptr);

 private:
  models::Model model_;
  std::shared_ptr<optim::PerturbedOptimizer> optimizer_;
  TrainerOptions options_;
  LossFn loss_;
  CheckpointWriter checkpoint_writer_;
  std::function<bool()> stop_requested_;
  EpochMeasure epoch_measure_;
  std::optional<TrainerState> resume_;
  int shard_rank_ = 0;
  int shard_count_ = 1;
  int eval_rank_ = 0;
  int eval_count_ = 1;
  std::function<void(const std::vector<at::Tensor>&)> eval_sum_;

  EvalResult score(const data::Dataset& data) const;
};

}  // namespace flatmin::training
