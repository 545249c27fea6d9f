// The perturbation step against formulas computed by hand on analytic functions.
#include <cmath>
#include <functional>

#include <gtest/gtest.h>
#include <torch/optim/sgd.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include "flatmin/core/error.h"
#include "flatmin/optim/base_optimizer.h"
#include "flatmin/optim/methods.h"
#include "flatmin/optim/perturbed_optimizer.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace perturbed_optimizer_test {

using namespace flatmin::optim;
using flatmin::noise::NoiseLaw;

namespace {

constexpr int64_t kDim = 6;

// f(W) = ½WᵀAW + bᵀW with A symmetric positive definite; ∇f = AW + b, ∇²f = A.
struct Quadratic {
  at::Tensor A, b;
  explicit Quadratic(at::ScalarType dtype = at::kDouble) {
    at::manual_seed(11);
    at::Tensor M = at::randn({kDim, kDim}, dtype);
    A = M.matmul(M.t()) + at::eye(kDim, dtype);
    b = at::randn({kDim}, dtype);
  }
  at::Tensor loss(const at::Tensor& w) const { return 0.5 * w.dot(A.mv(w)) + b.dot(w); }
  at::Tensor grad(const at::Tensor& w) const { return A.mv(w) + b; }
};

// f(W) = Σ w⁴/4 + Σ sin(w): not quadratic, so the two-point estimate is not exact; ∇f = w³ + cos(w).
at::Tensor quartic_loss(const at::Tensor& w) { return (w.pow(4) / 4).sum() + w.sin().sum(); }
at::Tensor quartic_grad(const at::Tensor& w) { return w.pow(3) + w.cos(); }

struct OneParamRun {
  at::Tensor w;
  std::shared_ptr<torch::optim::SGD> base;
  std::shared_ptr<PerturbedOptimizer> opt;
  std::vector<at::Tensor> points;  // parameter values seen by each closure call

