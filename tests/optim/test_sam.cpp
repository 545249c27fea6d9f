// The SAM family (SAM, USAM, ASAM, RSAM, bSAM, CR-SAM) and L2-SP against updates computed by hand from
// their formulas on analytic functions, their limits (ρ = 0, huge η, α = β = 0), BatchNorm policies,
// zero learning rate, save/load and the factory.
#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/optim/sgd.h>
#include <torch/serialize.h>
#include <torch/torch.h>

#include "flatmin/core/error.h"
#include "flatmin/noise/noise.h"
#include "flatmin/optim/bsam.h"
#include "flatmin/optim/methods.h"
#include "flatmin/optim/perturbed_optimizer.h"
#include "flatmin/optim/regularizers.h"
#include "flatmin/optim/sam.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace sam_test {

using namespace flatmin::optim;
using TensorList = std::vector<at::Tensor>;

namespace {

constexpr int64_t kDim = 6;
constexpr double kTol = 1e-11;

// f(W) = ½WᵀAW + bᵀW, A symmetric positive definite: ∇f = AW + b, ∇²f = A.
struct Quadratic {
  at::Tensor A, b;
  Quadratic() {
    at::manual_seed(11);
    at::Tensor M = at::randn({kDim, kDim}, at::kDouble);
    A = M.matmul(M.t()) + at::eye(kDim, at::kDouble);
    b = at::randn({kDim}, at::kDouble);
  }
  at::Tensor loss(const at::Tensor& w) const { return 0.5 * w.dot(A.mv(w)) + b.dot(w); }
  at::Tensor grad(const at::Tensor& w) const { return A.mv(w) + b; }
};

// f(W) = Σ w⁴/4 + Σ sin w: ∇f = w³ + cos w (not quadratic: every evaluation point matters).
at::Tensor quartic_loss(const at::Tensor& w) { return (w.pow(4) / 4).sum() + w.sin().sum(); }
at::Tensor quartic_grad(const at::Tensor& w) { return w.pow(3) + w.cos(); }

double norm(const TensorList& ts) {
  double s = 0;
  for (const auto& t : ts) s += t.square().sum().item<double>();
  return std::sqrt(s);
}

// Parameters (double), a PerturbedOptimizer over them, and the parameter values seen by each closure call.
struct MethodRun {
  TensorList w;
  std::shared_ptr<PerturbedOptimizer> opt;
  std::vector<TensorList> points;

