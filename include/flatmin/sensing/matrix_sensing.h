#pragma once
/// Over-parameterised matrix sensing (NSO paper, review version §2.1.1 and §3.1; TMLR §5, Figure 6): the
/// problem where penalising the Hessian trace is nuclear-norm regularisation, trained by flatmin's own
/// methods (GD, WP-GD, NSO through PerturbedOptimizer; full batch: one step is one epoch).
///
///   ground truth   X* = U*U*ᵀ, U* ∈ ℝ^{d×r} with N(0, 1) entries
///   measurements   y_i = ⟨A_i, X*⟩, A_i ∈ ℝ^{d×d} with N(0, 1) entries (not symmetrised), i = 1 … n
///   model          UUᵀ, U ∈ ℝ^{d×d}, U₀ = init_scale · N(0, 1)
///   loss           L(U) = 1/(2n) · Σ_i (⟨A_i, UUᵀ⟩ − y_i)²
///
/// The Hessian trace is exact and cheap: with r_i = ⟨A_i, UUᵀ⟩ − y_i and S_i = A_i + A_iᵀ,
///   ∇L = 1/n Σ r_i S_i U,   ∇²L[V, V] = 1/n Σ (⟨S_i U, V⟩² + r_i ⟨S_i V, V⟩),
///   Tr ∇²L = 1/n Σ (‖S_i U‖_F² + 2d · r_i · tr A_i)
/// (the trace of V ↦ S_i V over the d² coordinates is d·tr S_i). At interpolation (r = 0) and for large n,
/// E‖S U‖_F² = 2(d + 1)‖U‖_F² = 2(d + 1)‖UUᵀ‖_*: the trace is the nuclear norm times 2(d + 1).

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <torch/arg.h>

#include "flatmin/optim/base_optimizer.h"
#include "flatmin/optim/methods.h"

namespace flatmin::sensing {

struct ProblemOptions {
  TORCH_ARG(int64_t, dimension) = 100;    ///< d
  TORCH_ARG(int64_t, rank) = 5;           ///< r
  TORCH_ARG(int64_t, measurements) = 1000;  ///< n, training measurements
  TORCH_ARG(int64_t, test_measurements) = 1000;  ///< held-out measurements, for the test loss only
  TORCH_ARG(uint64_t, seed) = 0;
};

/// A problem instance (float32; the ground truth also in float64 for the error).
struct Problem {
  at::Tensor u_star;  ///< d × r
  at::Tensor x_star;  ///< d × d
  at::Tensor a_train, y_train;  ///< n × d × d, n
  at::Tensor a_test, y_test;
};

/// Draws U*, the A_i and the y_i from `seed` (one generator, in that order). Throws flatmin::Error on a
/// non-positive size or r > d.
Problem make_problem(const ProblemOptions& options);

/// L(U) = 1/(2n)·Σ(⟨A_i, UUᵀ⟩ − y_i)², differentiable in U.
at::Tensor sensing_loss(const at::Tensor& u, const at::Tensor& a, const at::Tensor& y);

/// L(U) for many U on the same measurements, from their symmetric parts packed: UUᵀ is symmetric, so
/// ⟨A_i, UUᵀ⟩ needs only diag A_i and the upper triangle of A_i + A_iᵀ, an n × d(d+1)/2 matrix. A step is
/// a matrix-vector product and its transpose over the measurements, bound by memory (200 MB of float64 at
/// n = 2,500, d = 100): packed, it streams half as much. Keeps the dtype of `a`.
class PackedMeasurements {
 public:
  PackedMeasurements(const at::Tensor& a, const at::Tensor& y);
  /// The same L(U) as sensing_loss, differentiable in U (up to rounding: the sum runs in another order).
  at::Tensor loss(const at::Tensor& u) const;