  OneParamRun(at::Tensor w0, std::shared_ptr<PerturbationMethod> method, double lr, PerturbedOptimizerOptions options = {})
      : w(w0.clone().set_requires_grad(true)) {
    base = std::make_shared<torch::optim::SGD>(std::vector<at::Tensor>{w}, torch::optim::SGDOptions(lr));
    opt = std::make_shared<PerturbedOptimizer>(base, std::move(method), options);
  }
  at::Tensor step(const std::function<at::Tensor(const at::Tensor&)>& f, bool closure_zeroes_grad = true) {
    return opt->step([&] {
      if (closure_zeroes_grad) opt->zero_grad();
      points.push_back(w.detach().clone());
      at::Tensor loss = f(w);
      loss.backward();
      return loss;
    });
  }
};

std::shared_ptr<Nso> nso(double sigma, int64_t k, bool two_point = true, NoiseLaw law = NoiseLaw::kGaussian) {
  return std::make_shared<Nso>(NsoOptions().noise(NoiseOptions(sigma).law(law)).k(k).two_point(two_point));
}

TEST(Nso, TwoPointGradientOfAQuadraticIsTheExactGradientForAnyNoise) {
  const Quadratic q;
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  for (NoiseLaw law : {NoiseLaw::kGaussian, NoiseLaw::kLaplace, NoiseLaw::kUniform, NoiseLaw::kRademacher}) {
    for (int64_t k : {1, 2, 3}) {
      // lr = 1 and no momentum: the update is exactly −G.
      OneParamRun run(w0, nso(/*sigma=*/0.7, k, true, law), 1.0, PerturbedOptimizerOptions().seed(k));
      run.step([&](const at::Tensor& w) { return q.loss(w); });
      const at::Tensor G = w0 - run.w.detach();
      EXPECT_TRUE(at::allclose(G, q.grad(w0), 1e-10, 1e-10)) << "law " << flatmin::noise::to_string(law) << " k " << k;
      // The points really were perturbed (σ = 0.7 is large), and in antithetic pairs.
      ASSERT_EQ(run.points.size(), static_cast<size_t>(2 * k));
      for (int64_t j = 0; j < k; ++j) {
        EXPECT_GT((run.points[2 * j] - w0).abs().max().item<double>(), 1e-3);
        EXPECT_TRUE(at::allclose(run.points[2 * j] + run.points[2 * j + 1], 2 * w0, 1e-12, 1e-12));
      }
    }
  }
}

TEST(Nso, TwoPointGradientIsExactInFloat32ToFloatPrecision) {
  const Quadratic q(at::kFloat);
  const at::Tensor w0 = at::randn({kDim});
  OneParamRun run(w0, nso(0.05, 2), 1.0);
  run.step([&](const at::Tensor& w) { return q.loss(w); });
  const at::Tensor expected = q.grad(w0);
  const double scale = expected.abs().max().item<double>();
  EXPECT_LT(((w0 - run.w.detach()) - expected).abs().max().item<double>(), 1e-5 * scale);
}

TEST(WpSgd, GradientOfAQuadraticIsGradientPlusAU) {
  const Quadratic q;
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  OneParamRun run(w0, std::make_shared<WpSgd>(NoiseOptions(0.3)), 1.0);
  run.step([&](const at::Tensor& w) { return q.loss(w); });
  ASSERT_EQ(run.points.size(), 1u);
  const at::Tensor U = run.points[0] - w0;
  EXPECT_GT(U.abs().max().item<double>(), 1e-3);
  EXPECT_TRUE(at::allclose(w0 - run.w.detach(), q.grad(w0) + q.A.mv(U), 1e-10, 1e-10));
}

TEST(Nso, UpdateWithSgdBaseEqualsTheHandComputedAverage) {
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  const double lr = 0.1;
  for (bool two_point : {true, false}) {
    for (int64_t k : {1, 3}) {
      OneParamRun run(w0, nso(0.2, k, two_point), lr, PerturbedOptimizerOptions().seed(3));
      run.step(quartic_loss);
      ASSERT_EQ(run.points.size(), static_cast<size_t>(2 * k));
      at::Tensor sum = at::zeros_like(w0);
      for (const auto& p : run.points) sum += quartic_grad(p);
      const at::Tensor expected = w0 - lr / (2.0 * k) * sum;
      EXPECT_TRUE(at::allclose(run.w.detach(), expected, 1e-12, 1e-12)) << "k " << k << " two_point " << two_point;
      // Two-point pairs are antithetic; the ablation's draws are independent.
      const bool antithetic = at::allclose(run.points[0] + run.points[1], 2 * w0, 1e-12, 1e-12);
      EXPECT_EQ(antithetic, two_point);
    }
  }
}

// A closure that throws (a Python exception through the binding, say) leaves W exactly as before the step,
// with no gradient and the step not counted; the next step is the one an uninterrupted run takes.
TEST(Nso, AClosureThatThrowsLeavesTheWeightsAsTheyWere) {
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  OneParamRun run(w0, nso(0.3, 2), 0.1, PerturbedOptimizerOptions().seed(5));
  int calls = 0;
  EXPECT_THROW(run.step([&](const at::Tensor& w) {
    if (++calls == 3) throw std::runtime_error("the third pass fails");
    return quartic_loss(w);
  }),
               std::runtime_error);
  EXPECT_TRUE(at::equal(run.w.detach(), w0));
  EXPECT_FALSE(run.w.grad().defined());
  EXPECT_EQ(run.opt->steps_taken(), 0);
  OneParamRun clean(w0, nso(0.3, 2), 0.1, PerturbedOptimizerOptions().seed(5));
  run.step(quartic_loss);
  clean.step(quartic_loss);
  EXPECT_TRUE(at::equal(run.w.detach(), clean.w.detach()));
}

// Per-tensor factors on σ (per-group options from Python): a factor 2 is σ doubled for that tensor; all-one
// factors are no factors; a method with one size refuses them.
TEST(Nso, TensorScalesMultiplyTheNoiseOfTheirTensor) {
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  OneParamRun doubled(w0, nso(0.2, 1), 0.1, PerturbedOptimizerOptions().seed(4));
  doubled.opt->set_tensor_scales({2.0});
  OneParamRun wide(w0, nso(0.4, 1), 0.1, PerturbedOptimizerOptions().seed(4));
  doubled.step(quartic_loss);
  wide.step(quartic_loss);
  EXPECT_TRUE(at::allclose(doubled.points[0], wide.points[0], 1e-12, 1e-14));
  EXPECT_THROW(doubled.opt->set_tensor_scales({1.0, 2.0}), flatmin::Error);
  EXPECT_THROW(doubled.opt->set_tensor_scales({-1.0}), flatmin::Error);
  OneParamRun plain(w0, std::make_shared<NoPerturbation>(), 0.1);
  plain.opt->set_tensor_scales({1.0});  // all one: nothing to refuse
  EXPECT_THROW(plain.opt->set_tensor_scales({2.0}), flatmin::Error);
}

TEST(Methods, StepWithZeroLearningRateLeavesWeightsBitwiseUnchanged) {
  at::manual_seed(0);
  const at::Tensor w0 = at::randn({100});
  std::vector<std::shared_ptr<PerturbationMethod>> methods{
      std::make_shared<NoPerturbation>(), std::make_shared<WpSgd>(NoiseOptions(0.5)), nso(0.5, 1), nso(0.5, 3),
      nso(0.5, 2, false), nso(0.5, 2, true, NoiseLaw::kLaplace)};
  for (const auto& method : methods) {
    OneParamRun run(w0, method, 0.0);
    for (int s = 0; s < 3; ++s) run.step(quartic_loss);
    EXPECT_TRUE(at::equal(run.w.detach(), w0)) << method->describe();
  }
}

TEST(Nso, ZeroSigmaIsBitwiseSgd) {
  const at::Tensor w0 = at::randn({kDim});
  OneParamRun sgd(w0, std::make_shared<NoPerturbation>(), 0.05);
  OneParamRun zero_noise(w0, nso(0.0, 2), 0.05);
  for (int s = 0; s < 5; ++s) {
    sgd.step(quartic_loss);
    zero_noise.step(quartic_loss);
  }
  EXPECT_TRUE(at::equal(sgd.w.detach(), zero_noise.w.detach()));
}

TEST(PerturbedOptimizer, ClosuresThatZeroGradsOrNotAndInPlaceAccumulationAgree) {
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  OneParamRun zeroing(w0, nso(0.2, 3), 0.1, PerturbedOptimizerOptions().seed(9));
  OneParamRun not_zeroing(w0, nso(0.2, 3), 0.1, PerturbedOptimizerOptions().seed(9));
  OneParamRun in_place(w0, nso(0.2, 3), 0.1, PerturbedOptimizerOptions().seed(9).accumulate_in_grad(true));
  for (int s = 0; s < 3; ++s) {
    zeroing.step(quartic_loss, true);
    not_zeroing.step(quartic_loss, false);
    in_place.step(quartic_loss, false);
  }
  EXPECT_TRUE(at::equal(zeroing.w.detach(), not_zeroing.w.detach()));
  EXPECT_TRUE(at::allclose(zeroing.w.detach(), in_place.w.detach(), 1e-14, 1e-14));
}

TEST(PerturbedOptimizer, SameSeedSameTrajectoryDifferentSeedDifferent) {
  const at::Tensor w0 = at::randn({kDim});
  OneParamRun a(w0, nso(0.1, 1), 0.1, PerturbedOptimizerOptions().seed(1));
  OneParamRun b(w0, nso(0.1, 1), 0.1, PerturbedOptimizerOptions().seed(1));
  OneParamRun c(w0, nso(0.1, 1), 0.1, PerturbedOptimizerOptions().seed(2));
  for (int s = 0; s < 4; ++s) {
    a.step(quartic_loss);
    b.step(quartic_loss);
    c.step(quartic_loss);
  }
  EXPECT_TRUE(at::equal(a.w.detach(), b.w.detach()));
  EXPECT_FALSE(at::equal(a.w.detach(), c.w.detach()));
}

TEST(PerturbedOptimizer, FrozenParametersAreNeverPerturbedAndUnusedOnesAreSkipped) {
  at::Tensor used = at::randn({4}).set_requires_grad(true);
  at::Tensor frozen = at::randn({4});  // requires_grad false
  at::Tensor unused = at::randn({4}).set_requires_grad(true);
  const at::Tensor frozen0 = frozen.clone(), unused0 = unused.clone();
  auto base = std::make_shared<torch::optim::SGD>(std::vector<at::Tensor>{used, frozen, unused},
                                                  torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(0.1));
  PerturbedOptimizer opt(base, nso(0.5, 2));
  std::vector<at::Tensor> frozen_seen;
  opt.step([&] {
    frozen_seen.push_back(frozen.clone());
    at::Tensor loss = quartic_loss(used) + (frozen * used).sum();
    loss.backward();
    return loss;
  });
  for (const auto& f : frozen_seen) EXPECT_TRUE(at::equal(f, frozen0));
  EXPECT_TRUE(at::equal(frozen, frozen0));
  EXPECT_FALSE(unused.grad().defined());
  EXPECT_TRUE(at::equal(unused, unused0));  // restored and skipped by SGD (weight decay included)
  EXPECT_EQ(opt.gradient_evaluations(), 4);
}

TEST(PerturbedOptimizer, LearningRateSetOnTheWrapperReachesTheBase) {
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  OneParamRun run(w0, std::make_shared<NoPerturbation>(), 1.0);
  for (auto& group : run.opt->param_groups()) group.options().set_lr(0.25);
  run.step(quartic_loss);
  EXPECT_TRUE(at::allclose(run.w.detach(), w0 - 0.25 * quartic_grad(w0), 1e-12, 1e-12));
  EXPECT_DOUBLE_EQ(run.base->param_groups()[0].options().get_lr(), 0.25);
}

TEST(PerturbedOptimizer, SaveLoadResumesTheSameTrajectory) {
  const at::Tensor w0 = at::randn({kDim});
  auto make = [&](const at::Tensor& start) {
    auto w = start.clone().set_requires_grad(true);
    auto base = make_base_optimizer({w}, BaseOptimizerOptions().lr(0.05).momentum(0.9));
    return std::make_pair(w, std::make_shared<PerturbedOptimizer>(base, nso(0.1, 1), PerturbedOptimizerOptions().seed(4)));
  };
  auto step = [](at::Tensor& w, PerturbedOptimizer& opt) {
    opt.step([&] {
      opt.zero_grad();
      auto loss = quartic_loss(w);
      loss.backward();
      return loss;
    });
  };
  auto [w_a, opt_a] = make(w0);
  for (int s = 0; s < 3; ++s) step(w_a, *opt_a);
  std::stringstream buffer;
  torch::save(*opt_a, buffer);
  auto [w_b, opt_b] = make(w_a.detach());
  torch::load(*opt_b, buffer);
  EXPECT_EQ(opt_b->steps_taken(), 3);
  for (int s = 0; s < 3; ++s) {
    step(w_a, *opt_a);
    step(w_b, *opt_b);
  }
  EXPECT_TRUE(at::equal(w_a, w_b));  // momentum and the noise stream both resumed
}

TEST(Methods, FactoryBuildsByNameAndRejectsBadOptions) {
  EXPECT_EQ(make_method(MethodSpec().name("nso").k(2))->evaluations(), 4);
  EXPECT_EQ(make_method(MethodSpec().name("wp-sgd"))->evaluations(), 1);
  EXPECT_EQ(make_method(MethodSpec().name("sgd"))->evaluations(), 1);
  EXPECT_THROW(make_method(MethodSpec().name("adam")), flatmin::Error);
  EXPECT_THROW(make_method(MethodSpec().name("nso").k(0)), flatmin::Error);
  EXPECT_THROW(make_method(MethodSpec().name("nso").sigma(-0.01)), flatmin::Error);
  EXPECT_THROW(make_base_optimizer({}, BaseOptimizerOptions().momentum(1.0)), flatmin::Error);
  EXPECT_THROW(make_base_optimizer({}, BaseOptimizerOptions().name("lbfgs")), flatmin::Error);
}

TEST(Methods, SigmaScheduleReachesTheMethodThroughSetEpoch) {
  NsoOptions options(0.02);
  options.noise().sigma().kind(flatmin::noise::ScheduleKind::kLinear);
  Nso method(options);
  method.set_epoch(0, 5);
  EXPECT_DOUBLE_EQ(method.sigma(), 0.0);
  method.set_epoch(2, 5);
  EXPECT_DOUBLE_EQ(method.sigma(), 0.01);
  method.set_epoch(4, 5);
  EXPECT_DOUBLE_EQ(method.sigma(), 0.02);
}

}  // namespace

