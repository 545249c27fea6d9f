#pragma once
/// The sharpness-aware family on the perturbation-step abstraction: SAM, unnormalised SAM (USAM),
/// adaptive SAM (ASAM), random SAM (RSAM) and curvature-regularised SAM (CR-SAM). Bayesian SAM, which
/// also replaces the base optimizer's update, is in bsam.h.
///
/// Every method here evaluates the minibatch gradient at a first point, reads it back from
/// ctx.combined when it moves to the next point, and hands the combination to any base optimizer at the
/// restored W. Norms are global: over all parameters that require grad, together, as one vector
/// (a parameter that received no gradient at the first point is left out of the norm and not moved
/// along the ascent); a norm in a denominator carries a 1e-12 guard, ‖·‖ + 1e-12. Norms and scales stay
/// on the device (no host synchronisation).
///
/// Notation: W the weights, g(·) the minibatch gradient, g = g(W), ρ the radius.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>
#include <torch/arg.h>

#include "flatmin/optim/perturbation_method.h"

namespace flatmin::optim {

/// ‖(t_0, t_1, …)‖₂ over the defined tensors, as a 0-dim float64 tensor on their device (0 when none).
at::Tensor global_norm(const std::vector<at::Tensor>& tensors);

struct SamOptions {
  /* implicit */ SamOptions(double rho = 0.05) : rho_(rho) {}
  /// Radius ρ (the NSO paper's grid: 0.01, 0.02, 0.05).
  TORCH_ARG(double, rho);
};

/// Sharpness-Aware Minimization (Foret, Kleiner, Mobahi, Neyshabur; ICLR 2021):
///     δ = ρ·g/(‖g‖ + 1e-12),   G = g(W + δ),   W ← base_step(W, G).
/// Cost 2 (g at W, then the gradient at W + δ). ρ = 0 is SGD with the gradient computed twice.
/// BatchNorm statistics: from the clean pass at W only (counts_for_buffers(i) = i == 0); the ascent pass
/// normalises with its own batch statistics but leaves no trace in the running ones.
class Sam final : public PerturbationMethod {
 public:
  explicit Sam(SamOptions options = {});
  std::string name() const override { return "sam"; }
  int64_t evaluations() const override { return 2; }
  void move_to(int64_t i, StepContext& ctx) override;
  Blend blend(int64_t i) const override { return i == 0 ? Blend{} : Blend{0.0, 1.0}; }
  bool counts_for_buffers(int64_t i) const override { return i == 0; }
  bool reads_gradients(int64_t i) const override { return i > 0; }
  bool takes_tensor_scales() const override { return true; }
  std::string describe() const override;
  std::vector<std::pair<std::string, double>> scalars() const override { return {{"rho", options_.rho()}}; }
  const SamOptions& options() const { return options_; }

 private:
  SamOptions options_;
};

/// Unnormalised SAM (USAM; Andriushchenko & Flammarion 2022, the NSO paper's baseline):
///     δ = ρ·g,   G = g(W + δ).
/// On a quadratic with Hessian A: G = (I + ρA)·g.  Cost 2.
/// BatchNorm statistics: from the clean pass at W only.
class Usam final : public PerturbationMethod {
 public:
  explicit Usam(SamOptions options = {});
  std::string name() const override { return "usam"; }
  int64_t evaluations() const override { return 2; }
  void move_to(int64_t i, StepContext& ctx) override;
  Blend blend(int64_t i) const override { return i == 0 ? Blend{} : Blend{0.0, 1.0}; }
  bool counts_for_buffers(int64_t i) const override { return i == 0; }
  bool reads_gradients(int64_t i) const override { return i > 0; }
  bool takes_tensor_scales() const override { return true; }
  std::string describe() const override;
  std::vector<std::pair<std::string, double>> scalars() const override { return {{"rho", options_.rho()}}; }
  const SamOptions& options() const { return options_; }

