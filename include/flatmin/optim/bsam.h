#pragma once
/// Bayesian SAM (bSAM): "SAM as an Optimal Relaxation of Bayes" (Möllenhoff & Khan, ICLR 2023), as in
/// the authors' code. Two pieces share one state:
///  - `Bsam`, a PerturbationMethod: where to evaluate (a posterior sample, then an ascent point scaled by
///    the precision) and the curvature estimate h of the step;
///  - `BsamUpdate`, a torch::optim::Optimizer: bSAM's own update rule, which replaces the base
///    optimizer's (momentum m, mean ω = W, precision s).
/// Use them together — make_perturbed_optimizer(MethodSpec().name("bsam"), ...) or
///   auto method = std::make_shared<Bsam>(BsamOptions(train_size));
///   PerturbedOptimizer opt(std::make_shared<BsamUpdate>(params, method, BsamUpdateOptions(0.5)), method);
/// The optimizer's learning rate is bSAM's α_t (so LR schedules act on it).

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>
#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include "flatmin/optim/perturbation_method.h"

namespace flatmin::optim {

struct BsamOptions {
  /* implicit */ BsamOptions(int64_t train_size = 0) : train_size_(train_size) {}
  /// N: the number of training examples (× the augmentation factor, if any). Required (> 0).
  TORCH_ARG(int64_t, train_size);
  /// ρ of the ascent ε = ρ·g/s (element-wise; 0.1 in the paper, 0.01 for CIFAR; the NSO paper's grid
  /// 0.01, 0.02, 0.05).
  TORCH_ARG(double, rho) = 0.01;
  /// Prior precision; δ = prior_precision/N acts as weight decay (25 – 40 in the paper).
  TORCH_ARG(double, prior_precision) = 25.0;
  /// Damping γ added to the precision.
  TORCH_ARG(double, damping) = 0.1;
  /// s at the first step.
  TORCH_ARG(double, init_precision) = 1.0;
  TORCH_ARG(double, beta1) = 0.9;
  TORCH_ARG(double, beta2) = 0.999;
  /// The posterior sample's noise std at the first step, set directly: s₀ = 1/(N·noise_std²) replaces
  /// init_precision. 0: off. (With N = 500 and s₀ = 1 the noise is 0.045 per weight, several times the σ
  /// at which NSO fine-tunes: set it near that σ to fine-tune.)
  TORCH_ARG(double, noise_std) = 0.0;
  /// The prior centred on the weights of the first step (the pretrained ones when fine-tuning), not on 0:
  /// the update's δ·ω becomes δ·(ω − ω₀), an L2-SP pull instead of a decay.
  TORCH_ARG(bool, prior_at_init) = false;
  /// BatchNorm statistics from the ascent pass only (ω + ε, next to the mean), never from the posterior
  /// sample θ; false: both passes, as the authors' code.
  TORCH_ARG(bool, statistics_from_ascent) = false;
};

/// bSAM's evaluation points and state. Per parameter: mean ω (= W), momentum m = 0, precision
/// s = init_precision; δ = prior_precision/N. Step t (z for tensor j is the counter-based draw
/// noise_key(seed, t, 0, j)):
///     1. θ = ω + z/√(N·s),  z ~ N(0, I)          (a sample of the posterior N(ω, 1/(N·s)))
///     2. g = g(θ)
///     3. ε = ρ·g/s;  ĝ = g(ω + ε)                 (element-wise, not norm-normalised)
///     4. h = √s ⊙ |g|
///     5. (BsamUpdate) m ← β1·m + (1 − β1)·(ĝ + δ·ω);  ω ← ω − α_t·m/s;  s ← β2·s + (1 − β2)·(h + γ + δ)
/// No bias correction, no epsilon. Cost 2. With prior_at_init, δ·ω in 5 is δ·(ω − ω₀) (ω₀: the weights at the
/// first step); with noise_std, s starts at 1/(N·noise_std²).
/// BatchNorm statistics: both passes count (counts_for_buffers(i) = true), as in the authors' code,
/// which updates them on both passes; flatmin moves them once per step by the mean of the two updates.
/// With statistics_from_ascent only the ascent pass counts.
/// save/load carry s and m. A step of Bsam without its BsamUpdate as the base optimizer is an error
/// (detected at the next step).
class Bsam final : public PerturbationMethod {
 public:
  explicit Bsam(BsamOptions options);
  std::string name() const override { return "bsam"; }
  int64_t evaluations() const override { return 2; }
  void move_to(int64_t i, StepContext& ctx) override;
  Blend blend(int64_t i) const override { return i == 0 ? Blend{} : Blend{0.0, 1.0}; }  // G = ĝ
  bool counts_for_buffers(int64_t i) const override { return !options_.statistics_from_ascent() || i == 1; }
  bool reads_gradients(int64_t i) const override { return i > 0; }
  std::string describe() const override;
  std::vector<std::pair<std::string, double>> scalars() const override { return {{"rho", options_.rho()}}; }
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

  const BsamOptions& options() const { return options_; }
  /// s and m per parameter (in the optimizer's order); empty before the first step or load.
  const std::vector<at::Tensor>& precision() const { return s_; }
  const std::vector<at::Tensor>& momentum() const { return m_; }

  /// Step 5 for parameter j (its .grad holds ĝ), with learning rate α; called by BsamUpdate.
  void update(size_t j, at::Tensor& w, double lr);
  /// Called by BsamUpdate once every parameter is updated.
  void finish_update() { awaiting_update_ = false; }

 private:
  void init_state(const std::vector<at::Tensor>& params);

  BsamOptions options_;
  std::vector<at::Tensor> s_, m_, h_;
  std::vector<at::Tensor> prior_mean_;  ///< ω₀, with prior_at_init
  bool awaiting_update_ = false;
};

struct BsamUpdateOptions : public torch::optim::OptimizerCloneableOptions<BsamUpdateOptions> {
  /* implicit */ BsamUpdateOptions(double lr = 0.5) : lr_(lr) {}
  /// α (the paper: 1.0, 0.5 for CIFAR ResNet-18, with 5 warm-up epochs then cosine).
  TORCH_ARG(double, lr);

 public:
  double get_lr() const override { return lr_; }
  void set_lr(const double lr) override { lr_ = lr; }
};

/// bSAM's update (step 5 above) as a torch::optim::Optimizer over the same parameters as the
/// PerturbedOptimizer that runs `method`. Parameters without a gradient are skipped.
class BsamUpdate final : public torch::optim::Optimizer {
 public:
  BsamUpdate(std::vector<at::Tensor> params, std::shared_ptr<Bsam> method, BsamUpdateOptions options = {});
  at::Tensor step(LossClosure closure = nullptr) override;
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  std::shared_ptr<Bsam> method_;
};

}  // namespace flatmin::optim