namespace {

// Unnormalised SAM written as a test method: point 1 = W + ρ·g(W), where g(W) is what the optimizer
// shows the method as the combination after pass 0; only the gradient at point 1 is kept.
class AscentAlongGradient final : public PerturbationMethod {
 public:
  explicit AscentAlongGradient(double rho) : rho_(rho) {}
  std::string name() const override { return "test-usam"; }
  int64_t evaluations() const override { return 2; }
  void move_to(int64_t i, StepContext& ctx) override {
    if (i == 0) return;  // W itself
    for (size_t j = 0; j < ctx.params.size(); ++j) ctx.params[j].add_(ctx.combined[j], rho_);
  }
  Blend blend(int64_t i) const override { return {0.0, 1.0}; }  // replace: keep g(W + δ) only

 private:
  double rho_;
};

TEST(PerturbedOptimizer, MethodsSeeTheGradientOfEarlierPasses) {
  const Quadratic q;
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  for (bool in_grad : {false, true}) {
    OneParamRun run(w0, std::make_shared<AscentAlongGradient>(0.1), 1.0,
                    PerturbedOptimizerOptions().accumulate_in_grad(in_grad));
    run.step([&](const at::Tensor& w) { return q.loss(w); }, /*closure_zeroes_grad=*/!in_grad);
    // USAM on a quadratic: ∇f(w + ρ∇f(w)) = (I + ρA)∇f(w).
    const at::Tensor g = q.grad(w0);
    const at::Tensor expected = g + 0.1 * q.A.mv(g);
    EXPECT_TRUE(at::allclose(w0 - run.w.detach(), expected, 1e-10, 1e-10)) << "accumulate_in_grad " << in_grad;
    EXPECT_TRUE(at::allclose(run.points[1], w0 + 0.1 * g, 1e-12, 1e-12));
  }
}

}  // namespace

}  // namespace perturbed_optimizer_test