  // `base` = nullptr: plain SGD with learning rate `lr` (no momentum).
  MethodRun(const TensorList& w0, std::shared_ptr<PerturbationMethod> method, double lr, PerturbedOptimizerOptions options = {}) {
    for (const auto& t : w0) w.push_back(t.clone().set_requires_grad(true));
    auto base = std::make_shared<torch::optim::SGD>(w, torch::optim::SGDOptions(lr));
    opt = std::make_shared<PerturbedOptimizer>(base, std::move(method), options);
  }
  // From the factory (bsam gets its own update rule).
  MethodRun(const TensorList& w0, const MethodSpec& spec, double lr, PerturbedOptimizerOptions options = {}) {
    for (const auto& t : w0) w.push_back(t.clone().set_requires_grad(true));
    opt = make_perturbed_optimizer(w, spec, BaseOptimizerOptions().lr(lr).momentum(0.0), options);
  }
  void step(const std::function<at::Tensor(const TensorList&)>& f) {
    opt->step([&] {
      opt->zero_grad();
      TensorList seen;
      for (const auto& t : w) seen.push_back(t.detach().clone());
      points.push_back(seen);
      at::Tensor loss = f(w);
      loss.backward();
      return loss;
    });
  }
  at::Tensor w0() const { return w[0].detach(); }
};

at::Tensor quad_of(const Quadratic& q, const TensorList& w) { return q.loss(w[0]); }

TEST(Sam, OneStepEqualsTheHandComputedUpdate) {
  const Quadratic q;
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  const double rho = 0.3, lr = 0.1;
  MethodRun run({w0}, std::make_shared<Sam>(SamOptions(rho)), lr);
  run.step([&](const TensorList& w) { return quad_of(q, w); });
  const at::Tensor g = q.grad(w0);
  const at::Tensor delta = rho * g / (g.norm().item<double>() + 1e-12);
  ASSERT_EQ(run.points.size(), 2u);
  EXPECT_TRUE(at::equal(run.points[0][0], w0));  // the first pass is at W itself
  EXPECT_TRUE(at::allclose(run.points[1][0], w0 + delta, kTol, kTol));
  EXPECT_TRUE(at::allclose(run.w0(), w0 - lr * q.grad(w0 + delta), kTol, kTol));
  EXPECT_EQ(run.opt->gradient_evaluations(), 2);
}

TEST(Sam, NormIsGlobalOverAllParameters) {
  // Two tensors: δ_j = ρ·g_j/‖(g_1, g_2)‖, so ‖δ‖ = ρ over both, not per tensor.
  const TensorList w0{at::randn({3, 2}, at::kDouble), at::randn({5}, at::kDouble)};
  const double rho = 0.2;
  MethodRun run(w0, std::make_shared<Sam>(SamOptions(rho)), 0.0);
  run.step([](const TensorList& w) { return quartic_loss(w[0]) + quartic_loss(w[1]); });
  const TensorList g{quartic_grad(w0[0]), quartic_grad(w0[1])};
  const double gn = norm(g);
  const TensorList delta{run.points[1][0] - w0[0], run.points[1][1] - w0[1]};
  EXPECT_NEAR(norm(delta), rho, 1e-12);
  for (int j = 0; j < 2; ++j) EXPECT_TRUE(at::allclose(delta[j], rho * g[j] / gn, kTol, kTol));
}

TEST(Sam, ZeroRadiusIsBitwiseSgd) {
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  // SGD with momentum as the base: the whole trajectory, not only one step.
  auto make = [&](at::Tensor& w, std::shared_ptr<PerturbationMethod> method) {
    w = w0.clone().set_requires_grad(true);
    auto base = std::make_shared<torch::optim::SGD>(TensorList{w}, torch::optim::SGDOptions(0.05).momentum(0.9));
    return std::make_shared<PerturbedOptimizer>(base, std::move(method));
  };
  at::Tensor w_sgd, w_sam;
  auto sgd = make(w_sgd, std::make_shared<NoPerturbation>());
  auto sam = make(w_sam, std::make_shared<Sam>(SamOptions(0.0)));
  auto step = [](PerturbedOptimizer& opt, const at::Tensor& w) {
    opt.step([&] {
      opt.zero_grad();
      auto l = quartic_loss(w);
      l.backward();
      return l;
    });
  };
  for (int s = 0; s < 5; ++s) {
    step(*sgd, w_sgd);
    step(*sam, w_sam);
  }
  EXPECT_TRUE(at::equal(w_sgd, w_sam));
}

TEST(Usam, GradientOfAQuadraticIsIPlusRhoATimesTheGradient) {
  const Quadratic q;
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  const double rho = 0.07;
  MethodRun run({w0}, std::make_shared<Usam>(SamOptions(rho)), 1.0);
  run.step([&](const TensorList& w) { return quad_of(q, w); });
  const at::Tensor g = q.grad(w0);
  EXPECT_TRUE(at::allclose(run.points[1][0], w0 + rho * g, kTol, kTol));
  EXPECT_TRUE(at::allclose(w0 - run.w0(), g + rho * q.A.mv(g), kTol, kTol));  // (I + ρA)·g
}

TEST(Asam, OneStepEqualsTheHandComputedUpdate) {
  const TensorList w0{at::randn({kDim}, at::kDouble), at::randn({2, 3}, at::kDouble)};
  const double rho = 0.8, eta = 0.01, lr = 0.1;
  MethodRun run(w0, std::make_shared<Asam>(AsamOptions(rho).eta(eta)), lr);
  run.step([](const TensorList& w) { return quartic_loss(w[0]) + quartic_loss(w[1]); });
  TensorList tg, t2g;
  for (int j = 0; j < 2; ++j) {
    const at::Tensor T = w0[j].abs() + eta, g = quartic_grad(w0[j]);
    tg.push_back(T * g);
    t2g.push_back(T * T * g);
  }
  const double denom = norm(tg) + 1e-12;
  for (int j = 0; j < 2; ++j) {
    const at::Tensor point = w0[j] + rho * t2g[j] / denom;
    EXPECT_TRUE(at::allclose(run.points[1][j], point, kTol, kTol)) << j;
    EXPECT_TRUE(at::allclose(run.w[j].detach(), w0[j] - lr * quartic_grad(point), kTol, kTol)) << j;
  }
}

TEST(Asam, HugeEtaIsSamWithTheRadiusScaledByEta) {
  // T = |W| + η ≈ η·I: δ = ρ·η²g/(η‖g‖) = (ρη)·g/‖g‖.
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  const double eta = 1e7, rho_sam = 0.3;
  MethodRun asam({w0}, std::make_shared<Asam>(AsamOptions(rho_sam / eta).eta(eta)), 0.1);
  MethodRun sam({w0}, std::make_shared<Sam>(SamOptions(rho_sam)), 0.1);
  for (int s = 0; s < 3; ++s) {
    asam.step([](const TensorList& w) { return quartic_loss(w[0]); });
    sam.step([](const TensorList& w) { return quartic_loss(w[0]); });
  }
  EXPECT_TRUE(at::allclose(asam.points[1][0], sam.points[1][0], 1e-6, 1e-8));
  EXPECT_TRUE(at::allclose(asam.w0(), sam.w0(), 1e-6, 1e-8));
  // While with η = 0.01 the two differ (T really rescales the coordinates).
  MethodRun asam_small({w0}, std::make_shared<Asam>(AsamOptions(rho_sam / 0.01).eta(0.01)), 0.1);
  asam_small.step([](const TensorList& w) { return quartic_loss(w[0]); });
  EXPECT_FALSE(at::allclose(asam_small.points[1][0], sam.points[1][0], 1e-3, 1e-3));
}

// f(W, b) = quartic(W) + quartic(b) + Σ_j (Σ_i W_ij)·b_j: W [3, 4], b [4].
at::Tensor coupled_loss(const TensorList& w) {
  return quartic_loss(w[0]) + quartic_loss(w[1]) + (w[0].sum(0) * w[1]).sum();
}
TensorList coupled_grad(const TensorList& w) {
  return {quartic_grad(w[0]) + w[1].unsqueeze(0).expand_as(w[0]), quartic_grad(w[1]) + w[0].sum(0)};
}

at::Tensor standard_gaussian_like(const at::Tensor& t, uint64_t key) {
  at::Tensor z = at::empty_like(t);
  flatmin::noise::fill_noise_(z, flatmin::noise::NoiseLaw::kGaussian, 1.0, key);
  return z;
}

TEST(Rsam, OneStepEqualsTheHandComputedUpdate) {
  at::manual_seed(5);
  const TensorList w0{at::randn({3, 4}, at::kDouble), at::randn({4}, at::kDouble)};
  const double rho = 0.05, sigma = 0.3, lambda = 2.0, lr = 0.1;
  const uint64_t seed = 17;
  MethodRun run(w0, std::make_shared<Rsam>(RsamOptions(rho).sigma(sigma).lambda(lambda)), lr,
          PerturbedOptimizerOptions().seed(seed));
  run.step(coupled_loss);
  ASSERT_EQ(run.points.size(), 2u);
  // δ: per output row of the matrix, σ·‖W_j‖·z_j; for the vector σ·‖b‖·z.
  const at::Tensor z0 = standard_gaussian_like(w0[0], flatmin::noise::noise_key(seed, 0, 0, 0));
  const at::Tensor z1 = standard_gaussian_like(w0[1], flatmin::noise::noise_key(seed, 0, 0, 1));
  const TensorList delta{sigma * w0[0].norm(2, {1}, true) * z0, sigma * w0[1].norm() * z1};
  EXPECT_TRUE(at::allclose(run.points[0][0], w0[0] + delta[0], kTol, kTol));
  EXPECT_TRUE(at::allclose(run.points[0][1], w0[1] + delta[1], kTol, kTol));
  const TensorList g_noisy = coupled_grad({w0[0] + delta[0], w0[1] + delta[1]});
  const TensorList v{lambda * g_noisy[0] + delta[0], lambda * g_noisy[1] + delta[1]};
  const double scale = rho / (norm(v) + 1e-12);
  const TensorList point{w0[0] + scale * v[0], w0[1] + scale * v[1]};  // W + ε, not W + δ + ε
  EXPECT_TRUE(at::allclose(run.points[1][0], point[0], kTol, kTol));
  EXPECT_TRUE(at::allclose(run.points[1][1], point[1], kTol, kTol));
  const TensorList G = coupled_grad(point);
  EXPECT_TRUE(at::allclose(run.w[0].detach(), w0[0] - lr * G[0], kTol, kTol));
  EXPECT_TRUE(at::allclose(run.w[1].detach(), w0[1] - lr * G[1], kTol, kTol));
}

TEST(Rsam, NoiseScalesWithEachOutputUnitsNorm) {
  // Rows of very different norms get noise of proportionally different size.
  at::Tensor W = at::ones({2, 1000}, at::kDouble);
  W[1].mul_(100.0);
  MethodRun run({W}, std::make_shared<Rsam>(RsamOptions(0.0).sigma(0.01)), 0.0);
  run.step([](const TensorList& w) { return quartic_loss(w[0] * 1e-2); });
  const at::Tensor delta = run.points[0][0] - W;
  const double std0 = delta[0].std().item<double>(), std1 = delta[1].std().item<double>();
  EXPECT_NEAR(std0, 0.01 * std::sqrt(1000.0), 0.1 * 0.01 * std::sqrt(1000.0));
  EXPECT_NEAR(std1 / std0, 100.0, 10.0);
}

TEST(Rsam, SchedulesFollowHalfCosinesAndAreConstantByDefault) {
  Rsam constant(RsamOptions(0.05).sigma(0.01));
  constant.set_epoch(3, 10);
  EXPECT_DOUBLE_EQ(constant.sigma(), 0.01);
  EXPECT_DOUBLE_EQ(constant.rho(), 0.05);
  Rsam scheduled(RsamOptions(2.5).rho_end(1.5).sigma(2.5e-3).sigma_start(5e-4));
  scheduled.set_epoch(0, 5);
  EXPECT_DOUBLE_EQ(scheduled.sigma(), 5e-4);
  EXPECT_DOUBLE_EQ(scheduled.rho(), 2.5);
  scheduled.set_epoch(2, 5);
  EXPECT_NEAR(scheduled.sigma(), 1.5e-3, 1e-15);
  EXPECT_NEAR(scheduled.rho(), 2.0, 1e-15);
  scheduled.set_epoch(4, 5);
  EXPECT_NEAR(scheduled.sigma(), 2.5e-3, 1e-15);
  EXPECT_NEAR(scheduled.rho(), 1.5, 1e-15);
}

TEST(CrSam, OneStepEqualsTheHandComputedUpdate) {
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  const double rho = 0.2, alpha = 0.3, beta = 0.05, lr = 0.1;
  MethodRun run({w0}, std::make_shared<CrSam>(CrSamOptions(rho).alpha(alpha).beta(beta)), lr);
  run.step([](const TensorList& w) { return quartic_loss(w[0]); });
  ASSERT_EQ(run.points.size(), 3u);
  const at::Tensor g_o = quartic_grad(w0);
  const at::Tensor v = g_o / (g_o.norm().item<double>() + 1e-12);
  EXPECT_TRUE(at::equal(run.points[0][0], w0));
  EXPECT_TRUE(at::allclose(run.points[1][0], w0 + rho * v, kTol, kTol));
  EXPECT_TRUE(at::allclose(run.points[2][0], w0 - rho * v, kTol, kTol));
  const at::Tensor g_w = quartic_grad(w0 + rho * v), g_b = quartic_grad(w0 - rho * v);
  const at::Tensor G = g_w + alpha * (g_w + g_b - 2 * g_o) + beta * (g_w - g_b);
  EXPECT_TRUE(at::allclose(run.w0(), w0 - lr * G, kTol, kTol));
  EXPECT_EQ(run.opt->gradient_evaluations(), 3);
}

TEST(CrSam, CurvatureTermIsTheGradientOfTheFiniteDifferenceRegulariser) {
  // On a quadratic, with v held fixed: ∇_W [L(W+ρv) + L(W−ρv) − 2L(W)] = 0 and ∇_W [L(W+ρv) − L(W−ρv)] =
  // 2ρ·Av. So G = g(W+ρv) + β·2ρ·Av = g + ρAv + 2βρAv whatever α.
  const Quadratic q;
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  const double rho = 0.1, beta = 0.07;
  MethodRun run({w0}, std::make_shared<CrSam>(CrSamOptions(rho).alpha(0.4).beta(beta)), 1.0);
  run.step([&](const TensorList& w) { return quad_of(q, w); });
  const at::Tensor g = q.grad(w0);
  const at::Tensor Av = q.A.mv(g / g.norm());
  EXPECT_TRUE(at::allclose(w0 - run.w0(), g + rho * Av + 2 * beta * rho * Av, 1e-10, 1e-10));
}

TEST(CrSam, ZeroAlphaAndBetaIsSam) {
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  MethodRun crsam({w0}, std::make_shared<CrSam>(CrSamOptions(0.15).alpha(0).beta(0)), 0.1);
  MethodRun sam({w0}, std::make_shared<Sam>(SamOptions(0.15)), 0.1);
  for (int s = 0; s < 4; ++s) {
    crsam.step([](const TensorList& w) { return quartic_loss(w[0]); });
    sam.step([](const TensorList& w) { return quartic_loss(w[0]); });
  }
  EXPECT_TRUE(at::equal(crsam.w0(), sam.w0()));
}

// bSAM's rule (bsam.h), computed here element by element from the formulas.
struct BsamReference {
  double N, rho, delta, gamma, b1, b2;
  at::Tensor s, m;
  at::Tensor prior_mean;  // defined: the prior is centred there, not at 0
  at::Tensor step(const at::Tensor& w, uint64_t seed, int64_t t, double lr, std::vector<at::Tensor>* points) {
    const at::Tensor z = standard_gaussian_like(w, flatmin::noise::noise_key(seed, t, 0, 0));
    const at::Tensor theta = w + z / (N * s).sqrt();
    const at::Tensor g = quartic_grad(theta);
    const at::Tensor point = w + rho * g / s;
    const at::Tensor g_hat = quartic_grad(point);
    const at::Tensor h = s.sqrt() * g.abs();
    m = b1 * m + (1 - b1) * (g_hat + delta * (prior_mean.defined() ? w - prior_mean : w));
    const at::Tensor w_next = w - lr * m / s;
    s = b2 * s + (1 - b2) * (h + gamma + delta);
    points->push_back(theta);
    points->push_back(point);
    return w_next;
  }
};

// Three bSAM steps on the quartic from w0 against `ref`, step by step (weights, precision, momentum) and
// point by point; returns the points the closure saw.
std::vector<at::Tensor> expect_bsam_steps(const std::shared_ptr<Bsam>& method, const at::Tensor& w0, BsamReference ref,
                                          uint64_t seed, double lr) {
  auto w = w0.clone().set_requires_grad(true);
  PerturbedOptimizer opt(std::make_shared<BsamUpdate>(TensorList{w}, method, BsamUpdateOptions(lr)), method,
                         PerturbedOptimizerOptions().seed(seed));
  std::vector<at::Tensor> seen, expected_points;
  at::Tensor w_ref = w0;
  for (int64_t t = 0; t < 3; ++t) {  // several steps: s and m carry over
    opt.step([&] {
      opt.zero_grad();
      seen.push_back(w.detach().clone());
      auto l = quartic_loss(w);
      l.backward();
      return l;
    });
    w_ref = ref.step(w_ref, seed, t, lr, &expected_points);
    EXPECT_TRUE(at::allclose(w.detach(), w_ref, kTol, kTol)) << "step " << t;
    EXPECT_TRUE(at::allclose(method->precision()[0], ref.s, kTol, kTol)) << "step " << t;
    EXPECT_TRUE(at::allclose(method->momentum()[0], ref.m, kTol, kTol)) << "step " << t;
  }
  EXPECT_EQ(seen.size(), expected_points.size());
  for (size_t i = 0; i < seen.size() && i < expected_points.size(); ++i)
    EXPECT_TRUE(at::allclose(seen[i], expected_points[i], kTol, kTol)) << i;
  EXPECT_EQ(opt.gradient_evaluations(), 6);
  return seen;
}

TEST(Bsam, StepsEqualTheHandComputedRule) {
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  const int64_t N = 50;
  const double rho = 0.05, prior = 10, gamma = 0.1, s0 = 2.0, b1 = 0.8, b2 = 0.9, lr = 0.3;
  auto method = std::make_shared<Bsam>(
      BsamOptions(N).rho(rho).prior_precision(prior).damping(gamma).init_precision(s0).beta1(b1).beta2(b2));
  expect_bsam_steps(method, w0,
                    {static_cast<double>(N), rho, prior / N, gamma, b1, b2, at::full_like(w0, s0), at::zeros_like(w0),
                     at::Tensor()},
                    3, lr);
}

// The fine-tuning options: the noise std set directly (s₀ = 1/(N·σ²): the first sample's std is σ), the
// prior centred on the first step's weights, and BatchNorm statistics from the ascent pass only.
TEST(Bsam, FineTuningOptionsFollowTheirRule) {
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  const int64_t N = 400;
  const double rho = 0.02, prior = 25, gamma = 0.1, sigma = 0.01, b1 = 0.9, b2 = 0.99, lr = 0.2;
  const uint64_t seed = 5;
  auto method = std::make_shared<Bsam>(BsamOptions(N).rho(rho).prior_precision(prior).damping(gamma).beta1(b1).beta2(b2)
                                           .noise_std(sigma).prior_at_init(true).statistics_from_ascent(true));
  EXPECT_DOUBLE_EQ(method->options().init_precision(), 1.0 / (N * sigma * sigma));  // 25
  EXPECT_FALSE(method->counts_for_buffers(0));  // the posterior sample's statistics are discarded
  EXPECT_TRUE(method->counts_for_buffers(1));
  const std::vector<at::Tensor> seen = expect_bsam_steps(
      method, w0,
      {static_cast<double>(N), rho, prior / N, gamma, b1, b2, at::full_like(w0, 1.0 / (N * sigma * sigma)),
       at::zeros_like(w0), w0},
      seed, lr);
  // The first sample: θ − ω₀ = σ·z exactly.
  const at::Tensor z = standard_gaussian_like(w0, flatmin::noise::noise_key(seed, 0, 0, 0));
  EXPECT_TRUE(at::allclose(seen[0] - w0, sigma * z, 1e-12, 1e-14));
  // The prior mean is part of the state: saved and loaded.
  torch::serialize::OutputArchive out;
  method->save(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  auto loaded = std::make_shared<Bsam>(BsamOptions(N).noise_std(sigma).prior_at_init(true));
  torch::serialize::InputArchive in;
  std::istringstream read_back(bytes.str());
  in.load_from(read_back);
  loaded->load(in);
  auto without = std::make_shared<Bsam>(BsamOptions(N));
  torch::serialize::InputArchive in2;
  std::istringstream read_again(bytes.str());
  in2.load_from(read_again);
  without->load(in2);  // a state with a prior mean loads into a zero-centred bSAM (the mean is unused)
  EXPECT_THROW(Bsam(BsamOptions(N).noise_std(-1)), flatmin::Error);
  EXPECT_THROW(make_method(MethodSpec().name("bsam").bsam_train_size(N).bsam_prior_mean("pretrained")), flatmin::Error);
}

TEST(Bsam, SaveLoadResumesTheSameTrajectory) {
  const TensorList w0{at::randn({kDim}, at::kDouble)};
  const MethodSpec spec = MethodSpec().name("bsam").bsam_train_size(100).rho(0.05);
  auto f = [](const TensorList& w) { return quartic_loss(w[0]); };
  MethodRun a(w0, spec, 0.1, PerturbedOptimizerOptions().seed(8));
  for (int s = 0; s < 3; ++s) a.step(f);
  std::stringstream buffer;
  torch::save(*a.opt, buffer);
  MethodRun b({a.w0().clone()}, spec, 0.7, PerturbedOptimizerOptions().seed(99));  // lr and seed come from the archive
  torch::load(*b.opt, buffer);
  for (int s = 0; s < 3; ++s) {
    a.step(f);
    b.step(f);
  }
  EXPECT_TRUE(at::equal(a.w0(), b.w0()));
}

TEST(Bsam, WithoutItsOwnUpdateRuleItStopsWithAClearError) {
  const at::Tensor w0 = at::randn({kDim}, at::kDouble);
  MethodRun run({w0}, std::make_shared<Bsam>(BsamOptions(100)), 0.1);  // plain SGD base: wrong
  run.step([](const TensorList& w) { return quartic_loss(w[0]); });
  try {
    run.step([](const TensorList& w) { return quartic_loss(w[0]); });
    FAIL() << "no error";
  } catch (const flatmin::Error& e) {
    EXPECT_NE(std::string(e.what()).find("BsamUpdate"), std::string::npos) << e.what();
  }
}

TEST(L2Sp, AddsTwoLambdaTimesTheDistanceToTheStartAtWForEveryMethod) {
  const at::Tensor start = at::randn({kDim}, at::kDouble);
  const at::Tensor moved = start + at::randn({kDim}, at::kDouble);
  const double lambda = 0.3, lr = 1.0;
  for (const std::string name : {"sgd", "sam", "nso"}) {
    // W₀ = start; then the weights move to `moved` and one step is taken from there.
    MethodRun run({start}, make_method(MethodSpec().name(name).rho(0.1).sigma(0.1)), lr);
    L2Sp l2sp(run.w, lambda);
    run.opt->add_gradient_term(l2sp);
    {
      torch::NoGradGuard no_grad;
      run.w[0].copy_(moved);
    }
    EXPECT_NEAR(l2sp.penalty(), lambda * (moved - start).square().sum().item<double>(), 1e-12);
    MethodRun plain({moved}, make_method(MethodSpec().name(name).rho(0.1).sigma(0.1)), lr);
    run.step([](const TensorList& w) { return quartic_loss(w[0]); });
    plain.step([](const TensorList& w) { return quartic_loss(w[0]); });
    // The method's own update plus exactly 2λ(W − W₀) at the restored W.
    EXPECT_TRUE(at::allclose(run.w0(), plain.w0() - lr * 2 * lambda * (moved - start), kTol, kTol)) << name;
  }
  EXPECT_THROW(L2Sp({}, -1.0), flatmin::Error);
}

// ------------------------------------------------------------------ BatchNorm and zero learning rate
constexpr double kMomentum = 0.1;

struct Net : torch::nn::Module {
  torch::nn::Linear fc{nullptr};
  torch::nn::BatchNorm1d bn{nullptr};
  torch::nn::Linear head{nullptr};
  Net() {
    fc = register_module("fc", torch::nn::Linear(3, 4));
    bn = register_module("bn", torch::nn::BatchNorm1d(torch::nn::BatchNorm1dOptions(4).momentum(kMomentum)));
    head = register_module("head", torch::nn::Linear(4, 1));
  }
  at::Tensor forward(const at::Tensor& x) { return head->forward(bn->forward(fc->forward(x)).relu()); }
};

const std::vector<std::string> kSamFamily{"sam", "usam", "asam", "rsam", "bsam", "crsam"};

// The passes whose BatchNorm statistics count, as each method's doc comment states.
std::vector<int> counted_passes(const std::string& method) {
  if (method == "bsam") return {0, 1};
  return {0};
}

MethodSpec spec_of(const std::string& name) {
  // Large radii and noise so that every pass sees visibly different statistics.
  return MethodSpec().name(name).rho(name == "asam" ? 5.0 : 0.5).rsam_sigma(0.5).bsam_train_size(4);
}

TEST(SamFamily, ZeroLearningRateLeavesWeightsAndBuffersAsTheirPoliciesSay) {
  for (const auto& name : kSamFamily) {
    for (bool train_mode : {false, true}) {
      at::manual_seed(21);
      auto net = std::make_shared<Net>();
      net->train(train_mode);
      const at::Tensor x = at::randn({16, 3});
      auto opt = make_perturbed_optimizer(net->parameters(), spec_of(name),
                                          BaseOptimizerOptions().lr(0.0).momentum(0.9),
                                          PerturbedOptimizerOptions().seed(2).accumulate_in_grad(true));
      opt->track_buffers(net->buffers());
      TensorList params0, buffers0;
      for (const auto& t : net->parameters()) params0.push_back(t.detach().clone());
      for (const auto& t : net->buffers()) buffers0.push_back(t.clone());
      for (int s = 0; s < 3; ++s) {
        const at::Tensor mean_before = net->bn->running_mean.clone(), var_before = net->bn->running_var.clone();
        std::vector<at::Tensor> batch_means, batch_vars;  // the BN input statistics of every pass
        opt->step([&] {
          {
            torch::NoGradGuard no_grad;
            const at::Tensor h = net->fc->forward(x);
            batch_means.push_back(h.mean(0));
            batch_vars.push_back(h.var(0, /*unbiased=*/true));
          }
          auto loss = net->forward(x).square().mean();
          loss.backward();
          return loss;
        });
        ASSERT_EQ(batch_means.size(), static_cast<size_t>(opt->evaluations())) << name;
        if (!train_mode) continue;
        const auto counted = counted_passes(name);
        at::Tensor mean = at::zeros({4}), var = at::zeros({4});
        for (int i : counted) {
          mean += batch_means[i] / static_cast<double>(counted.size());
          var += batch_vars[i] / static_cast<double>(counted.size());
        }
        EXPECT_TRUE(at::allclose(net->bn->running_mean, (1 - kMomentum) * mean_before + kMomentum * mean, 1e-5, 1e-6))
            << name << " step " << s;
        EXPECT_TRUE(at::allclose(net->bn->running_var, (1 - kMomentum) * var_before + kMomentum * var, 1e-5, 1e-6))
            << name << " step " << s;
        // The passes really differed: counting a pass that does not count would give another value.
        for (int i = 0; i < static_cast<int>(batch_means.size()); ++i) {
          if (std::find(counted.begin(), counted.end(), i) != counted.end()) continue;
          EXPECT_FALSE(at::allclose(batch_means[i], mean, 1e-3, 1e-4)) << name << " pass " << i;
        }
        if (counted.size() > 1) {
          EXPECT_FALSE(at::allclose(batch_means[0], batch_means[1], 1e-3, 1e-4)) << name;
        }
      }
      const auto params = net->parameters();
      for (size_t j = 0; j < params.size(); ++j) EXPECT_TRUE(at::equal(params[j], params0[j])) << name << " param " << j;
      const auto buffers = net->buffers();
      if (train_mode) {
        EXPECT_EQ(net->bn->num_batches_tracked.item<int64_t>(), 3) << name;  // once per step
      } else {
        for (size_t j = 0; j < buffers.size(); ++j) EXPECT_TRUE(at::equal(buffers[j], buffers0[j])) << name << " buffer " << j;
      }
    }
  }
}

// ------------------------------------------------------------------------------------------ factory
TEST(SamFamily, FactoryBuildsEveryMethodWithItsCostAndDefaults) {
  const std::vector<std::pair<std::string, int64_t>> costs{{"sam", 2}, {"usam", 2}, {"asam", 2},
                                                           {"rsam", 2}, {"bsam", 2}, {"crsam", 3}};
  for (const auto& [name, cost] : costs) {
    auto method = make_method(MethodSpec().name(name).bsam_train_size(10));
    EXPECT_EQ(method->name(), name);
    EXPECT_EQ(method->evaluations(), cost) << name;
    EXPECT_EQ(method->scalars().at(0).first, "rho") << name;
    EXPECT_DOUBLE_EQ(method->scalars().at(0).second, default_rho(name)) << name;
    EXPECT_NE(std::find(method_names().begin(), method_names().end(), name), method_names().end());
  }
  EXPECT_DOUBLE_EQ(default_rho("asam"), 0.5);
  EXPECT_DOUBLE_EQ(make_method(MethodSpec().name("sam").rho(0.02))->scalars().at(0).second, 0.02);
  EXPECT_THROW(make_method(MethodSpec().name("bsam")), flatmin::Error);  // N unknown
  EXPECT_THROW(make_method(MethodSpec().name("asam").asam_eta(-1)), flatmin::Error);
  EXPECT_THROW(make_method(MethodSpec().name("rsam").rsam_sigma(-1)), flatmin::Error);
  EXPECT_THROW(make_method(MethodSpec().name("crsam").crsam_alpha(-0.1)), flatmin::Error);
  EXPECT_THROW(make_method(MethodSpec().name("bsam").bsam_train_size(10).bsam_beta2(1.0)), flatmin::Error);
  EXPECT_THROW(make_method(MethodSpec().name("sam").rho(std::nan(""))), flatmin::Error);
  const TensorList w{at::zeros({2}).set_requires_grad(true)};
  const MethodSpec bsam = MethodSpec().name("bsam").bsam_train_size(10);
  EXPECT_THROW(make_perturbed_optimizer(w, bsam, BaseOptimizerOptions().name("adamw")), flatmin::Error);
  EXPECT_THROW(make_perturbed_optimizer(w, bsam, BaseOptimizerOptions().weight_decay(1e-4)), flatmin::Error);
  EXPECT_NO_THROW(make_perturbed_optimizer(w, bsam, BaseOptimizerOptions()));
}

}  // namespace

}  // namespace sam_test
