#pragma once
/// A whole training run from one declarative config: split → model → method + base optimizer → Trainer.
/// The CLI, the tests and the experiments all go through here, so they run the same thing.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/arg.h>

#include "flatmin/data/dataset.h"
#include "flatmin/models/models.h"
#include "flatmin/optim/base_optimizer.h"
#include "flatmin/optim/methods.h"
#include "flatmin/optim/perturbed_optimizer.h"
#include "flatmin/training/losses.h"
#include "flatmin/training/pretrained.h"
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
  /// Fine-tuning: start from a pretrained checkpoint (see with_pretrained_defaults). L2-SP's W₀ is then the
  /// pretrained weights (with the fresh classifier where it was re-initialised).
  TORCH_ARG(InitOptions, init) = {};

 public:
  /// Everything above as JSON (for config.json and checkpoints).
  std::string to_json(int indent = 2) const;
  /// The inverse of to_json: from_json(c.to_json()).to_json() == c.to_json(). Throws flatmin::Error.
  static RunConfig from_json(const std::string& text);
};

/// `config` completed from its init file (when config.init().path() is set): the model's architecture and
/// width, the file's checksum, and its data normalisation (unless the config sets one or does not
/// normalise). Throws flatmin::Error on a missing or corrupt file, or a checksum that changed.
RunConfig with_pretrained_defaults(RunConfig config);

/// The model a run of `config` starts from, for the data shapes in `spec` (channels, size, classes):
/// the seeded initialisation, then the pretrained weights when config.init() names a file. `report`, if
/// given, receives what loading them did.
models::Model build_initial_model(const RunConfig& config, const models::ModelSpec& spec,
                                  PretrainedReport* report = nullptr);

struct RunResult {
  std::vector<EpochMetrics> history;
  models::ModelSpec spec;  ///< the model as built (channels, size and classes filled in)
  models::Model model;
  std::shared_ptr<optim::PerturbedOptimizer> optimizer;
  data::Splits splits;
  int64_t parameter_count = 0;
  /// The position the run was resumed from (nullopt for a fresh run): its history is already in
  /// `history` before the first on_epoch call.
  std::optional<TrainerState> resumed_from;
  /// What starting from a pretrained network did (nullopt without config.init()).
  std::optional<PretrainedReport> pretrained;
};

/// Called once everything is built, before the first step (to print or record the setup).
using RunStartCallback = std::function<void(const RunResult& setup)>;

/// How a run is kept and resumed; none of it changes what the run computes.
struct RunControl {
  /// Where step checkpoints go (<dir>/step-<steps>.ckpt); "" = none.
  TORCH_ARG(std::string, checkpoint_dir) = "";
  /// Write one every N steps too (0 = at epoch ends only).
  TORCH_ARG(int64_t, checkpoint_every_steps) = 0;
  /// Keep the newest K step checkpoints (older ones are deleted after a new one is written).
  TORCH_ARG(int64_t, keep_checkpoints) = 2;
  /// A checkpoint written by this config's run to continue from ("" = start fresh).
  TORCH_ARG(std::string, resume_from) = "";
  /// Polled after every step; true = write a checkpoint and stop with TrainingInterrupted.
  TORCH_ARG(std::function<bool()>, stop_requested) = nullptr;
  /// Extra measurements after each epoch (Trainer::set_epoch_measure), e.g. geometry::measure_scalars.
  TORCH_ARG(Trainer::EpochMeasure, epoch_measure) = nullptr;
  /// Where the model, its batches, the methods' buffers and the noise live. Not part of the config: a run
  /// checkpointed on one device resumes on another (bitwise equal only on the same device).
  TORCH_ARG(c10::Device, device) = c10::Device(c10::DeviceType::CPU);
  /// The optimizer's finiteness check every N steps (PerturbedOptimizerOptions::check_finite_every);
  /// 0 = every step on the CPU (where it costs no wait), every kDeviceCheckEvery steps elsewhere (every
  /// step when non-finite steps are to be skipped).
  TORCH_ARG(int64_t, check_finite_every) = 0;
  /// Several processes computing each step (distributed/: data- or perturbation-parallel). Data-parallel
  /// processes train on their shards of every batch. A stop request counts when any process has one.
  TORCH_ARG(optim::Parallelism, parallelism) = {};
};

/// The default finiteness-check interval off the CPU: a wait for the device every 25 steps.
constexpr int64_t kDeviceCheckEvery = 25;

/// Runs the config on `data`. Throws flatmin::Error on an invalid config, TrainingDiverged on a
/// non-finite step (DivergencePolicy::kStop), TrainingInterrupted on a requested stop. A resumed run
/// ends bitwise equal to the uninterrupted one and returns its whole history.
RunResult run_training(const RunConfig& config, const data::TrainTest& data, const RunStartCallback& on_start = {},
                       const Trainer::EpochCallback& on_epoch = {}, Progress* progress = nullptr,
                       const RunControl& control = {});

}  // namespace flatmin::training
