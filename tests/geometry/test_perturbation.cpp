// Perturbation gap against σ²/2·Tr on quadratics, SAM's approximation ratio against brute force, per-example
// traces against exact per-example Hessians, the PAC-Bayes formula, and that measuring leaves a BatchNorm
// model exactly as it was.
#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "flatmin/core/error.h"
#include "flatmin/geometry/perturbation.h"
#include "geometry/geometry_test_util.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace perturbation_test {

using namespace flatmin;
using namespace flatmin::geometry;
using namespace flatmin::geometry::testing;

namespace {

bool contains(const std::vector<std::string>& lines, const std::string& word) {
  for (const auto& l : lines)
    if (l.find(word) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST(PerturbationGap, EqualsHalfSigmaSquaredTraceOnAQuadratic) {
  torch::manual_seed(0);
  std::vector<double> values;
  for (int i = 0; i < 50; ++i) values.push_back(0.5 + 0.1 * i);  // Tr A = 147.5
  const at::Tensor a = with_eigenvalues(values, 1);
  const double trace = a.trace().item<double>();
  // W is not a minimum (∇f = AW ≠ 0): the antithetic pair cancels the first-order term exactly.
  Quadratic q = quadratic(a, torch::randn({50}, torch::kDouble));
  const at::Tensor before = q.w.detach().clone();
  for (const auto law : {noise::NoiseLaw::kGaussian, noise::NoiseLaw::kLaplace, noise::NoiseLaw::kUniform,
                         noise::NoiseLaw::kRademacher}) {
    const GapResult r = perturbation_gap(
        q.objective, GapOptions().sigmas({0.05, 0.2}).draws(200).law(law).trace(trace).seed(3));
    ASSERT_EQ(r.rows.size(), 2u);
    for (const auto& row : r.rows) {
      EXPECT_NEAR(row.predicted, 0.5 * row.sigma * row.sigma * trace, 1e-12);
      EXPECT_LE(std::abs(row.gap - row.predicted), 4 * row.gap_std_error) << noise::to_string(law) << " σ " << row.sigma;
      EXPECT_NEAR(row.gap_std_error, row.gap_std / std::sqrt(200.0), 1e-15);
    }
    // Common random numbers: the same unit draws at every σ, so the gap scales exactly as σ².
    EXPECT_NEAR(r.rows[1].gap / r.rows[0].gap, 16.0, 1e-9);
    EXPECT_TRUE(torch::equal(q.w.detach(), before)) << "W must be restored bit for bit";
  }
  // One-sided draws f(W+U) − f(W) are unbiased too, but each carries ⟨U, ∇f⟩: far noisier than the pairs.
  const GapResult one_sided = perturbation_gap(q.objective, GapOptions().sigmas({0.05}).draws(400).antithetic(false).trace(trace));
  const GapResult paired = perturbation_gap(q.objective, GapOptions().sigmas({0.05}).draws(400).trace(trace));
  EXPECT_LE(std::abs(one_sided.rows[0].gap - one_sided.rows[0].predicted), 4 * one_sided.rows[0].gap_std_error);
  EXPECT_GT(one_sided.rows[0].gap_std, 3 * paired.rows[0].gap_std);  // the first-order term's variance

  // RSS and relative errors as defined.
  const GapResult r = perturbation_gap(q.objective, GapOptions().sigmas({0.1, 0.2, 0.3}).draws(50).trace(trace * 1.1));
  double residual = 0, squares = 0;
  for (const auto& row : r.rows) {
    EXPECT_NEAR(row.relative_error, (row.predicted - row.gap) / row.gap, 1e-12);
    residual += std::pow(row.gap - row.predicted, 2);
    squares += row.gap * row.gap;
  }
  EXPECT_NEAR(r.rss, residual / squares, 1e-12);
  EXPECT_NEAR(r.rss_absolute, residual, 1e-15);
  // Common random numbers make every row the same multiple of σ²: the fitted trace is that multiple.
  EXPECT_NEAR(r.effective_trace, 2 * r.rows[0].gap / (0.1 * 0.1), 1e-9 * r.effective_trace);
  // The prediction is 10% high at every σ, far beyond sampling error: said once, as σ-independent.
  const GapResult high = perturbation_gap(q.objective, GapOptions().sigmas({0.1, 0.2, 0.3}).draws(400).trace(trace * 1.3));
  ASSERT_EQ(high.warnings.size(), 1u);
  EXPECT_NE(high.warnings[0].find("hardly changes with σ"), std::string::npos) << high.warnings[0];
}

// The authors' uncentred σ·Binomial(4, ½) (mean 2σ·1, covariance σ²I): drawn one-sided whatever is asked,
// its gap is E[f(W+U)] − f(W) = 2σ⟨∇f, 1⟩ + σ²/2·(Tr A + 4·1ᵀA1), not σ²/2·Tr A.
TEST(PerturbationGap, AnUncentredLawIsDrawnOneSidedAndCarriesItsMeansTerms) {
  torch::manual_seed(1);
  std::vector<double> values;
  for (int i = 0; i < 20; ++i) values.push_back(0.5 + 0.1 * i);
  const at::Tensor a = with_eigenvalues(values, 2);
  Quadratic q = quadratic(a, torch::randn({20}, torch::kDouble));
  const double sigma = 0.05, trace = a.trace().item<double>();
  const GapResult r = perturbation_gap(
      q.objective, GapOptions().sigmas({sigma}).draws(2000).law(noise::NoiseLaw::kBinomial4).trace(trace).seed(5));
  EXPECT_FALSE(r.antithetic);
  const at::Tensor ones = torch::ones({20}, torch::kDouble);
  const double expected = 2 * sigma * torch::dot(torch::mv(a, q.w.detach()), ones).item<double>() +
                          0.5 * sigma * sigma * (trace + 4 * torch::dot(ones, torch::mv(a, ones)).item<double>());
  EXPECT_LE(std::abs(r.rows[0].gap - expected), 4 * r.rows[0].gap_std_error) << r.rows[0].gap << " vs " << expected;
  EXPECT_GT(std::abs(r.rows[0].gap - r.rows[0].predicted), 10 * r.rows[0].gap_std_error);  // not σ²/2·Tr
}

TEST(PerturbationGap, EstimatesTheTraceItselfAndSaysWhereTheQuadraticModelFails) {
  std::vector<double> values(20, 2.0);
  Quadratic q = quadratic(with_eigenvalues(values, 2), torch::randn({20}, torch::kDouble));
  const GapResult estimated = perturbation_gap(q.objective, GapOptions().sigmas({0.1}).draws(100));
  EXPECT_NEAR(estimated.trace, 40.0, 1e-6);  // H = 2I: Hutchinson is exact
  EXPECT_LE(std::abs(estimated.rows[0].gap - 0.2), 4 * estimated.rows[0].gap_std_error);

  // f(w) = 1 + Σ w⁴ at w = 0: Hessian 0, but the gap is 3σ⁴·n > 0 — a tool must say so, not hide it.
  at::Tensor w = torch::zeros({10}, torch::dtype(torch::kDouble).requires_grad(true));
  const Objective quartic({{"w", w}}, [w] { return 1.0 + w.pow(4).sum(); });
  const GapResult r = perturbation_gap(quartic, GapOptions().sigmas({0.3}).draws(50));
  EXPECT_EQ(r.trace, 0.0);
  EXPECT_GT(r.rows[0].gap, 0.0);
  EXPECT_TRUE(contains(r.warnings, "not positive")) << (r.warnings.empty() ? "" : r.warnings[0]);

  // Near-zero loss.
  at::Tensor v = torch::full({4}, 1e-3, torch::dtype(torch::kDouble).requires_grad(true));
  const Objective tiny({{"v", v}}, [v] { return (v * v).sum(); });
  EXPECT_TRUE(contains(perturbation_gap(tiny, GapOptions().sigmas({0.01}).draws(20)).warnings, "near zero"));
  EXPECT_THROW(perturbation_gap(tiny, GapOptions().sigmas({-0.1})), flatmin::Error);
}

TEST(AscentRatio, IsOneForLinearLossesAndMatchesBruteForceOnAQuadratic) {
  // Linear per-example losses: SAM's normalised step is the exact maximiser on the ball.
  at::Tensor w = torch::randn({5}, torch::dtype(torch::kDouble).requires_grad(true));
  const at::Tensor c = torch::randn({7, 5}, torch::kDouble);
  Objective linear({{"w", w}}, [w, c] { return torch::mv(c, w).mean(); });
  linear.set_example_loss(7, [w, c](int64_t i) { return torch::dot(c[i], w); });
  const AscentRatioResult lin = sam_approximation_ratio(linear, AscentRatioOptions().rho(0.3));
  EXPECT_EQ(lin.points, 7);
  EXPECT_NEAR(lin.ratio, 1.0, 1e-12);

  // ℓ(w) = ½wᵀAw, A = diag(1, 10), w = (1, 0.05), ρ = 0.5: the gradient (1, 0.5) is not the best direction.
  at::Tensor u = torch::tensor({1.0, 0.05}, torch::dtype(torch::kDouble).requires_grad(true));
  const at::Tensor a = torch::diag(torch::tensor({1.0, 10.0}, torch::kDouble));
  auto ell = [a](const at::Tensor& x) { return 0.5 * torch::dot(x, torch::mv(a, x)); };
  Objective quad({{"u", u}}, [u, ell] { return ell(u); });
  quad.set_example_loss(1, [u, ell](int64_t) { return ell(u); });
  const double rho = 0.5;
  const at::Tensor w0 = u.detach().clone();
  const double l0 = ell(w0).item<double>();
  const at::Tensor g = torch::mv(a, w0);
  const double l1 = ell(w0 + rho * g / g.norm()).item<double>();
  double best = -1;  // a convex function's maximum on the ball lies on the sphere
  for (int i = 0; i < 200000; ++i) {
    const double t = 2 * M_PI * i / 200000.0, x = 1.0 + rho * std::cos(t), y = 0.05 + rho * std::sin(t);
    best = std::max(best, 0.5 * (x * x + 10 * y * y));
  }
  const double expected = (l1 - l0) / (best - l0);
  ASSERT_LT(expected, 0.95);
  const AscentRatioResult r = sam_approximation_ratio(quad, AscentRatioOptions().rho(rho));
  EXPECT_NEAR(r.ratio, expected, 1e-3 * expected);
  EXPECT_LE(r.ratio, 1.0);
  EXPECT_NEAR(r.one_step_increase, l1 - l0, 1e-12);
  EXPECT_TRUE(torch::equal(u.detach(), w0));
}

TEST(PerExampleTraces, MatchExactPerExampleHessians) {
  TinyMlp t = tiny_mlp(12, 6);
  const Objective o = Objective::for_model(t.model, t.data);
  const SampleTraces s = per_example_traces(o, SampleTraceOptions().probes(200).refine_probes(400).seed(5));
  ASSERT_EQ(s.traces.size(), 6u);
  double mean = 0, max = -1e300;
  for (int64_t i = 0; i < 6; ++i) {
    const double exact = exact_hessian(o.example(i)).trace().item<double>();
    EXPECT_LE(std::abs(s.traces[i] - exact), 4 * s.std_errors[i] + 1e-12) << "example " << i;
    mean += exact / 6;
    max = std::max(max, s.traces[i]);
  }
  // The mean of the per-example traces is the trace of the mean loss (linearity).
  EXPECT_NEAR(mean, exact_hessian(o).trace().item<double>(), 1e-9 * std::abs(mean));
  EXPECT_EQ(s.max, max);
  EXPECT_EQ(s.traces[s.max_index], s.max);

  // The largest screening estimates (and only they) are measured again with fresh probes.
  const SampleTraces screen = per_example_traces(o, SampleTraceOptions().probes(4).refine_top(0).seed(1));
  const SampleTraces refined = per_example_traces(o, SampleTraceOptions().probes(4).refine_top(2).seed(1));
  std::vector<double> sorted = screen.traces;
  std::sort(sorted.rbegin(), sorted.rend());
  int changed = 0;
  for (size_t i = 0; i < 6; ++i) {
    if (refined.traces[i] == screen.traces[i]) continue;
    ++changed;
    EXPECT_GE(screen.traces[i], sorted[1]) << "example " << i << " was not among the two largest";
  }
  EXPECT_EQ(changed, 2);
}

TEST(PacBayes, BoundIsTheTheoremsFormulaAndDistanceMatchesByName) {
  const PacBayesResult r = pac_bayes_bound(
      PacBayesInputs().train_loss(0.5).test_loss(0.9).alpha(3).radius(4).n(6).loss_bound(2).epsilon(0.1));
  EXPECT_DOUBLE_EQ(r.complexity, 4.0);  // √(2·3·16/6)
  EXPECT_DOUBLE_EQ(r.bound, 1.1 * 0.5 + 1.1 * 4.0);
  EXPECT_DOUBLE_EQ(r.observed_gap, 0.4);
  EXPECT_THROW(pac_bayes_bound(PacBayesInputs().n(0)), flatmin::Error);
  EXPECT_THROW(pac_bayes_bound(PacBayesInputs().alpha(-1)), flatmin::Error);

  torch::manual_seed(0);
  torch::nn::Linear a(3, 2), b(3, 2), c(4, 2);
  {
    torch::NoGradGuard no_grad;
    b->weight.copy_(a->weight + 1.0);  // 6 entries differ by 1
    b->bias.copy_(a->bias - 2.0);      // 2 entries differ by 2
  }
  EXPECT_NEAR(parameter_distance(*a, *b), std::sqrt(6.0 + 8.0), 1e-6);
  EXPECT_THROW(parameter_distance(*a, *c), flatmin::Error);
}

TEST(Measurement, BatchNormModelIsMeasuredInEvalModeAndLeftExactlyAsItWas) {  // and in train mode, asked
  torch::manual_seed(13);
  models::Model resnet =
      models::make_model(models::ModelSpec().name("resnet18").width(4).image_size(16).num_classes(3));
  data::Dataset d{torch::randn({12, 1, 16, 16}), torch::randint(0, 3, {12}, torch::kLong), 3};
  // Move the running statistics off their initial values, then leave a mix of modes.
  resnet->train();
  for (int i = 0; i < 3; ++i) resnet(torch::randn({8, 1, 16, 16}));
  auto named = resnet->named_modules();
  named["stages.1.bn1"]->eval();
  for (auto& p : resnet->parameters()) p.mutable_grad() = torch::full_like(p, 0.25);

  std::vector<at::Tensor> params, buffers, grads;
  for (const auto& p : resnet->parameters()) params.push_back(p.detach().clone());
  for (const auto& b : resnet->buffers()) buffers.push_back(b.clone());
  std::vector<std::pair<std::string, bool>> modes;
  for (const auto& item : resnet->named_modules()) modes.emplace_back(item.key(), item.value()->is_training());

  const Objective o = Objective::for_model(resnet, d, ObjectiveOptions().batch_size(5));
  double eval_loss = 0, train_loss = 0;
  {
    torch::NoGradGuard no_grad;
    resnet->eval();
    eval_loss = torch::nn::functional::cross_entropy(resnet(d.inputs), d.targets).item<double>();
    resnet->train();
    // Train-mode forward with batch statistics (it would move the running statistics: restore them).
    std::vector<at::Tensor> saved;
    for (const auto& b : resnet->buffers()) saved.push_back(b.clone());
    train_loss = torch::nn::functional::cross_entropy(resnet(d.inputs), d.targets).item<double>();
    size_t i = 0;
    for (auto& b : resnet->buffers()) b.copy_(saved[i++]);
    named["stages.1.bn1"]->eval();
  }
  ASSERT_GT(std::abs(eval_loss - train_loss), 1e-4);

  const GradientResult g = gradient(o);
  EXPECT_NEAR(g.loss, eval_loss, 1e-5 * eval_loss) << "measured in eval mode";
  hutchinson_trace(o, TraceOptions().max_probes(3).min_probes(3));
  hutchpp_trace(o, HutchppOptions().hvps(6));
  top_eigenvalues(o, EigenOptions().k(2).max_iterations(6));
  spectral_density(o, DensityOptions().iterations(4));
  const GapResult gap = perturbation_gap(o, GapOptions().sigmas({0.01}).draws(2).trace(1.0));
  EXPECT_NEAR(gap.loss, eval_loss, 1e-5 * eval_loss);
  const Objective few = Objective::for_model(resnet, d.subset(torch::arange(2)));
  sam_approximation_ratio(few, AscentRatioOptions().steps(3));
  per_example_traces(few, SampleTraceOptions().probes(2));
  {
    MeasurementScope scope(o, false);
    HessianOperator fd(o, HvpOptions().method(HvpMethod::kFiniteDifference));
    fd.apply(torch::randn({o.dim()}));
  }
  measure_scalars(resnet, d, ScalarOptions().max_probes(2).lanczos_iterations(3));
  // Train mode: every module trains, BatchNorm normalises with the batch's statistics (one batch of 12 here),
  // and the running statistics those passes move come back exactly as well.
  const Objective in_train = Objective::for_model(resnet, d, ObjectiveOptions().batch_size(12).mode(ModelMode::kTrain));
  EXPECT_NEAR(gradient(in_train).loss, train_loss, 1e-5 * train_loss) << "measured in train mode";
  hutchinson_trace(in_train, TraceOptions().max_probes(2).min_probes(2));
  EXPECT_NEAR(perturbation_gap(in_train, GapOptions().sigmas({0.01}).draws(2).trace(1.0)).loss, train_loss,
              1e-5 * train_loss);
  EXPECT_THROW(in_train.example(0), flatmin::Error);  // one example has no batch statistics

  size_t i = 0;
  for (const auto& p : resnet->parameters()) {
    EXPECT_TRUE(torch::equal(p.detach(), params[i])) << "parameter " << i;
    EXPECT_TRUE(torch::equal(p.grad(), torch::full_like(p, 0.25))) << ".grad of parameter " << i << " touched";
    ++i;
  }
  i = 0;
  for (const auto& b : resnet->buffers()) EXPECT_TRUE(torch::equal(b, buffers[i++])) << "buffer " << i;
  i = 0;
  for (const auto& item : resnet->named_modules()) {
    EXPECT_EQ(item.value()->is_training(), modes[i].second) << "mode of '" << item.key() << "'";
    ++i;
  }
}

}  // namespace perturbation_test
