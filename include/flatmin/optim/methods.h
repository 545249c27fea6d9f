#pragma once
/// The perturbation methods: plain SGD (no perturbation), weight-perturbed SGD and Noise Stability
/// Optimization here; the SAM family (SAM, USAM, ASAM, RSAM, CR-SAM) in sam.h and bSAM in bsam.h. Each
/// is a PerturbationMethod; any base optimizer does the update (bSAM brings its own: BsamUpdate).
/// MethodSpec + make_method / make_perturbed_optimizer build any of them by name.

#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <torch/arg.h>

#include "flatmin/noise/noise.h"
#include "flatmin/optim/base_optimizer.h"
#include "flatmin/optim/perturbation_method.h"
#include "flatmin/optim/perturbed_optimizer.h"

namespace flatmin::optim {

/// No perturbation: one gradient at W. With an SGD base this is SGD.  Cost 1.
class NoPerturbation final : public PerturbationMethod {
 public:
  std::string name() const override { return "sgd"; }
  int64_t evaluations() const override { return 1; }
  bool perturbs() const override { return false; }
  void move_to(int64_t i, StepContext& ctx) override {}
};

/// Weight noise shared by WP-SGD and NSO: law, σ and its schedule.
struct NoiseOptions {
  /* implicit */ NoiseOptions(double sigma = 0.01) : sigma_(sigma) {}
  TORCH_ARG(noise::SigmaSchedule, sigma);
  TORCH_ARG(noise::NoiseLaw, law) = noise::NoiseLaw::kGaussian;
};

/// Weight-perturbed SGD (randomized smoothing, one-sided): U ~ P, gradient g(W + U).  Cost 1.
/// BatchNorm statistics: from the perturbed pass (the only one).
class WpSgd final : public PerturbationMethod {
 public:
  explicit WpSgd(NoiseOptions options = {});
  std::string name() const override { return "wp-sgd"; }
  bool takes_tensor_scales() const override { return true; }
  int64_t evaluations() const override { return 1; }
  void move_to(int64_t i, StepContext& ctx) override;
  void set_epoch(int64_t epoch, int64_t total_epochs) override;
  std::string describe() const override;
  std::vector<std::pair<std::string, double>> scalars() const override { return {{"sigma", sigma_}}; }
  double sigma() const { return sigma_; }

 private:
  NoiseOptions options_;
  double sigma_;
};

struct NsoOptions {
  /* implicit */ NsoOptions(double sigma = 0.01) : noise_(sigma) {}
  TORCH_ARG(NoiseOptions, noise);
  /// Number of sampled perturbations per step.
  TORCH_ARG(int64_t, k) = 1;
  /// Evaluate at W+U_j and W−U_j. false = the paper's "no negative" ablation: 2k independent
  /// one-sided draws at the same cost.
  TORCH_ARG(bool, two_point) = true;
};

/// Noise Stability Optimization (Zhang, Ju, Zhang, Ju, Chen; NSO paper Algorithm 1):
///     U_j ~ P (j = 1 … k),   G = 1/(2k) · Σ_j [ g(W + U_j) + g(W − U_j) ],   W ← base_step(W, G)
/// minimising F(W) = E_U[f(W+U)] ≈ f(W) + σ²/2·Tr∇²f(W); the ±U pair cancels the first-order term of
/// f(W±U) that makes one-sided noise injection high-variance.  Cost 2k.
/// U_j is drawn in place into the parameters (W + U_j) and W − U_j is formed as 2W − (W + U_j), so no
/// buffer beyond the optimizer's copy of W is needed for any k.
/// BatchNorm statistics: the mean of the updates of all 2k passes (the first-order shifts of ±U cancel
/// in it as they do in the gradient).
class Nso final : public PerturbationMethod {
 public:
  explicit Nso(NsoOptions options = {});
  std::string name() const override { return "nso"; }
  bool takes_tensor_scales() const override { return true; }
  int64_t evaluations() const override { return 2 * options_.k(); }
  void move_to(int64_t i, StepContext& ctx) override;
  double final_scale() const override { return 1.0 / static_cast<double>(2 * options_.k()); }
  void set_epoch(int64_t epoch, int64_t total_epochs) override;
  std::string describe() const override;
  std::vector<std::pair<std::string, double>> scalars() const override { return {{"sigma", sigma_}}; }
  double sigma() const { return sigma_; }
  const NsoOptions& options() const { return options_; }

