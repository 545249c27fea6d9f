#include "flatmin/optim/perturbed_optimizer.h"

#include <cmath>

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>
#include <torch/utils.h>

#include "flatmin/core/error.h"

namespace flatmin::optim {
namespace {

std::vector<torch::optim::OptimizerParamGroup> copy_groups(const torch::optim::Optimizer& base) {
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (const auto& group : base.param_groups()) groups.emplace_back(group);  // clones the options
  return groups;
}

const torch::optim::Optimizer& require(const std::shared_ptr<torch::optim::Optimizer>& base) {
  check(base != nullptr, "PerturbedOptimizer: base optimizer is null");
  return *base;
}

// torch::nn::utils::clip_grad_norm_'s rule (coefficient max/(‖g‖ + 1e-6), applied when below 1) with the
// coefficient kept on the device: LibTorch's returns the norm as a double, a wait on a GPU every step.
void clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  std::vector<at::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().norm(2));
  if (norms.empty()) return;
  const at::Tensor total = norms.size() == 1 ? norms[0] : at::stack(norms).norm(2);
  const at::Tensor coefficient = (max_norm / (total + 1e-6)).clamp_max(1.0);
  for (const auto& p : params)
    if (p.grad().defined()) p.grad().mul_(coefficient);
}

}  // namespace

PerturbedOptimizer::PerturbedOptimizer(std::shared_ptr<torch::optim::Optimizer> base,
                                       std::shared_ptr<PerturbationMethod> method,
                                       PerturbedOptimizerOptions options)
    : torch::optim::Optimizer(copy_groups(require(base)), base->defaults().clone()),
      base_(std::move(base)),
      method_(std::move(method)),
      options_(options) {
  check(method_ != nullptr, "PerturbedOptimizer: method is null");
  check(method_->evaluations() >= 1, "PerturbedOptimizer: a method must evaluate at least one point");
  check(options_.max_grad_norm() >= 0, "max_grad_norm must be >= 0");
  set_loss_scale(options_.loss_scale());
  check(options_.check_finite_every() >= 1, "the finiteness check interval must be >= 1");
  collect_params();
}

void PerturbedOptimizer::collect_params() {
  params_.clear();
  for (const auto& group : param_groups_)
    for (const auto& p : group.params())
      if (p.requires_grad()) params_.push_back(p);
  combined_.assign(params_.size(), at::Tensor());
}

void PerturbedOptimizer::track_buffers(std::vector<at::Tensor> buffers) { buffers_ = std::move(buffers); }

void PerturbedOptimizer::set_tensor_scales(std::vector<double> scales) {
  const bool all_one = std::all_of(scales.begin(), scales.end(), [](double s) { return s == 1.0; });
  if (scales.empty() || all_one) {
    scales_.clear();
    return;
  }
  check(method_->takes_tensor_scales(), "method '" + method_->name() + "' has one size for all parameters: no per-group " +
                                            "sigma or rho");
  check(scales.size() == params_.size(), "per-tensor scales: " + std::to_string(scales.size()) + " given for " +
                                             std::to_string(params_.size()) + " parameters");
  for (double s : scales) check(std::isfinite(s) && s >= 0, "per-tensor scales must be finite and >= 0");
  scales_ = std::move(scales);
}

void PerturbedOptimizer::add_gradient_term(GradientTerm term) {
  check(static_cast<bool>(term), "PerturbedOptimizer: gradient term is empty");
  gradient_terms_.push_back(std::move(term));
}

void PerturbedOptimizer::set_parallelism(Parallelism parallelism) {
  check(parallelism.size >= 1 && parallelism.rank >= 0 && parallelism.rank < parallelism.size,
        "parallelism: rank " + std::to_string(parallelism.rank) + " of " + std::to_string(parallelism.size));
  check(parallelism.mode == Parallelism::Mode::kNone || static_cast<bool>(parallelism.sum),
        "parallelism: no sum across processes given");
  if (parallelism.mode == Parallelism::Mode::kPerturbation) {
    bool splits = method_->perturbs();
    for (int64_t i = 0; i < method_->evaluations(); ++i)
      splits = splits && !method_->reads_gradients(i) && (i == 0 || method_->blend(i).keep == 1.0);
    check(splits, "perturbation-parallel steps need independent points whose gradients add up (nso, wp-sgd); '" +
                      method_->name() + "' " + (method_->perturbs() ? "reads the gradient of one point to place the next"
                                                                    : "evaluates only W") +
                      ": use data-parallel");
  }
  parallelism_ = std::move(parallelism);
}

