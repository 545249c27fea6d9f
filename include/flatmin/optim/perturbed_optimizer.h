#pragma once
/// PerturbedOptimizer: a torch::optim::Optimizer that runs a PerturbationMethod's step and hands the
/// combined gradient to a base optimizer (SGD with momentum / weight decay, AdamW, ...).
///
///   auto base = std::make_shared<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
///   PerturbedOptimizer opt(base, std::make_shared<Nso>(NsoOptions(0.01).k(1)));
///   opt.track_buffers(model->buffers());      // BatchNorm statistics move once per step
///   opt.step([&] { auto loss = loss_fn(model->forward(x), y); loss.backward(); return loss; });
///
/// Closure contract (LibTorch's): the closure runs once per evaluation point, with grad mode on, and
/// must compute the loss and call backward(). It may call zero_grad() or not: unless
/// accumulate_in_grad(true) is set, each evaluation's gradient is taken out of .grad before the next.
///
/// Parameter groups are shared in effect: this optimizer copies the base's groups at construction and
/// pushes its own options (lr, ...) to the base before every base step, so LR schedulers, save/load and
/// zero_grad act on this object. Parameters that do not require grad are never perturbed; parameters
/// that receive no gradient keep an undefined .grad, so the base optimizer skips them.
///
/// Gradient clipping has one place: the combined gradient, just before the base step. Gradient terms
/// (add_gradient_term: L2-SP, ...) come right after it, at the restored W, where weight decay acts.

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <torch/arg.h>
#include <torch/optim/optimizer.h>

#include "flatmin/optim/perturbation_method.h"

namespace flatmin::optim {

struct PerturbedOptimizerOptions {
  /// Seed of the method's noise (counter-based: see noise::noise_key).
  TORCH_ARG(uint64_t, seed) = 0;
  /// Clip the combined gradient to this global L2 norm before the base step (0 = off).
  TORCH_ARG(double, max_grad_norm) = 0.0;
  /// Set when the closure does not zero gradients: consecutive evaluations whose blend is {1, 1}
  /// then accumulate directly in .grad, saving a parameter-sized buffer and a pass over it.
  TORCH_ARG(bool, accumulate_in_grad) = false;
  /// Before the base step, check that every evaluation's loss and the combined gradient are finite. If
  /// not, the step is skipped: W and the tracked buffers stay as they were before it, the gradients are
  /// cleared, the base optimizer is not called (its state is untouched), and last_step_skipped() says
  /// why. The step still counts (noise keys never repeat).
  TORCH_ARG(bool, check_finite) = true;
  /// Check every N-th step instead of every step. The check reads a flag back from the device, which on a
  /// GPU waits for the step's kernels; between checks the steps' finiteness accumulates on the device
  /// without a wait, so nothing escapes the next check. A non-finite step found so skips the checking step,
  /// but the steps since the last check were applied (the weights may not be finite): resume from a
  /// checkpoint. settle_finite_check() checks at once (before a checkpoint is written). On the CPU the
  /// wait costs nothing: keep 1 there.
  TORCH_ARG(int64_t, check_finite_every) = 1;
  /// Mixed-precision loss scaling: the closure's loss is this multiple S of the true loss. Each pass's
  /// gradient is divided by S as it is folded into the combination, so the methods' moves (SAM's ascent
  /// reads g), clipping and the base step all see the true gradient, unscaled once; the losses returned are
  /// the true ones. A power of two divides exactly: the step is bitwise the unscaled one. Not with
  /// accumulate_in_grad.
  TORCH_ARG(double, loss_scale) = 1.0;
};

/// Several processes computing one step together (distributed/ provides them). The optimizer needs only an
/// in-place sum across the processes; the transport is the caller's.
struct Parallelism {
  enum class Mode {
    kNone,
    /// Each process evaluates every point on its shard of the batch; gradients are averaged once per step
    /// (and before a point whose position reads them: SAM's ascent, when synced_ascent).
    kData,
    /// Every process evaluates its share of the points (i ≡ rank mod size) on the whole batch; one sum
    /// builds the combination. Only for methods whose points do not read gradients and whose blends add
    /// (NSO, WP-SGD): the same update as one process, up to the summation order.
    kPerturbation,
  };
  Mode mode = Mode::kNone;
  int rank = 0;
  int size = 1;
  /// In place: each tensor ← its sum over the processes (an allreduce).
  std::function<void(const std::vector<at::Tensor>&)> sum;
  /// In place: each defined tensor ← its mean over the processes (the sum, divided by their number).
  void mean(const std::vector<at::Tensor>& tensors) const;
  /// kData, SAM family: the ascent direction from the gradient averaged over processes (synced, the
  /// default: what one process with the whole batch computes) or from each process's own (per-replica:
  /// SAM's m-sharpness with m = the shard).
  bool synced_ascent = true;
  /// This process's request to stop (a signal), carried in each step's collective so that every process
  /// learns of any process's request at the same step: PerturbedOptimizer::stop_requested_anywhere().
  std::function<bool()> stop_requested;
};

class PerturbedOptimizer : public torch::optim::Optimizer {
 public:
  PerturbedOptimizer(std::shared_ptr<torch::optim::Optimizer> base, std::shared_ptr<PerturbationMethod> method,
                     PerturbedOptimizerOptions options = {});

  /// One full step: every evaluation of the method, then the base optimizer's step.
  /// Returns the mean of the closure's losses over the evaluation points (detached).
  at::Tensor step(LossClosure closure) override;