 private:
  at::Tensor packed_, y_, upper_;  // upper_: the flat indices of UUᵀ's upper triangle, diagonal included
};

/// Tr ∇²L(U) by the closed form above, in float64, for many U on the same measurements: summed over i, the
/// closed form is linear in UUᵀ, Tr = (⟨M, UUᵀ⟩ − c)/n with M = Σ (S_i² + 2d·tr A_i·A_i) and
/// c = 2d·Σ tr A_i·y_i, made once (n·d³ products); each U then costs one d × d product.
class HessianTrace {
 public:
  HessianTrace(const at::Tensor& a, const at::Tensor& y);
  double operator()(const at::Tensor& u) const;

 private:
  at::Tensor m_;
  double c_ = 0;
  int64_t n_ = 1;
};

/// Tr ∇²L(U) by the closed form above, in float64 (one U: HessianTrace for several).
double hessian_trace(const at::Tensor& u, const at::Tensor& a, const at::Tensor& y);

/// ‖UUᵀ‖_* = ‖U‖_F² (UUᵀ is positive semi-definite).
double nuclear_norm(const at::Tensor& u);

/// ‖UUᵀ − X*‖_F / ‖X*‖_F.
double recovery_error(const at::Tensor& u, const at::Tensor& x_star);

struct RunOptions {
  TORCH_ARG(int64_t, steps) = 2000;      ///< full-batch steps (= epochs)
  TORCH_ARG(double, lr) = 1e-4;
  TORCH_ARG(double, init_scale) = 1.0;   ///< U₀ = init_scale · N(0, 1) (the paper: 1)
  TORCH_ARG(int64_t, log_every) = 50;    ///< a row every N steps (and at 0 and the last)
  TORCH_ARG(uint64_t, seed) = 0;         ///< U₀ and the noise
  /// U, the measurements and the loss in float64. The problem and U₀ are drawn in float32 either way, so
  /// both precisions solve the same problem from the same start; float64 keeps the late, tiny training
  /// losses of a long run (and the noise's small net pull on U) above rounding.
  TORCH_ARG(bool, float64) = false;
  /// A loss above this (or not finite) is divergence: the run stops there.
  TORCH_ARG(double, divergence_loss) = 1e12;
};

/// One logged step.
struct Point {
  int64_t step = 0;
  int64_t gradient_evaluations = 0;
  double train_loss = 0, test_loss = 0;
  double recovery_error = 0;
  double hessian_trace = 0;
  double nuclear_norm = 0;
  double trace_over_nuclear = 0;  ///< Tr∇²L / ‖UUᵀ‖_*: 2(d + 1) at interpolation in expectation
};

struct RunResult {
  std::vector<Point> points;
  bool diverged = false;
  int64_t diverged_at = -1;  ///< the step whose loss diverged
  at::Tensor u;              ///< the final U
};

/// Trains U from U₀ by `method` over a plain gradient step (SGD without momentum or weight decay: GD) with
/// the full training set every step. `on_point` (may be empty) sees every logged point as it is made.
/// κ = 2(2d + 1)·lr·σ²·T: the accumulated strength of the nuclear-norm penalty that σ-noise adds over T steps
/// of rate lr. NSO's mean gradient is ∇L + σ²/2·∇Tr∇²L exactly (L is quartic); averaged over Gaussian
/// measurements Tr∇²L = 2(d + 1)‖U‖_F² + 2d·tr(UUᵀ − X*), so the noise adds (2d + 1)σ²·‖UUᵀ‖_* (up to a
/// constant), whose gradient 2(2d + 1)σ²·U shrinks U by 1 − 2(2d + 1)·lr·σ² per step: κ is that
/// shrinkage's total exponent (0 for GD). (2(d + 1) alone, the trace's value at interpolation, misses the
/// second term's gradient, which does not vanish there.)
double penalty_strength(int64_t dimension, double lr, double sigma, int64_t steps);

RunResult run(const Problem& problem, const optim::MethodSpec& method, const RunOptions& options,
              const std::function<void(const Point&)>& on_point = {});

}  // namespace flatmin::sensing
