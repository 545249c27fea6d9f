#pragma once
/// Regularisers that act on the combined gradient at W (PerturbedOptimizer::add_gradient_term), the same
/// for every method.

#include <vector>

#include <ATen/Tensor.h>

namespace flatmin::optim {

/// L2-SP, the distance-based regulariser of fine-tuning (Li, Grandvalet, Davoine; ICML 2018; the NSO
/// paper's "distance-based regularisation"): the objective gains λ·‖W − W₀‖², W₀ the starting
/// (pretrained) weights, so each step adds
///     ∇ = 2λ·(W − W₀)
/// to the .grad of every parameter that has a gradient (as weight decay, which is L2-SP with W₀ = 0).
///
/// Why on the combined gradient at W and not as a loss term: as a loss term it would be evaluated at
/// every perturbed point — SAM would add 2λδ (the penalty itself made sharpness-aware), WP-SGD 2λU of
/// pure noise, CR-SAM a multiple of ρv; only NSO's ± pair would cancel it exactly (the term is
/// quadratic). At W it is the same, exact term for every method, and the training objective printed
/// stays the data loss.
class L2Sp {
 public:
  /// Snapshots `params` (those that require grad) as W₀. λ must be finite and >= 0.
  L2Sp(std::vector<at::Tensor> params, double lambda);
  /// .grad += 2λ(W − W₀) where .grad is defined.
  void operator()() const;
  /// λ·‖W − W₀‖² (for logs).
  double penalty() const;
  double lambda() const { return lambda_; }
  const std::vector<at::Tensor>& start() const { return start_; }

 private:
  std::vector<at::Tensor> params_, start_;
  double lambda_;
};

}  // namespace flatmin::optim
