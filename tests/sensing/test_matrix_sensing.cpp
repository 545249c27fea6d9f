// Matrix sensing: the loss, its gradient and the closed-form Hessian trace against direct computations on
// tiny cases; the trace/nuclear-norm constant at interpolation; GD through PerturbedOptimizer.

#include <cmath>
#include <iostream>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "flatmin/core/error.h"
#include "flatmin/sensing/matrix_sensing.h"

using namespace flatmin::sensing;

namespace {

Problem tiny(int64_t d = 3, int64_t r = 1, int64_t n = 5, uint64_t seed = 0) {
  return make_problem(ProblemOptions().dimension(d).rank(r).measurements(n).test_measurements(4).seed(seed));
}

// 1/(2n)·Σ_i (Σ_jk A_ijk X_jk − y_i)², by loops in double.
double direct_loss(const at::Tensor& u, const at::Tensor& a, const at::Tensor& y) {
  const at::Tensor x = torch::mm(u, u.t()).to(torch::kFloat64);
  const auto ad = a.to(torch::kFloat64);
  double sum = 0;
  for (int64_t i = 0; i < a.size(0); ++i) {
    double m = 0;
    for (int64_t j = 0; j < a.size(1); ++j)
      for (int64_t k = 0; k < a.size(2); ++k) m += ad[i][j][k].item<double>() * x[j][k].item<double>();
    sum += (m - y[i].item<double>()) * (m - y[i].item<double>());
  }
  return sum / (2.0 * static_cast<double>(a.size(0)));
}

}  // namespace