 private:
  SamOptions options_;
};

struct AsamOptions {
  /* implicit */ AsamOptions(double rho = 0.5) : rho_(rho) {}
  /// Radius ρ in the normalised coordinates T⁻¹W (the NSO paper's grid: 0.5 – 2.0).
  TORCH_ARG(double, rho);
  /// η_a in T = |W| + η_a.
  TORCH_ARG(double, eta) = 0.01;
};

/// Adaptive SAM (Kwon, Kim, Park, Choi; ICML 2021):
///     T = diag(|W| + η_a) (element-wise, every parameter tensor, biases included),
///     δ = ρ·T²g/(‖T g‖ + 1e-12),   G = g(W + δ).
/// With η_a ≫ |W|, T ≈ η_a·I and δ ≈ (ρ·η_a)·g/‖g‖: SAM with radius ρ·η_a.  Cost 2.
/// (The official ASAM code leaves biases at T = 1 and drops η_a from weights' T in its widely used
/// variant; the NSO repository uses T = |W| everywhere. flatmin follows the paper's formula.)
/// BatchNorm statistics: from the clean pass at W only.
class Asam final : public PerturbationMethod {
 public:
  explicit Asam(AsamOptions options = {});
  std::string name() const override { return "asam"; }
  int64_t evaluations() const override { return 2; }
  void move_to(int64_t i, StepContext& ctx) override;
  Blend blend(int64_t i) const override { return i == 0 ? Blend{} : Blend{0.0, 1.0}; }
  bool counts_for_buffers(int64_t i) const override { return i == 0; }
  bool reads_gradients(int64_t i) const override { return i > 0; }
  bool takes_tensor_scales() const override { return true; }
  std::string describe() const override;
  std::vector<std::pair<std::string, double>> scalars() const override { return {{"rho", options_.rho()}}; }
  const AsamOptions& options() const { return options_; }

 private:
  AsamOptions options_;
};

struct RsamOptions {
  /* implicit */ RsamOptions(double rho = 0.05) : rho_(rho) {}
  /// Radius ρ of the adversarial step (the NSO paper's grid: 0.01, 0.02, 0.05).
  TORCH_ARG(double, rho);
  /// Relative std σ of the random perturbation (per output unit, times that unit's weight norm; the
  /// NSO paper's grid: 0.008, 0.01, 0.012).
  TORCH_ARG(double, sigma) = 0.01;
  /// λ in v = λ·g(W + δ) + δ (2 in the authors' runs).
  TORCH_ARG(double, lambda) = 2.0;
  /// Optional per-epoch schedules (the authors' ViT run): σ rises from sigma_start to sigma and ρ falls
  /// from rho to rho_end along a half cosine over the run. Negative = constant (the default).
  TORCH_ARG(double, sigma_start) = -1.0;
  TORCH_ARG(double, rho_end) = -1.0;
};

/// Random SAM (Liu, Mai, Cheng, Chen, Hsieh, You; NeurIPS 2022), as in the authors' code:
///     δ: z ~ N(0, I) per tensor; for a tensor with ≥ 2 dimensions, output unit j (row j of a Linear
///        weight, output channel j of a conv weight) gets δ_j = σ·‖W_j‖·z_j; a 1-D (or 0-D) tensor gets
///        δ = σ·‖W‖·z;
///     g̃ = g(W + δ);   v = λ·g̃ + δ;   ε = ρ·v/(‖v‖ + 1e-12);   G = g(W + ε)   (W + ε, not W + δ + ε).
/// Cost 2; no evaluation at the clean W. z for step s and tensor t is the counter-based draw
/// noise_key(seed, s, 0, t), regenerable from the step count.
/// Schedules (options): per epoch e of E, σ_e = σ₀ + (σ − σ₀)·(1 − cos(π·e/(E−1)))/2 and
/// ρ_e = ρ_end + (ρ − ρ_end)·(1 + cos(π·e/(E−1)))/2; constant by default.
/// BatchNorm statistics: from the random pass at W + δ only (counts_for_buffers(i) = i == 0). There is
/// no clean pass; δ is a zero-mean perturbation of W while ε is chosen to raise the loss, so the
/// random pass is the closer to W's statistics (the NSO repository also keeps the first pass's).
class Rsam final : public PerturbationMethod {
 public:
  explicit Rsam(RsamOptions options = {});
  std::string name() const override { return "rsam"; }
  int64_t evaluations() const override { return 2; }
  void move_to(int64_t i, StepContext& ctx) override;
  Blend blend(int64_t i) const override { return i == 0 ? Blend{} : Blend{0.0, 1.0}; }
  bool counts_for_buffers(int64_t i) const override { return i == 0; }
  bool reads_gradients(int64_t i) const override { return i > 0; }
  void set_epoch(int64_t epoch, int64_t total_epochs) override;
  std::string describe() const override;
  std::vector<std::pair<std::string, double>> scalars() const override { return {{"rho", rho_}, {"sigma", sigma_}}; }
  const RsamOptions& options() const { return options_; }
  double rho() const { return rho_; }
  double sigma() const { return sigma_; }

