#pragma once
/// `flatmin train` as one library call. The CLI (`flatmin train ...`) and Python (`flatmin.train(...)`) are two
/// faces of it: each fills a TrainJob (through the one definition of its options, jobs/options.h) and calls
/// run_train_job, which builds the run, trains it, and writes config.json, the metrics files, checkpoints,
/// summary.json and model.ckpt into the run's directory.

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>

#include "flatmin/training/run.h"
#include "flatmin/training/trainer.h"

namespace flatmin::jobs {

/// Every option of `flatmin train`, named as its flag (--per-class → per_class); `flatmin train --help` and
/// jobs/options.h say what each means.
struct TrainJob {
  // method
  TORCH_ARG(std::string, method) = "nso";
  TORCH_ARG(double, sigma) = 0.01;
  TORCH_ARG(int64_t, k) = 1;
  TORCH_ARG(bool, no_negative) = false;
  TORCH_ARG(std::string, noise) = "gaussian";
  TORCH_ARG(std::string, sigma_schedule) = "constant";
  TORCH_ARG(int64_t, sigma_warmup_epochs) = 0;
  // SAM family (negative = the method's default / off)
  TORCH_ARG(double, rho) = -1.0;
  TORCH_ARG(double, asam_eta) = 0.01;
  TORCH_ARG(double, rsam_sigma) = 0.01;
  TORCH_ARG(double, rsam_lambda) = 2.0;
  TORCH_ARG(double, rsam_sigma_start) = -1.0;
  TORCH_ARG(double, rsam_rho_end) = -1.0;
  TORCH_ARG(int64_t, bsam_train_size) = 0;
  TORCH_ARG(double, bsam_prior_precision) = 25.0;
  TORCH_ARG(double, bsam_damping) = 0.1;
  TORCH_ARG(double, bsam_init_precision) = 1.0;
  TORCH_ARG(double, bsam_beta1) = 0.9;
  TORCH_ARG(double, bsam_beta2) = 0.999;
  TORCH_ARG(double, bsam_noise_std) = 0.0;
  TORCH_ARG(std::string, bsam_prior_mean) = "zero";
  TORCH_ARG(std::string, bsam_bn_statistics) = "both";
  TORCH_ARG(double, crsam_alpha) = 0.1;
  TORCH_ARG(double, crsam_beta) = 0.01;
  // regularisation and augmentation
  TORCH_ARG(double, label_smoothing) = 0.0;
  TORCH_ARG(double, l2sp) = 0.0;
  TORCH_ARG(bool, augment) = false;
  TORCH_ARG(int64_t, augment_padding) = 4;
  TORCH_ARG(bool, no_flip) = false;
  // model
  TORCH_ARG(std::string, model) = "mlp";
  TORCH_ARG(std::string, activation) = "relu";
  TORCH_ARG(int64_t, width) = 0;
  TORCH_ARG(std::string, model_file) = {};
  // data
  TORCH_ARG(std::string, dataset) = "fashion-mnist";
  TORCH_ARG(std::string, data_dir) = {};  // empty: Fashion-MNIST's default directory
  TORCH_ARG(std::string, cifar100_labels) = "fine";
  TORCH_ARG(int64_t, image_size) = 0;
  TORCH_ARG(std::string, cache_dir) = {};
  TORCH_ARG(int64_t, val_size) = 5000;
  TORCH_ARG(std::vector<int64_t>, classes) = {};
  TORCH_ARG(int64_t, per_class) = 0;
  TORCH_ARG(int64_t, test_size) = 0;
  TORCH_ARG(bool, no_normalize) = false;
  TORCH_ARG(double, label_noise) = 0.0;
  // fine-tuning
  TORCH_ARG(std::string, init) = {};
  TORCH_ARG(bool, reset_head) = false;
  TORCH_ARG(std::vector<std::string>, freeze) = {};
  /// Set where the user named --model, --width, --activation: with --init they must agree with the init file.
  TORCH_ARG(bool, model_given) = false;
  TORCH_ARG(bool, width_given) = false;
  TORCH_ARG(bool, activation_given) = false;
  // optimisation
  TORCH_ARG(std::string, optimizer) = "sgd";
  TORCH_ARG(int64_t, epochs) = 10;
  TORCH_ARG(int64_t, batch_size) = 64;
  TORCH_ARG(double, lr) = -1.0;  // negative: 0.05, or bSAM's α 0.5 for bsam
  TORCH_ARG(double, momentum) = 0.9;
  TORCH_ARG(bool, nesterov) = false;
  TORCH_ARG(double, weight_decay) = 0.0;
  TORCH_ARG(std::string, lr_schedule) = "cosine";
  TORCH_ARG(int64_t, lr_step_epochs) = 10;
  TORCH_ARG(double, lr_gamma) = 0.1;
  TORCH_ARG(double, max_grad_norm) = 0.0;
  // run
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(std::string, out) = {};
  TORCH_ARG(int, threads) = 0;
  TORCH_ARG(std::string, progress) = "auto";
  TORCH_ARG(int64_t, train_eval_size) = 10000;
  TORCH_ARG(int64_t, eval_batch_size) = training::kDefaultEvalBatchSize;
  TORCH_ARG(int64_t, eval_every) = 0;
  TORCH_ARG(bool, no_save_model) = false;
  // keeping and resuming
  TORCH_ARG(int64_t, checkpoint_every) = 0;
  TORCH_ARG(int64_t, keep_checkpoints) = 2;
  TORCH_ARG(bool, no_checkpoints) = false;
  TORCH_ARG(std::string, resume) = {};
  TORCH_ARG(std::string, on_divergence) = "stop";
  // device
  TORCH_ARG(std::string, device) = "cpu";
  TORCH_ARG(std::string, precision) = "fp32";
  TORCH_ARG(int64_t, check_finite_every) = 0;
  // several processes (under flatmin launch, torchrun, ...)
  TORCH_ARG(std::string, parallel) = "data";
  TORCH_ARG(std::string, sam_ascent) = "synced";
  TORCH_ARG(double, dist_timeout) = 60;
  /// Set where the user named --parallel, --sam-ascent: on --resume they replace the run's own.
  TORCH_ARG(bool, parallel_given) = false;
  TORCH_ARG(bool, sam_ascent_given) = false;
  // flatness during training
  TORCH_ARG(int64_t, geometry_every) = 0;
  TORCH_ARG(std::string, geometry_measures) = "trace,lambda1,normalized_trace,grad_norm";
  TORCH_ARG(int64_t, geometry_examples) = 2000;
  TORCH_ARG(std::vector<std::string>, geometry_splits) = {"train"};
  TORCH_ARG(double, geometry_rho) = 0.05;

};

/// The training configuration of a fresh run of `job` (before fine-tuning defaults); throws flatmin::Error on
/// an unknown name.
training::RunConfig to_run_config(const TrainJob& job);

enum class JobStatus { kFinished, kInterrupted, kDiverged };

/// Exit codes beyond 0 (done), 1 (error) and 2 (bad usage); `flatmin sweep` reads them from its runs.
constexpr int kExitDiverged = 3;       ///< the loss became non-finite: the sweep records the run as diverged
constexpr int kExitInterrupted = 130;  ///< stopped by SIGINT / SIGTERM after a checkpoint: resumable

struct TrainOutcome {
  JobStatus status = JobStatus::kFinished;
  std::string out_dir;
  /// Interrupted or diverged: what happened, in one line.
  std::string message;
  /// Diverged: the newest step checkpoint left intact ("" = none).
  std::string last_checkpoint;
  /// Finished: summary.json's content (also for processes other than rank 0, which write no files).
  std::string summary_json;
  int exit_code() const;
};

/// Runs `job` as `flatmin train` does. SIGINT and SIGTERM, while it runs, stop it after the current step
/// with a checkpoint (the handlers before it are restored at its end); the progress line then says how to
/// resume: `resume_hint` with {} replaced by the run's directory. Throws flatmin::Error on bad input (one
/// line naming the file or option).
TrainOutcome run_train_job(TrainJob job, const std::string& resume_hint = "flatmin train --resume {}");

}  // namespace flatmin::jobs
