#pragma once
/// Flatness seen from weight perturbations: the noise-stability gap of the NSO paper against its quadratic
/// prediction σ²/2·Tr∇²f, CR-SAM's approximation ratio of SAM's one-step ascent, per-example Hessian traces,
/// and the NSO paper's PAC-Bayes bound evaluated from measured inputs.

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <torch/arg.h>

#include "flatmin/geometry/objective.h"
#include "flatmin/geometry/spectrum.h"
#include "flatmin/noise/noise.h"
#include "flatmin/core/progress.h"

namespace flatmin::geometry {

// ------------------------------------------------------------------------------------ perturbation gap

struct GapOptions {
  TORCH_ARG(std::vector<double>, sigmas) = std::vector<double>{0.020, 0.022, 0.024, 0.026, 0.028, 0.030};
  /// Draws per σ (antithetic: pairs ±U, two loss evaluations each).
  TORCH_ARG(int64_t, draws) = 100;
  TORCH_ARG(noise::NoiseLaw, law) = noise::NoiseLaw::kGaussian;
  /// (f(W+U) + f(W−U))/2 − f(W): the first-order term cancels exactly and the variance drops. Off: f(W+U) − f(W).
  /// A law that is not mean-zero (binomial4) is always drawn one-sided: −U would be another law, and the pair
  /// would hide the mean's first-order term that E[f(W+U)] − f(W) contains.
  TORCH_ARG(bool, antithetic) = true;
  TORCH_ARG(uint64_t, seed) = 0;
  /// Tr∇²f for the prediction; NaN = estimate it here with `trace_options`.
  TORCH_ARG(double, trace) = std::numeric_limits<double>::quiet_NaN();
  TORCH_ARG(double, trace_std_error) = 0;
  TORCH_ARG(TraceOptions, trace_options) = {};
  TORCH_ARG(ProgressPtr, progress) = nullptr;
};

struct GapRow {
  double sigma = 0;
  double gap = 0;            ///< mean over draws of the gap
  double gap_std = 0;        ///< std of one draw (the paper's "±")
  double gap_std_error = 0;  ///< gap_std/√draws
  double predicted = 0;      ///< σ²/2·Tr∇²f
  double predicted_std_error = 0;
  double relative_error = 0;  ///< (predicted − gap)/gap: the quadratic approximation's error
  double z = 0;               ///< (gap − predicted)/√(se_gap² + se_pred²): is the difference significant?
};

struct GapResult {
  double loss = 0;  ///< f(W)
  double trace = 0, trace_std_error = 0;
  int64_t draws = 0;
  std::string law;
  bool antithetic = true;
  std::vector<GapRow> rows;
  /// Σ(gap − predicted)² / Σ gap² over the rows: the relative residual sum of squares (the NSO review
  /// version's Table 2 "RSS"; this formula gives its 1.03% for BERT/MRPC from the table's rounded values).
  double rss = 0;
  double rss_absolute = 0;          ///< Σ(gap − predicted)²
  double rms_relative_error = 0;    ///< √mean(relative_error²)
  /// The trace that fits the gaps best as σ²/2·T (least squares over the rows): T = 2·Σgap·σ²/Σσ⁴.
  double effective_trace = 0;
  /// Plain statements of where the quadratic approximation fails or the numbers cannot be trusted.
  std::vector<std::string> warnings;
  double seconds = 0;
};

/// For each σ: `draws` perturbations U ~ law(0, σ²I) of every parameter, drawn in place with
/// noise::add_noise_ and keys noise_key(seed, 0, draw, tensor) — the same unit draws for every σ (common
/// random numbers: the rows differ by σ, not by luck) — and the gap of the objective's value.
/// W is restored exactly (by copy).
GapResult perturbation_gap(const Objective& objective, const GapOptions& options = {});

// ------------------------------------------------------------------------------ SAM approximation ratio

struct AscentRatioOptions {
  TORCH_ARG(double, rho) = 0.05;
  TORCH_ARG(int64_t, steps) = 20;
  /// Ascent step length (normalised gradient steps, projected on the ρ-ball); 0 = ρ/2. On random quadratics
  /// ρ/2 from δ₁ reached within 0.3% of the best of the step lengths tried (ρ/8 … ρ) in 20 steps; the PGD
  /// rule 2.5ρ/steps from 0 fell up to 2% short.
  TORCH_ARG(double, step_size) = 0;
  /// Points whose best increase ℓ(w+δ*) − ℓ(w) is below this are skipped (counted).
  TORCH_ARG(double, min_increase) = 1e-12;
  TORCH_ARG(ProgressPtr, progress) = nullptr;
};

struct AscentRatioResult {
  double ratio = 0;  ///< mean over points of (ℓ(w+δ₁) − ℓ(w)) / (ℓ(w+δ*) − ℓ(w))
  double ratio_std = 0, ratio_std_error = 0;
  double one_step_increase = 0;  ///< mean ℓ(w+δ₁) − ℓ(w)
  double best_increase = 0;      ///< mean ℓ(w+δ*) − ℓ(w)
  int64_t points = 0, skipped = 0;
  double seconds = 0;
};

/// CR-SAM's approximation ratio, per example of the objective (it needs per-example losses): δ₁ = ρ·g/‖g‖
/// (SAM's one step), δ* the best point of δ₁ and a `steps`-step projected normalised-gradient ascent from δ₁
/// on ‖δ‖ ≤ ρ (so δ* is never worse than δ₁: the ratio is ≤ 1). Cost per example: steps + 2 gradients.
AscentRatioResult sam_approximation_ratio(const Objective& objective, const AscentRatioOptions& options = {});

// ------------------------------------------------------------------------------- per-example traces

struct SampleTraceOptions {
  TORCH_ARG(int64_t, probes) = 10;  ///< Hutchinson probes per example
  /// The max of noisy estimates is biased up (the winner's curse): the examples with the `refine_top`
  /// largest estimates are measured again with `refine_probes` fresh probes (0 = 10·probes), which replace
  /// their first estimates.
  TORCH_ARG(int64_t, refine_top) = 5;
  TORCH_ARG(int64_t, refine_probes) = 0;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(ProgressPtr, progress) = nullptr;
};

struct SampleTraces {
  std::vector<double> traces;      ///< per example: Tr∇²ℓ(f_W(x_i), y_i)
  std::vector<double> std_errors;
  double mean = 0, mean_std_error = 0;
  double max = 0;                  ///< max of the (refined) estimates
  double max_std_error = 0;        ///< the standard error of the example attaining the max
  int64_t max_index = 0;
  double seconds = 0;
};

SampleTraces per_example_traces(const Objective& objective, const SampleTraceOptions& options = {});

// -------------------------------------------------------------------------------------- PAC-Bayes

/// ‖W − W₀‖₂ over the trainable parameters of `model`, matched by name in `reference` (e.g. the pretrained
/// or initial weights). Throws flatmin::Error on a missing name or a shape mismatch.
double parameter_distance(const torch::nn::Module& model, const torch::nn::Module& reference);

struct PacBayesInputs {
  TORCH_ARG(double, train_loss) = 0;  ///< L̂(W)
  TORCH_ARG(double, test_loss) = 0;   ///< an estimate of L(W), for the observed gap
  TORCH_ARG(double, alpha) = 0;       ///< trace statistic: max (the theorem) or mean of per-example traces
  TORCH_ARG(double, radius) = 0;      ///< r = ‖W − W₀‖
  TORCH_ARG(int64_t, n) = 1;          ///< training examples
  TORCH_ARG(double, loss_bound) = 1;  ///< C: the loss lies in [0, C]
  TORCH_ARG(double, epsilon) = 0;     ///< the theorem's ε (→ 0)
};

struct PacBayesResult {
  double complexity = 0;    ///< √(C·α·r²/n)
  double bound = 0;         ///< (1+ε)·L̂ + (1+ε)·√(C·α·r²/n), the O(n^{-3/4}) term dropped
  double predicted_gap = 0; ///< bound − L̂
  double observed_gap = 0;  ///< test_loss − train_loss
};

/// NSO Theorem 2.2 (review version; Theorem 2.1 of the TMLR version):
/// L(W) ≤ (1+ε)·L̂(W) + (1+ε)·√(C·α·r²/n) + O(n^{-3/4}·log(1/δ)). Throws flatmin::Error on negative inputs or n < 1.
PacBayesResult pac_bayes_bound(const PacBayesInputs& inputs);

}  // namespace flatmin::geometry