  /// BatchNorm running statistics (module->buffers()) whose update follows the method's policy.
  /// Without it, every pass updates them as a plain forward pass would.
  void track_buffers(std::vector<at::Tensor> buffers);

  /// A term added to the combined gradient of every step, for every method alike: it runs with W
  /// restored, the combination (final-scaled and clipped) in the parameters' .grad and grad mode off,
  /// just before the base step — the place of weight decay. It adds the gradient of a regulariser
  /// evaluated at W itself, never at a perturbed point (e.g. L2-SP's 2λ(W − W₀), optim/regularizers.h).
  /// Terms run in the order added. They are not saved: add them again after load.
  using GradientTerm = std::function<void()>;
  void add_gradient_term(GradientTerm term);
  /// Per parameter tensor (in the order of the parameters that require grad): a factor on the method's size,
  /// σ for WP-SGD and NSO, ρ for SAM, USAM, ASAM and CR-SAM (per-group options). Empty: all 1. Throws
  /// flatmin::Error for a method without sizes per tensor, a wrong count or a negative or non-finite factor.
  void set_tensor_scales(std::vector<double> scales);
  /// Run each step with other processes (Parallelism). Throws flatmin::Error when the method cannot be
  /// split across points (kPerturbation with SAM's ascent, say).
  void set_parallelism(Parallelism parallelism);
  const Parallelism& parallelism() const { return parallelism_; }

  // The explicit form of step(), for hand-written loops:
  //   begin_step(); for i < evaluations(): { move_to(i); forward; backward; accumulate(i, loss); } finish_step();
  void begin_step();
  void move_to(int64_t i);
  void accumulate(int64_t i, const at::Tensor& loss = {});
  void finish_step();
  /// Leaves a step begun but not finished as if it had not begun: W and the tracked statistics restored
  /// exactly, the gradients cleared, no base step, the step not counted. step() calls it when the closure
  /// throws (a Python exception, a bad loss), so the exception leaves the model as it found it.
  void abort_step();
  /// kPerturbation: point i is another process's; the parameters were moved to it (move_to(i)), no
  /// gradient was computed here.
  void skip(int64_t i);
  /// Whether this process evaluates point i (always, except under kPerturbation).
  bool evaluates(int64_t i) const {
    return parallelism_.mode != Parallelism::Mode::kPerturbation || i % parallelism_.size == parallelism_.rank;
  }
  int64_t evaluations() const { return method_->evaluations(); }

  /// Tells the method that a new epoch starts (schedules).
  void set_epoch(int64_t epoch, int64_t total_epochs) { method_->set_epoch(epoch, total_epochs); }

  PerturbationMethod& method() { return *method_; }
  const PerturbationMethod& method() const { return *method_; }
  torch::optim::Optimizer& base() { return *base_; }
  int64_t steps_taken() const { return steps_; }
  /// Gradient evaluations done so far (steps × evaluations per step).
  int64_t gradient_evaluations() const { return gradient_evaluations_; }
  /// Losses of the last step's evaluation points (read back from the device: a wait on a GPU).
  std::vector<double> last_losses() const;
  /// Whether the last step was skipped by check_finite, and what was not finite ("" when not skipped).
  bool last_step_skipped() const { return !non_finite_.empty(); }
  /// Several processes: whether any of them had requested to stop (Parallelism::stop_requested) when the
  /// last step combined their work; the same answer on every process. False with one process.
  bool stop_requested_anywhere() const { return stop_requested_anywhere_; }
  const std::string& last_step_non_finite() const { return non_finite_; }
  /// With check_finite_every > 1: checks the steps since the last check now; "" when all were finite, else
  /// what was not (and last_step_skipped() turns true). A no-op otherwise.
  std::string settle_finite_check();
  const PerturbedOptimizerOptions& options() const { return options_; }
  /// A new loss scale from the next step on (dynamic loss scaling lowers it after a skipped step).
  void set_loss_scale(double scale);

  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  void collect_params();
  void push_options_to_base();
  std::string find_non_finite() const;
  at::Tensor step_is_finite() const;
  void combine_across_processes();

  std::shared_ptr<torch::optim::Optimizer> base_;
  std::shared_ptr<PerturbationMethod> method_;
  PerturbedOptimizerOptions options_;

  std::vector<at::Tensor> params_;    // the parameters that require grad
  std::vector<at::Tensor> anchor_;    // W during a step
  std::vector<at::Tensor> combined_;  // c, taken out of .grad while a pass runs
  std::vector<at::Tensor> buffers_;   // tracked BatchNorm statistics
  std::vector<GradientTerm> gradient_terms_;
  std::vector<double> scales_;  // per-tensor factors of the method's size; empty: all 1
  std::vector<at::Tensor> buffers_before_;
  std::vector<at::Tensor> buffers_delta_sum_;
  int64_t buffer_passes_counted_ = 0;
  bool in_step_ = false;
  bool stop_requested_anywhere_ = false;
  bool grads_in_place_ = false;       // this pass accumulates straight into .grad
  int64_t steps_ = 0;
  int64_t gradient_evaluations_ = 0;
  std::vector<at::Tensor> last_losses_;  // detached, on the model's device
  at::Tensor pending_finite_;            // check_finite_every > 1: all steps since the last check finite
  int64_t first_unchecked_step_ = 0;
  Parallelism parallelism_;
  std::string non_finite_;
};

}  // namespace flatmin::optim