TEST(MatrixSensing, ProblemIsLowRankAndMeasurementsAreInnerProducts) {
  const Problem p = tiny(4, 2, 6);
  EXPECT_EQ(p.x_star.sizes(), (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(torch::linalg_matrix_rank(p.x_star).item<int64_t>(), 2);  // float32 tolerance: X* is float32
  EXPECT_NEAR(p.y_train[3].item<double>(), (p.a_train[3] * p.x_star).sum().item<double>(), 1e-4);
  // Same seed, same problem; another seed, another.
  EXPECT_TRUE(torch::equal(tiny(4, 2, 6).a_train, p.a_train));
  EXPECT_FALSE(torch::equal(tiny(4, 2, 6, 1).a_train, p.a_train));
  EXPECT_THROW(make_problem(ProblemOptions().dimension(3).rank(4)), flatmin::Error);
}

TEST(MatrixSensing, LossMatchesADirectSum) {
  const Problem p = tiny();
  const at::Tensor u = torch::randn({3, 3}, torch::kFloat32);
  EXPECT_NEAR(sensing_loss(u, p.a_train, p.y_train).item<double>(), direct_loss(u, p.a_train, p.y_train), 1e-4);
  // Zero at the ground truth padded with zero columns (an interpolating U).
  at::Tensor u_star = torch::zeros({3, 3});
  u_star.slice(1, 0, 1).copy_(p.u_star);
  EXPECT_NEAR(sensing_loss(u_star, p.a_train, p.y_train).item<double>(), 0.0, 1e-9);
}

// The packed symmetric parts give the loss and gradient of the full, non-symmetric measurements.
TEST(MatrixSensing, PackedMeasurementsGiveTheSameLossAndGradient) {
  const Problem p = tiny(4, 2, 7);
  const at::Tensor a = p.a_train.to(torch::kFloat64), y = p.y_train.to(torch::kFloat64);
  const at::Tensor u = torch::randn({4, 4}, torch::kFloat64).set_requires_grad(true);
  const at::Tensor full = sensing_loss(u, a, y);
  const at::Tensor g_full = torch::autograd::grad({full}, {u})[0];
  const at::Tensor packed = PackedMeasurements(a, y).loss(u);
  const at::Tensor g_packed = torch::autograd::grad({packed}, {u})[0];
  EXPECT_NEAR(packed.item<double>(), direct_loss(u.detach(), a, y), 1e-9 * full.item<double>());
  EXPECT_TRUE(torch::allclose(g_packed, g_full, 1e-12, 1e-10)) << g_packed << g_full;
}

TEST(MatrixSensing, GradientIsTheClosedForm) {
  const Problem p = tiny();
  const at::Tensor u = torch::randn({3, 3}, torch::kFloat64).set_requires_grad(true);
  const at::Tensor a = p.a_train.to(torch::kFloat64), y = p.y_train.to(torch::kFloat64);
  sensing_loss(u, a, y).backward();
  // ∇L = 1/n Σ r_i (A_i + A_iᵀ) U
  at::Tensor expected = torch::zeros({3, 3}, torch::kFloat64);
  for (int64_t i = 0; i < 5; ++i) {
    const double r = (a[i] * torch::mm(u, u.t())).sum().item<double>() - y[i].item<double>();
    expected += r * torch::mm(a[i] + a[i].t(), u.detach());
  }
  expected /= 5.0;
  EXPECT_TRUE(torch::allclose(u.grad(), expected, 1e-10, 1e-10)) << u.grad() << expected;
}

TEST(MatrixSensing, HessianTraceIsTheTraceOfTheAutogradHessian) {
  // Away from a solution, so the residual term 2d·r_i·tr A_i counts too.
  for (uint64_t seed : {0, 1, 2}) {
    const Problem p = tiny(3, 1, 5, seed);
    torch::manual_seed(seed);
    const at::Tensor u0 = torch::randn({3, 3}, torch::kFloat64);
    const at::Tensor a = p.a_train.to(torch::kFloat64), y = p.y_train.to(torch::kFloat64);
    const at::Tensor u = u0.clone().set_requires_grad(true);
    const at::Tensor g = torch::autograd::grad({sensing_loss(u, a, y)}, {u}, {}, true, true)[0].reshape({-1});
    double trace = 0;
    for (int64_t i = 0; i < g.numel(); ++i)
      trace += torch::autograd::grad({g[i]}, {u}, {}, true)[0].reshape({-1})[i].item<double>();
    EXPECT_NEAR(hessian_trace(u0, p.a_train, p.y_train), trace, 1e-4 * std::abs(trace)) << "seed " << seed;
  }
}

TEST(MatrixSensing, TraceIsTwoDPlusOneTimesTheNuclearNormAtInterpolation) {
  // r_i = 0 at U = [U*, 0], so Tr = 1/n Σ ‖(A_i + A_iᵀ)U‖² → 2(d+1)‖U‖_F² = 2(d+1)‖UUᵀ‖_* as n grows
  // (relative spread ~ 1/√(n·d·r)).
  const int64_t d = 10;
  const Problem p = make_problem(ProblemOptions().dimension(d).rank(2).measurements(4000).test_measurements(1));
  at::Tensor u = torch::zeros({d, d});
  u.slice(1, 0, 2).copy_(p.u_star);
  const double ratio = hessian_trace(u, p.a_train, p.y_train) / flatmin::sensing::nuclear_norm(u);
  EXPECT_NEAR(ratio, 2.0 * (d + 1), 0.03 * 2.0 * (d + 1));
  EXPECT_NEAR(recovery_error(u, p.x_star), 0.0, 1e-6);
  EXPECT_NEAR(flatmin::sensing::nuclear_norm(u), torch::trace(p.x_star).item<double>(), 1e-3 * flatmin::sensing::nuclear_norm(u));
}

TEST(MatrixSensing, GdStepIsTheGradientStepAndNsoWithoutNoiseIsGd) {
  const Problem p = tiny(4, 1, 20);
  const RunOptions options = RunOptions().steps(1).lr(1e-3).init_scale(0.5).log_every(1).seed(3);
  const RunResult gd = run(p, flatmin::optim::MethodSpec().name("sgd"), options);
  ASSERT_EQ(gd.points.size(), 2u);
  // U₁ = U₀ − lr·∇L(U₀), with U₀ drawn as the run draws it.
  const RunResult zero_steps = run(p, flatmin::optim::MethodSpec().name("sgd"), RunOptions(options).steps(0));
  const at::Tensor u0 = zero_steps.u.clone().set_requires_grad(true);
  sensing_loss(u0, p.a_train, p.y_train).backward();
  EXPECT_TRUE(torch::allclose(gd.u, u0.detach() - 1e-3 * u0.grad(), 1e-5, 1e-6));
  const RunResult nso = run(p, flatmin::optim::MethodSpec().name("nso").sigma(0), options);
  EXPECT_TRUE(torch::allclose(nso.u, gd.u, 1e-6, 1e-7));
  EXPECT_EQ(nso.points.back().gradient_evaluations, 2);
  EXPECT_THROW(run(p, flatmin::optim::MethodSpec().name("sam"), options), flatmin::Error);
}

TEST(MatrixSensing, GdFitsTheTrainingSetAndTooLargeAStepDiverges) {
  const Problem p = tiny(6, 1, 60);
  const RunResult fit = run(p, flatmin::optim::MethodSpec().name("sgd"),
                            RunOptions().steps(3000).lr(2e-3).init_scale(0.1).log_every(1000));
  ASSERT_FALSE(fit.diverged);
  EXPECT_LT(fit.points.back().train_loss, 1e-3 * fit.points.front().train_loss);
  const RunResult blown = run(p, flatmin::optim::MethodSpec().name("sgd"), RunOptions().steps(200).lr(10).log_every(10));
  EXPECT_TRUE(blown.diverged);
  EXPECT_GT(blown.diverged_at, 0);
}

// κ: NSO's mean step is GD's step plus the shrinkage lr·σ²/2·∇Tr∇²L. Averaged over Gaussian measurements
// Tr∇²L = 2(d+1)‖U‖² + 2d·tr(UUᵀ − X*), so the pull is 2(2d+1)σ²·U per unit rate, and κ = 2(2d+1)·lr·σ²·T.
// Checked on one float64 step with many ± draws and many measurements (d = 4: the pull is 18σ²·U).
TEST(MatrixSensing, PenaltyStrengthIsTheMeanShrinkageOfTheNoise) {
  EXPECT_DOUBLE_EQ(penalty_strength(100, 1e-3, 0.08, 5000), 2.0 * 201 * 1e-3 * 0.0064 * 5000);
  EXPECT_EQ(penalty_strength(100, 1e-3, 0.0, 5000), 0.0);
  const int64_t d = 4;
  const Problem p = make_problem(ProblemOptions().dimension(d).rank(1).measurements(40000).test_measurements(4).seed(2));
  const double lr = 1e-3, sigma = 0.05;
  const RunOptions options = RunOptions().steps(1).lr(lr).init_scale(0.5).log_every(1).seed(4).float64(true);
  const RunResult gd = run(p, flatmin::optim::MethodSpec().name("sgd"), options);
  const RunResult nso = run(p, flatmin::optim::MethodSpec().name("nso").sigma(sigma).k(512), options);
  const RunResult start = run(p, flatmin::optim::MethodSpec().name("sgd"), RunOptions(options).steps(0));
  EXPECT_EQ(nso.u.scalar_type(), torch::kFloat64);
  const at::Tensor pull = (gd.u - nso.u) / lr;  // σ²/2·∇Tr∇²L(U₀), sampled
  const at::Tensor predicted = 2.0 * (2 * d + 1) * sigma * sigma * start.u;
  const double relative = ((pull - predicted).norm() / predicted.norm()).item<double>();
  std::cout << "noise pull vs 2(2d+1)σ²U: relative difference " << relative << " (2(d+1)σ²U would be "
            << ((pull - predicted * (d + 1.0) / (2 * d + 1)).norm() / predicted.norm()).item<double>() << ")\n";
  EXPECT_LT(relative, 0.15);
}
