#pragma once
/// The one abstraction behind every flat-minima method in flatmin.
///
/// A step evaluates the minibatch gradient at a sequence of points W + Δ_i (i = 0 … n−1), chosen by the
/// method — from noise (NSO, WP-SGD), from the gradients already seen (the SAM family) or both — and
/// folds each into a running combination
///     c ← keep_i·c + weight_i·g(W + Δ_i),      then  c ← final_scale·c,
/// after which W is restored exactly (copied back, never recomputed) and c is handed, as the parameters'
/// .grad, to any base torch::optim optimizer. A method is such a policy: where to evaluate
/// (`move_to`), how to combine (`blend`), whose BatchNorm statistics count (`counts_for_buffers`).
/// It never owns a loop; PerturbedOptimizer runs the step. A method whose update is not any base
/// optimizer's (bSAM: momentum and a precision estimate) pairs with its own torch::optim::Optimizer that
/// shares its state and serves as the base (optim/bsam.h: Bsam + BsamUpdate).

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>

namespace torch::serialize {
class OutputArchive;
class InputArchive;
}  // namespace torch::serialize

namespace flatmin::optim {

/// How the gradient of one evaluation enters the combination: c ← keep·c + weight·g.
struct Blend {
  double keep = 1.0;
  double weight = 1.0;
};

/// What a method sees while it chooses the next evaluation point.
struct StepContext {
  /// The live parameters (those that require grad), in param-group order. On entry to move_to(i) they
  /// hold evaluation point i−1 (W for i = 0); move_to leaves them at point i.
  std::vector<at::Tensor>& params;
  /// W as it was at the start of the step. Empty when the method does not perturb.
  const std::vector<at::Tensor>& anchor;
  /// The combination c after evaluations 0 … i−1 (each entry undefined where no gradient has arrived).
  const std::vector<at::Tensor>& combined;
  /// Seed of the method's noise: draw d of this step for parameter j uses
  /// noise::noise_key(seed, step, d, j), so every draw can be regenerated from the step count alone.
  uint64_t seed;
  /// Steps completed before this one.
  int64_t step;
  /// Per parameter: a factor on the method's size (σ, ρ) for that tensor, from per-group options; null when
  /// every factor is 1. Only methods whose takes_tensor_scales() is true receive one.
  const std::vector<double>* scales = nullptr;
  double scale(size_t j) const { return scales ? (*scales)[j] : 1.0; }
};

class PerturbationMethod {
 public:
  virtual ~PerturbationMethod() = default;

  /// Short name, as used by the CLI ("nso", "wp-sgd", ...).
  virtual std::string name() const = 0;
  /// Gradient evaluations (forward + backward passes) per step: the method's cost in SGD steps.
  virtual int64_t evaluations() const = 0;
  /// False when every evaluation happens at W itself (then no copy of W is kept).
  virtual bool perturbs() const { return true; }

  /// Moves ctx.params to evaluation point i.
  virtual void move_to(int64_t i, StepContext& ctx) = 0;
  /// How the gradient of evaluation i is combined (default: summed).
  virtual Blend blend(int64_t i) const { return {}; }
  /// Applied to the combination after the last evaluation (e.g. 1/(2k) for NSO).
  virtual double final_scale() const { return 1.0; }
  /// Whether the BatchNorm running statistics of pass i count. The optimizer sets the statistics to the
  /// mean of the updates of the passes that count (each pass starting from the statistics before the
  /// step), so they move once per step whatever the number of passes.
  virtual bool counts_for_buffers(int64_t i) const { return true; }
  /// Whether the method's size (σ of the noise, ρ of the ascent) can differ per parameter tensor
  /// (StepContext::scales; PerturbedOptimizer::set_tensor_scales).
  virtual bool takes_tensor_scales() const { return false; }
  /// Whether move_to(i) reads the gradients so far (ctx.combined): SAM's ascent does. Several processes
  /// computing one step then average them first (PerturbedOptimizer::set_parallelism).
  virtual bool reads_gradients(int64_t i) const { return false; }

  /// Called when a new epoch starts, for schedules (σ warm-up, ...).
  virtual void set_epoch(int64_t epoch, int64_t total_epochs) {}
  /// One line describing the method and its current settings, for logs.
  virtual std::string describe() const { return name(); }
  /// The method's current scalar settings worth logging each epoch (σ under a schedule, ρ, ...).
  virtual std::vector<std::pair<std::string, double>> scalars() const { return {}; }

  /// Method state beyond the optimizer's (e.g. a variance estimate); none by default.
  virtual void save(torch::serialize::OutputArchive& archive) const {}
  virtual void load(torch::serialize::InputArchive& archive) {}
};

}  // namespace flatmin::optim