void PerturbedOptimizer::push_options_to_base() {
  auto& base_groups = base_->param_groups();
  check(base_groups.size() == param_groups_.size(),
        "PerturbedOptimizer: parameter groups were added to the base optimizer after wrapping it");
  for (size_t g = 0; g < base_groups.size(); ++g) base_groups[g].set_options(param_groups_[g].options().clone());
}

void PerturbedOptimizer::begin_step() {
  check(!in_step_, "PerturbedOptimizer: begin_step() called twice without finish_step()");
  torch::NoGradGuard no_grad;
  in_step_ = true;
  last_losses_.clear();
  if (method_->perturbs()) {
    if (anchor_.size() != params_.size()) {
      anchor_.clear();
      for (const auto& p : params_) anchor_.push_back(at::empty_like(p));
    }
    for (size_t j = 0; j < params_.size(); ++j) anchor_[j].copy_(params_[j]);
  }
  // The combination starts empty: .grad of a parameter is undefined until a gradient arrives.
  for (auto& p : params_) p.mutable_grad() = at::Tensor();
  for (auto& c : combined_) c = at::Tensor();

  // Statistics are snapshot when passes must be averaged or discarded, and when a non-finite step must
  // leave no trace in them.
  const bool buffers_policy_matters = !buffers_.empty() && (method_->evaluations() > 1 || options_.check_finite());
  if (buffers_policy_matters || (!buffers_.empty() && !method_->counts_for_buffers(0))) {
    buffers_before_.clear();
    buffers_delta_sum_.clear();
    for (const auto& b : buffers_) {
      buffers_before_.push_back(b.clone());
      // Floating statistics accumulate the counted passes' updates; integer counters
      // (num_batches_tracked) keep the value after a counted pass.
      buffers_delta_sum_.push_back(b.is_floating_point() ? at::zeros_like(b) : b.clone());
    }
  } else {
    buffers_before_.clear();
  }
  buffer_passes_counted_ = 0;
}

void Parallelism::mean(const std::vector<at::Tensor>& tensors) const {
  sum(tensors);
  for (const auto& t : tensors)
    if (t.defined()) t.div_(static_cast<double>(size));
}

void PerturbedOptimizer::move_to(int64_t i) {
  check(in_step_, "PerturbedOptimizer: move_to() outside begin_step()/finish_step()");
  torch::NoGradGuard no_grad;
  // The method sees the combination so far (SAM's ascent direction is the gradient of pass 0).
  for (size_t j = 0; j < params_.size(); ++j) combined_[j] = params_[j].grad();
  if (parallelism_.mode == Parallelism::Mode::kData && parallelism_.synced_ascent && i > 0 &&
      method_->reads_gradients(i)) {
    parallelism_.mean(combined_);  // these are the .grad tensors: the combination itself becomes the mean
  }
  if (method_->perturbs()) {
    StepContext ctx{params_, anchor_, combined_, options_.seed(), steps_, scales_.empty() ? nullptr : &scales_};
    method_->move_to(i, ctx);
  }
  // Take the combination out of .grad so that this pass's gradient arrives alone, whatever the closure
  // does to .grad. With accumulate_in_grad, a {1, 1} blend lets backward add into it directly instead.
  const Blend b = method_->blend(i);
  grads_in_place_ = options_.accumulate_in_grad() && i > 0 && b.keep == 1.0 && b.weight == 1.0;
  if (grads_in_place_) {
    for (auto& c : combined_) c = at::Tensor();
  } else {
    for (auto& p : params_) p.mutable_grad() = at::Tensor();
    // A pass that replaces the combination (keep 0, as SAM's ascent pass) does not need it any more: free
    // it now rather than hold it beside the pass's own gradient.
    if (b.keep == 0.0)
      for (auto& c : combined_) c = at::Tensor();
  }
  // Every pass starts from the statistics before the step; accumulate() keeps the updates that count.
  if (!buffers_before_.empty() && i > 0)
    for (size_t j = 0; j < buffers_.size(); ++j) buffers_[j].copy_(buffers_before_[j]);
}

void PerturbedOptimizer::set_loss_scale(double scale) {
  check(std::isfinite(scale) && scale > 0, "loss_scale must be a positive number, got " + std::to_string(scale));
  check(scale == 1.0 || !options_.accumulate_in_grad(), "loss_scale needs the combination outside .grad "
                                                        "(accumulate_in_grad off)");
  check(!in_step_, "loss_scale: not during a step");
  options_.loss_scale(scale);
}