 private:
  NsoOptions options_;
  double sigma_;
};

/// Everything the CLI and experiments need to build a method by name. Each method reads only its own
/// fields; the defaults are the papers' (ALGORITHMS.md).
struct MethodSpec {
  TORCH_ARG(std::string, name) = "nso";  ///< sgd | wp-sgd | nso | sam | usam | asam | rsam | bsam | crsam
  // NSO, WP-SGD
  TORCH_ARG(double, sigma) = 0.01;
  TORCH_ARG(noise::NoiseLaw, law) = noise::NoiseLaw::kGaussian;
  TORCH_ARG(noise::ScheduleKind, sigma_schedule) = noise::ScheduleKind::kConstant;
  TORCH_ARG(int64_t, sigma_warmup_epochs) = 0;
  TORCH_ARG(int64_t, k) = 1;
  TORCH_ARG(bool, two_point) = true;
  /// The radius ρ of sam, usam, asam, rsam, bsam and crsam; negative = the method's default
  /// (default_rho(name)).
  TORCH_ARG(double, rho) = -1.0;
  // ASAM
  TORCH_ARG(double, asam_eta) = 0.01;
  // RSAM
  TORCH_ARG(double, rsam_sigma) = 0.01;
  TORCH_ARG(double, rsam_lambda) = 2.0;
  TORCH_ARG(double, rsam_sigma_start) = -1.0;  ///< negative: constant σ
  TORCH_ARG(double, rsam_rho_end) = -1.0;      ///< negative: constant ρ
  // bSAM
  TORCH_ARG(int64_t, bsam_train_size) = 0;  ///< N; 0 = the training split's size (run_training fills it in)
  TORCH_ARG(double, bsam_prior_precision) = 25.0;
  TORCH_ARG(double, bsam_damping) = 0.1;
  TORCH_ARG(double, bsam_init_precision) = 1.0;
  TORCH_ARG(double, bsam_beta1) = 0.9;
  TORCH_ARG(double, bsam_beta2) = 0.999;
  TORCH_ARG(double, bsam_noise_std) = 0.0;        ///< > 0: s₀ = 1/(N·it²) (BsamOptions::noise_std)
  TORCH_ARG(std::string, bsam_prior_mean) = "zero";  ///< zero | init (BsamOptions::prior_at_init)
  TORCH_ARG(std::string, bsam_bn_statistics) = "both";  ///< both | ascent (BsamOptions::statistics_from_ascent)
  // CR-SAM
  TORCH_ARG(double, crsam_alpha) = 0.1;
  TORCH_ARG(double, crsam_beta) = 0.01;
};

/// The method names make_method accepts, for help texts.
const std::vector<std::string>& method_names();

/// ρ when MethodSpec::rho is negative: sam 0.05, usam 0.05, asam 0.5, rsam 0.05, bsam 0.01, crsam 0.1
/// (0 for methods without a radius).
double default_rho(const std::string& method);
/// default_rho(spec.name()) if spec.rho() < 0, else spec.rho() (NaN included: the method rejects it).
double resolved_rho(const MethodSpec& spec);

/// Builds the method; throws flatmin::Error on an unknown name or an invalid option (σ < 0, k < 1, ...,
/// bsam without bsam_train_size).
std::shared_ptr<PerturbationMethod> make_method(const MethodSpec& spec);

/// Throws flatmin::Error when `base` cannot serve the method of `spec` (bsam: a base other than sgd,
/// weight decay or Nesterov momentum).
void check_base_for_method(const MethodSpec& spec, const BaseOptimizerOptions& base);

/// The method of `spec` over its base optimizer, as one PerturbedOptimizer: the base named in `base`
/// (SGD, AdamW), or for bsam its own update rule (BsamUpdate with lr = base.lr(); bSAM's β1 is its
/// momentum and its prior precision its weight decay, so base.momentum() is not used and a base other
/// than sgd, weight decay or Nesterov are rejected).
std::shared_ptr<PerturbedOptimizer> make_perturbed_optimizer(std::vector<at::Tensor> params, const MethodSpec& spec,
                                                             const BaseOptimizerOptions& base,
                                                             PerturbedOptimizerOptions options = {});

}  // namespace flatmin::optim
