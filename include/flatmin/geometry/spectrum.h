#pragma once
/// The Hessian's spectrum from Hessian-vector products: its trace (Hutchinson, Hutch++), top eigenvalues
/// (Lanczos with full reorthogonalisation), spectral density (stochastic Lanczos quadrature), and the scalars
/// a training run logs (trace, λ₁, ‖∇L‖, CR-SAM's normalised trace).
///
/// Every estimator is seeded and deterministic (probes are counter-based Philox draws, noise::fill_noise_),
/// reports its error, works per parameter tensor where that makes sense, and reports progress on long work.

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>
#include <torch/arg.h>

#include "flatmin/geometry/objective.h"
#include "flatmin/core/progress.h"

namespace flatmin::geometry {

/// Progress reporting for long work (nullptr = none). A typedef: TORCH_ARG pastes `const T&`.
using ProgressPtr = Progress*;

// ------------------------------------------------------------------------------------------------ trace

enum class TraceStopRule {
  /// Stop once the standard error of the mean is ≤ rel_tol·|mean| (after min_probes): a variance test.
  kStandardError,
  /// PyHessian's rule: stop once the running mean changes by < rel_tol relatively between probes. Not a
  /// variance test — it stops whenever one probe lands near the mean; offered for comparison only.
  kPyHessianChange,
};

/// Several processes sharing Hutchinson's probes (distributed/ provides them): process `rank` of `size`
/// computes the probes p ≡ rank (mod size), and `sum` adds tensors across the processes in place. The
/// values are gathered in probe order and the stop rule is applied probe by probe, so every process
/// returns one process's estimate (the trace, its standard error and the probe count).
struct ProbeSplit {
  int rank = 0;
  int size = 1;
  std::function<void(const std::vector<at::Tensor>&)> sum;
};

struct TraceOptions {
  /// kStandardError: target relative standard error; kPyHessianChange: relative change of the mean.
  TORCH_ARG(double, rel_tol) = 1e-2;
  TORCH_ARG(int64_t, max_probes) = 100;
  /// Never stop before this many probes (the standard error of fewer is itself too noisy).
  TORCH_ARG(int64_t, min_probes) = 10;
  TORCH_ARG(TraceStopRule, stop_rule) = TraceStopRule::kStandardError;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(HvpOptions, hvp) = {};
  TORCH_ARG(ProgressPtr, progress) = nullptr;
  TORCH_ARG(ProbeSplit, split) = {};
};

struct LayerTrace {
  std::string name;
  int64_t numel = 0;
  double trace = 0;      ///< Tr of the parameter tensor's diagonal block of ∇²L
  double std_error = 0;
};

struct TraceResult {
  double trace = 0;         ///< the estimate of Tr ∇²L
  double std_error = 0;     ///< its standard error (std of the probes / √probes)
  double probe_std = 0;     ///< the std of one probe vᵀHv
  int64_t probes = 0;
  int64_t hvps = 0;         ///< Hessian-vector products spent
  bool converged = false;   ///< the stop rule was met before max_probes
  std::vector<LayerTrace> layers;  ///< per parameter tensor; Σ layers.trace = trace exactly (same probes)
  double seconds = 0;
};

/// Hutchinson: Tr H = E[vᵀHv] with Rademacher v. The per-layer traces come from the same probes:
/// v_tᵀ(Hv)_t estimates the trace of block t, and the blocks' sum is the probe vᵀHv.
TraceResult hutchinson_trace(const Objective& objective, const TraceOptions& options = {});
/// The same on an existing operator (shares its cached graphs); call inside a MeasurementScope.
TraceResult hutchinson_trace(HessianOperator& hessian, const TraceOptions& options);

struct HutchppOptions {
  /// Hessian-vector products in all: a third sketch the top of the spectrum (S), a third build Q = orth(HS)
  /// and the trace of QᵀHQ, a third estimate the trace of the rest with Hutchinson.
  TORCH_ARG(int64_t, hvps) = 60;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(HvpOptions, hvp) = {};
  TORCH_ARG(ProgressPtr, progress) = nullptr;
};

/// Hutch++ (Meyer, Musco, Musco & Woodruff 2021): Tr H = Tr(QᵀHQ) + Tr((I−QQᵀ)H(I−QQᵀ)); the first term is
/// exact, the second estimated by Hutchinson, so the error is that of the deflated remainder only.
/// std_error is the remainder's standard error; layers are not reported (empty). Memory: hvps/3 flat vectors.
TraceResult hutchpp_trace(const Objective& objective, const HutchppOptions& options = {});
TraceResult hutchpp_trace(HessianOperator& hessian, const HutchppOptions& options);

// ------------------------------------------------------------------------------------------ eigenvalues

enum class EigenOrder { kLargest, kLargestMagnitude };

struct EigenOptions {
  TORCH_ARG(int64_t, k) = 1;
  /// Converged when every one of the k Ritz pairs has ‖Hv − θv‖ ≤ tol·max(|θ|, 1e-3·|θ₁|).
  TORCH_ARG(double, tol) = 1e-3;
  /// Lanczos steps at most (also capped by the dimension). Memory: this many flat vectors.
  TORCH_ARG(int64_t, max_iterations) = 100;
  TORCH_ARG(EigenOrder, order) = EigenOrder::kLargest;
  TORCH_ARG(uint64_t, seed) = 0;
  /// Recompute each residual ‖Hv − θv‖ with one explicit product per eigenvalue (k more products).
  TORCH_ARG(bool, verify) = true;
  /// Return the eigenvectors (flat, unit norm).
  TORCH_ARG(bool, vectors) = false;
  TORCH_ARG(HvpOptions, hvp) = {};
  TORCH_ARG(ProgressPtr, progress) = nullptr;
};

struct EigenResult {
  std::vector<double> values;     ///< the top k, in the chosen order
  std::vector<double> residuals;  ///< ‖Hv − θv‖ per value (explicit when verify, else Lanczos' estimate)
  std::vector<at::Tensor> vectors;
  bool converged = false;
  int64_t iterations = 0;  ///< Lanczos steps
  int64_t hvps = 0;
  double seconds = 0;
};

/// Top-k eigenvalues by Lanczos with full reorthogonalisation (twice, Gram–Schmidt), from a seeded
/// Rademacher start. Stops on the residuals of the Ritz pairs (β_j·|e_jᵀs|), or on an invariant subspace
/// (then the values are exact). Far fewer products than power iteration with deflation when λ₂/λ₁ ≈ 1.
EigenResult top_eigenvalues(const Objective& objective, const EigenOptions& options = {});
EigenResult top_eigenvalues(HessianOperator& hessian, const EigenOptions& options);

// ---------------------------------------------------------------------------------------------- density

struct DensityOptions {
  TORCH_ARG(int64_t, runs) = 1;           ///< independent Lanczos runs (start vectors) averaged
  TORCH_ARG(int64_t, iterations) = 100;   ///< Lanczos steps per run (capped by the dimension)
  TORCH_ARG(int64_t, grid_points) = 1000;
  /// Std of the Gaussian kernel; 0 = 1% of the span of the Ritz values.
  TORCH_ARG(double, bandwidth) = 0;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(HvpOptions, hvp) = {};
  TORCH_ARG(ProgressPtr, progress) = nullptr;
};

struct DensityResult {
  std::vector<double> grid;     ///< evenly spaced, covering every Ritz value ± 6 bandwidths
  std::vector<double> density;  ///< φ(t) = (1/runs)·Σ_runs Σ_j w_j·N(t; θ_j, bandwidth²)
  double bandwidth = 0;
  double mass = 0;              ///< ∫φ on the grid (trapezoid): 1 up to discretisation, not renormalised
  std::vector<std::vector<double>> nodes;    ///< per run: Ritz values θ_j
  std::vector<std::vector<double>> weights;  ///< per run: w_j = (first component of the Ritz vector)², Σ = 1
  double trace_estimate = 0;    ///< dim·mean over runs of Σ_j w_j θ_j (Gaussian start: an unbiased Tr estimate)
  int64_t hvps = 0;
  double seconds = 0;
};

/// Stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao 2019; PyHessian's density): each run is a
/// Lanczos run from a normalised Gaussian vector v; the eigenpairs (θ_j, s_j) of its tridiagonal matrix give
/// the quadrature vᵀg(H)v ≈ Σ_j s_{1j}²·g(θ_j) of the spectral measure, smoothed by a Gaussian kernel.
DensityResult spectral_density(const Objective& objective, const DensityOptions& options = {});
DensityResult spectral_density(HessianOperator& hessian, const DensityOptions& options);

// ------------------------------------------------------------------------------ gradient-scaled measures

/// CR-SAM's normalised Hessian trace C = Tr(∇²L)/‖∇L‖² with its standard error from the trace's (the
/// gradient is exact). Near a minimum ‖∇L‖ → 0 and C grows without bound: read it with the gradient norm.
std::pair<double, double> normalized_trace(const TraceResult& trace, const GradientResult& gradient);

// ---------------------------------------------------------------------------------- per-epoch scalars

/// The cheap set a training run can log every few epochs.
struct ScalarOptions {
  TORCH_ARG(bool, trace) = true;             ///< "hessian_trace", "hessian_trace_se", "hessian_trace_probes"
  TORCH_ARG(bool, lambda1) = true;           ///< "lambda1", "lambda1_residual"
  TORCH_ARG(bool, normalized_trace) = true;  ///< "normalized_trace" (needs the trace and the gradient)
  TORCH_ARG(bool, grad_norm) = true;         ///< "grad_norm"
  /// "sam_ratio": CR-SAM's approximation ratio of SAM's one-step ascent (sam_approximation_ratio, per
  /// example) on `ratio_examples` of the sample, radius `ratio_rho`. Not part of "all": it costs
  /// ratio_steps + 2 per-example gradients per example.
  TORCH_ARG(bool, ratio) = false;
  TORCH_ARG(double, ratio_rho) = 0.05;
  TORCH_ARG(int64_t, ratio_examples) = 50;
  TORCH_ARG(int64_t, ratio_steps) = 20;
  /// Examples of the dataset measured: a fixed seeded subset (0 = all).
  TORCH_ARG(int64_t, max_examples) = 2000;
  TORCH_ARG(int64_t, batch_size) = 100;  ///< as ObjectiveOptions: measured (docs/PERFORMANCE.md)
  /// Hutchinson: relative standard error target and probe cap.
  TORCH_ARG(double, trace_rel_tol) = 0.05;
  TORCH_ARG(int64_t, max_probes) = 30;
  /// Lanczos steps for λ₁ (its relative residual tolerance is 1e-2).
  TORCH_ARG(int64_t, lanczos_iterations) = 30;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(double, graph_memory_mb) = 2048;

 public:
  /// Parses a comma-separated subset of "trace,lambda1,normalized_trace,grad_norm,ratio" ("all": the first four); the other
  /// measures are switched off. Throws flatmin::Error on an unknown name.
  static ScalarOptions from_names(const std::string& names);
};

/// Measures the chosen scalars of `model` on `data` (mean cross-entropy, eval mode; the model is left exactly
/// as it was) and returns them by name, always led by "loss" (the measured loss). Deterministic given the seed.
std::vector<std::pair<std::string, double>> measure_scalars(const models::Model& model, const data::Dataset& data,
                                                            const ScalarOptions& options = {});

/// The names measure_scalars returns for `options`, in its order (without measuring anything).
std::vector<std::string> scalar_names(const ScalarOptions& options);

/// A fixed random subset of `size` examples (all when size is 0 or ≥ data.size()), in the data's order.
data::Dataset sample_examples(const data::Dataset& data, int64_t size, uint64_t seed);

}  // namespace flatmin::geometry