void PerturbedOptimizer::accumulate(int64_t i, const at::Tensor& loss) {
  check(in_step_, "PerturbedOptimizer: accumulate() outside begin_step()/finish_step()");
  torch::NoGradGuard no_grad;
  const double unscale = 1.0 / options_.loss_scale();
  if (loss.defined()) last_losses_.push_back(unscale == 1.0 ? loss.detach() : loss.detach() * unscale);
  if (!grads_in_place_) {
    Blend b = method_->blend(i);
    b.weight *= unscale;  // the true gradient from here on (exact for a power of two)
    for (size_t j = 0; j < params_.size(); ++j) {
      at::Tensor g = params_[j].grad();
      at::Tensor c = combined_[j];
      at::Tensor result;
      if (c.defined() && b.keep != 0.0) {
        if (b.keep != 1.0) c.mul_(b.keep);
        if (g.defined()) c.add_(g, b.weight);
        result = c;
      } else if (g.defined()) {
        if (b.weight != 1.0) g.mul_(b.weight);
        result = g;
      }
      params_[j].mutable_grad() = result;
      combined_[j] = at::Tensor();
    }
  }
  if (!buffers_before_.empty() && method_->counts_for_buffers(i)) {
    for (size_t j = 0; j < buffers_.size(); ++j) {
      if (buffers_[j].is_floating_point()) buffers_delta_sum_[j].add_(buffers_[j].sub_(buffers_before_[j]));
      else buffers_delta_sum_[j].copy_(buffers_[j]);
    }
    ++buffer_passes_counted_;
  }
  ++gradient_evaluations_;
}

void PerturbedOptimizer::skip(int64_t i) {
  check(in_step_, "PerturbedOptimizer: skip() outside begin_step()/finish_step()");
  // As accumulate() with no gradient: the combination goes back to .grad unchanged (blends here add).
  if (!grads_in_place_)
    for (size_t j = 0; j < params_.size(); ++j) {
      params_[j].mutable_grad() = combined_[j];
      combined_[j] = at::Tensor();
    }
  // The point's loss comes from the process that evaluates it (combine_across_processes).
  last_losses_.push_back(at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(params_.front().device())));
  ++gradient_evaluations_;
}

// Several processes: the combined gradient, the points' losses and (perturbation-parallel) the BatchNorm
// updates become the whole step's, identical on every process, before anything reads them.
void PerturbedOptimizer::combine_across_processes() {
  if (parallelism_.mode == Parallelism::Mode::kNone) return;
  const bool data = parallelism_.mode == Parallelism::Mode::kData;
  std::vector<at::Tensor> tensors;
  for (auto& p : params_) {
    // A process that computed no gradient (no point of its own) still takes part with zeros.
    if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
    tensors.push_back(p.grad());
  }
  at::Tensor losses;
  if (!last_losses_.empty()) {
    losses = at::stack(last_losses_).to(at::kFloat);
    tensors.push_back(losses);
  }
  // BatchNorm statistics ride in the same collective. Perturbation-parallel: the processes' counted
  // updates and their count are summed. Data-parallel: every process counts the same passes (each evaluates
  // every point on its shard), so the mean of the updates (or, untracked, of the statistics themselves) is
  // the step's, each shard weighing the same.
  at::Tensor counted;
  if (!buffers_before_.empty()) {
    for (auto& d : buffers_delta_sum_)
      if (d.is_floating_point()) tensors.push_back(d);
    if (!data) {
      counted = at::full({}, static_cast<double>(buffer_passes_counted_), at::TensorOptions().dtype(at::kDouble));
      tensors.push_back(counted);
    }
  } else if (data) {
    for (auto& b : buffers_)
      if (b.is_floating_point()) tensors.push_back(b);
  }
  // And the stop flag: every process then stops after the same step, or the others would wait in the next one.
  const at::Tensor stop = at::full({}, parallelism_.stop_requested && parallelism_.stop_requested() ? 1.0 : 0.0,
                                   at::TensorOptions().dtype(at::kFloat).device(params_.front().device()));
  tensors.push_back(stop);
  // Data-parallel: each process's gradients and losses are of its shard, so the step's are their mean.
  if (data) parallelism_.mean(tensors);
  else parallelism_.sum(tensors);
  stop_requested_anywhere_ = stop.item<float>() > 0;
  if (losses.defined())
    for (size_t i = 0; i < last_losses_.size(); ++i) last_losses_[i] = losses[static_cast<int64_t>(i)];
  if (counted.defined()) {
    buffer_passes_counted_ = static_cast<int64_t>(counted.item<double>());
    // Integer statistics (num_batches_tracked) hold their value after a counted pass: before + 1.
    for (size_t j = 0; j < buffers_.size(); ++j)
      if (!buffers_[j].is_floating_point() && buffer_passes_counted_ > 0)
        buffers_delta_sum_[j].copy_(buffers_before_[j] + 1);
  }
}