 private:
  RsamOptions options_;
  double rho_, sigma_;
};

struct CrSamOptions {
  /* implicit */ CrSamOptions(double rho = 0.1) : rho_(rho) {}
  /// Radius ρ: of the SAM ascent and of the finite differences (the paper's CIFAR settings: 0.05 – 0.2).
  TORCH_ARG(double, rho);
  /// Weight α of the curvature term (the official code's γ; the paper's CIFAR settings: 0.1 – 0.5).
  TORCH_ARG(double, alpha) = 0.1;
  /// Weight β of the gradient term (the paper's CIFAR settings: 0.01 – 0.1).
  TORCH_ARG(double, beta) = 0.01;
};

/// Curvature-Regularized SAM (Wu, Luo, Wunsch; AAAI 2024), the practical rule of the
/// authors' code. v = g/(‖g‖ + 1e-12) (the gradient direction, held fixed), g_o = g(W),
/// g_w = g(W + ρv), g_b = g(W − ρv):
///     G = g_w + α·(g_w + g_b − 2·g_o) + β·(g_w − g_b).
/// This is SAM's gradient g_w plus the gradient of the finite-difference curvature and slope terms
///     α·[L(W+ρv) + L(W−ρv) − 2L(W)] ≈ α·ρ²·v⊤∇²L·v,      β·[L(W+ρv) − L(W−ρv)] ≈ β·2ρ·v⊤∇L,
/// i.e. of the paper's R_c(W) = α·log Tr∇²L + β·log‖∇L‖ along v without the logs: the log of the
/// finite-difference curvature is undefined whenever it is ≤ 0 (common in training), and the authors'
/// code drops them. The two evaluations at W ± ρv are independent. α = β = 0 is SAM with radius ρ.
/// Cost 3. Combination: c ← g_o; c ← −2α·c + (1+α+β)·g_w; c ← c + (α−β)·g_b (W − ρv is formed as
/// 2W − (W + ρv), so no buffer beyond the optimizer's copy of W).
/// BatchNorm statistics: from the clean pass at W only (the authors' code freezes them on the perturbed
/// passes).
class CrSam final : public PerturbationMethod {
 public:
  explicit CrSam(CrSamOptions options = {});
  std::string name() const override { return "crsam"; }
  int64_t evaluations() const override { return 3; }
  void move_to(int64_t i, StepContext& ctx) override;
  Blend blend(int64_t i) const override;
  bool counts_for_buffers(int64_t i) const override { return i == 0; }
  bool reads_gradients(int64_t i) const override { return i > 0; }
  bool takes_tensor_scales() const override { return true; }
  std::string describe() const override;
  std::vector<std::pair<std::string, double>> scalars() const override { return {{"rho", options_.rho()}}; }
  const CrSamOptions& options() const { return options_; }

 private:
  CrSamOptions options_;
};

}  // namespace flatmin::optim