std::vector<double> PerturbedOptimizer::last_losses() const {
  std::vector<double> losses;
  for (const auto& l : last_losses_) losses.push_back(l.item<double>());
  return losses;
}

std::string PerturbedOptimizer::find_non_finite() const {
  const std::vector<double> losses = last_losses();
  for (size_t i = 0; i < losses.size(); ++i)
    if (!std::isfinite(losses[i]))
      return "the loss at evaluation point " + std::to_string(i) + " is " + std::to_string(losses[i]);
  // One reduction per tensor: a sum is finite when every element is (or, rarely, overflows to inf when they
  // are huge); only then does the exact, several-times-dearer element test run (on a 10^5-parameter MLP it
  // alone cost about one SGD step). Off the CPU the sums are read back together: one wait per step.
  std::vector<at::Tensor> sums;
  std::vector<size_t> which;
  bool on_cpu = true;
  for (size_t j = 0; j < params_.size(); ++j) {
    const at::Tensor& g = params_[j].grad();
    if (!g.defined()) continue;
    sums.push_back(g.sum());
    which.push_back(j);
    on_cpu = on_cpu && g.is_cpu();
  }
  if (sums.empty()) return {};
  if (!on_cpu && std::isfinite(at::stack(sums).to(at::kDouble).sum().item<double>())) return {};
  for (size_t s = 0; s < sums.size(); ++s) {
    const at::Tensor& g = params_[which[s]].grad();
    if (!std::isfinite(sums[s].item<double>()) && !g.isfinite().all().item<bool>())
      return "the gradient of parameter tensor " + std::to_string(which[s]) + " is not finite";
  }
  return {};
}

// Whether the step's losses and combined gradient are all finite, as a bool tensor on their device: no wait.
at::Tensor PerturbedOptimizer::step_is_finite() const {
  std::vector<at::Tensor> sums;
  for (const auto& l : last_losses_) sums.push_back(l.to(at::kDouble).reshape({}));
  for (const auto& p : params_)
    if (p.grad().defined()) sums.push_back(p.grad().sum().to(at::kDouble));
  if (sums.empty()) return at::ones({}, at::TensorOptions().dtype(at::kBool));
  // A finite sum of finite terms can overflow to inf only when they are astronomically large: a divergence
  // anyway.
  return at::stack(sums).sum().isfinite();
}

std::string PerturbedOptimizer::settle_finite_check() {
  if (!pending_finite_.defined()) return {};
  const bool finite = pending_finite_.item<bool>();
  pending_finite_ = at::Tensor();
  const int64_t first = first_unchecked_step_;
  first_unchecked_step_ = steps_;
  if (finite) return {};
  non_finite_ = "a loss or gradient of a step between steps " + std::to_string(first + 1) + " and " +
                std::to_string(steps_) + " is not finite (checked every " +
                std::to_string(options_.check_finite_every()) + " steps: the steps before the check were applied)";
  return non_finite_;
}

void PerturbedOptimizer::abort_step() {
  if (!in_step_) return;
  torch::NoGradGuard no_grad;
  if (method_->perturbs() && anchor_.size() == params_.size())
    for (size_t j = 0; j < params_.size(); ++j) params_[j].copy_(anchor_[j]);
  if (!buffers_before_.empty())
    for (size_t j = 0; j < buffers_.size(); ++j) buffers_[j].copy_(buffers_before_[j]);
  for (auto& p : params_) p.mutable_grad() = at::Tensor();
  for (auto& c : combined_) c = at::Tensor();
  last_losses_.clear();
  in_step_ = false;
}

void PerturbedOptimizer::finish_step() {
  check(in_step_, "PerturbedOptimizer: finish_step() without begin_step()");
  torch::NoGradGuard no_grad;
  if (method_->perturbs())
    for (size_t j = 0; j < params_.size(); ++j) params_[j].copy_(anchor_[j]);  // exact restoration of W
  combine_across_processes();
  const double scale = method_->final_scale();
  for (auto& p : params_)
    if (p.grad().defined() && scale != 1.0) p.mutable_grad().mul_(scale);
  non_finite_.clear();
  if (options_.check_finite() && options_.check_finite_every() == 1) {
    non_finite_ = find_non_finite();
  } else if (options_.check_finite()) {
    const at::Tensor finite = step_is_finite();
    pending_finite_ = pending_finite_.defined() ? pending_finite_.logical_and(finite) : finite;
    if ((steps_ + 1) % options_.check_finite_every() == 0) {
      ++steps_;  // the message counts this step among the checked ones
      settle_finite_check();
      --steps_;
    }
  }
  if (!buffers_before_.empty()) {
    // statistics = before + mean of the counted passes' updates; exactly unchanged when no pass moved them
    // (or when the step is skipped). Several processes: the updates are already combined.
    for (size_t j = 0; j < buffers_.size(); ++j) {
      if (buffer_passes_counted_ == 0 || !non_finite_.empty()) {
        buffers_[j].copy_(buffers_before_[j]);
      } else if (buffers_[j].is_floating_point()) {
        buffers_[j].copy_(buffers_before_[j]).add_(buffers_delta_sum_[j], 1.0 / buffer_passes_counted_);
      } else {
        buffers_[j].copy_(buffers_delta_sum_[j]);
      }
    }
  }
  in_step_ = false;
  ++steps_;
  if (!non_finite_.empty()) {
    for (auto& p : params_) p.mutable_grad() = at::Tensor();
    return;
  }
  if (options_.max_grad_norm() > 0) clip_grad_norm(params_, options_.max_grad_norm());
  for (const auto& term : gradient_terms_) term();
  push_options_to_base();
  base_->step();
}

at::Tensor PerturbedOptimizer::step(LossClosure closure) {
  if (!closure) {
    check(!method_->perturbs() && method_->evaluations() == 1,
          "PerturbedOptimizer::step: method '" + method_->name() + "' needs a closure (it evaluates " +
              std::to_string(method_->evaluations()) + " points)");
    {
      torch::NoGradGuard no_grad;
      for (const auto& term : gradient_terms_) term();
    }
    push_options_to_base();
    base_->step();
    ++steps_;
    gradient_evaluations_ += 1;
    return {};
  }
  begin_step();
  double loss_sum = 0;
  try {
    for (int64_t i = 0; i < method_->evaluations(); ++i) {
      move_to(i);
      if (!evaluates(i)) {
        skip(i);
        continue;
      }
      at::Tensor loss;
      {
        at::AutoGradMode enable_grad(true);
        loss = closure();
      }
      accumulate(i, loss);
    }
  } catch (...) {
    abort_step();
    throw;
  }
  finish_step();
  if (last_losses_.empty()) return {};
  if (!last_losses_.front().is_cpu())  // the mean stays on the device: no wait
    return at::stack(last_losses_).to(at::kDouble).mean();
  for (double l : last_losses()) loss_sum += l;
  return at::scalar_tensor(loss_sum / static_cast<double>(last_losses_.size()));
}

void PerturbedOptimizer::save(torch::serialize::OutputArchive& archive) const {
  torch::serialize::OutputArchive base_archive(archive.compilation_unit());
  base_->save(base_archive);
  archive.write("base", base_archive);
  torch::serialize::OutputArchive method_archive(archive.compilation_unit());
  method_->save(method_archive);
  archive.write("method", method_archive);
  archive.write("method_name", c10::IValue(method_->name()));
  archive.write("seed", c10::IValue(static_cast<int64_t>(options_.seed())));
  archive.write("steps", c10::IValue(steps_));
  archive.write("gradient_evaluations", c10::IValue(gradient_evaluations_));
}

void PerturbedOptimizer::load(torch::serialize::InputArchive& archive) {
  c10::IValue name;
  archive.read("method_name", name);
  check(name.isString() && name.toStringRef() == method_->name(),
        "optimizer state was saved for method '" + (name.isString() ? name.toStringRef() : std::string("?")) +
            "', not '" + method_->name() + "'");
  torch::serialize::InputArchive base_archive;
  archive.read("base", base_archive);
  base_->load(base_archive);
  torch::serialize::InputArchive method_archive;
  archive.read("method", method_archive);
  method_->load(method_archive);
  c10::IValue seed, steps, evals;
  archive.read("seed", seed);
  options_.seed(static_cast<uint64_t>(seed.toInt()));  // the run's noise stream continues
  archive.read("steps", steps);
  archive.read("gradient_evaluations", evals);
  steps_ = steps.toInt();
  gradient_evaluations_ = evals.toInt();
  // The base's groups carry the saved options (lr, ...): they are the truth now.
  for (size_t g = 0; g < param_groups_.size() && g < base_->param_groups().size(); ++g)
    param_groups_[g].set_options(base_->param_groups()[g].options().clone());
}

}  // namespace flatmin::optim
