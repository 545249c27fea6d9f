// Hessian-vector products, trace, eigenvalues and spectral density against exact Hessians of tiny models
// (full double backpropagation) and quadratics with known spectra.
#include <algorithm>
#include <cmath>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "flatmin/core/error.h"
#include "flatmin/geometry/spectrum.h"
#include "geometry/geometry_test_util.h"

// Names of this file only: the files of a test binary compile as one translation unit (UNITY_BUILD).
namespace hessian_test {

using namespace flatmin;
using namespace flatmin::geometry;
using namespace flatmin::geometry::testing;

namespace {

double relative(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-300);
}

// A module with a frozen layer (requires_grad false) and a registered parameter the forward never uses.
struct PartlyFrozenImpl : torch::nn::Module {
  PartlyFrozenImpl() {
    frozen = register_module("frozen", torch::nn::Linear(6, 5));
    head = register_module("head", torch::nn::Linear(5, 3));
    unused = register_parameter("unused", torch::randn({4}));
    for (auto& p : frozen->parameters()) p.set_requires_grad(false);
  }
  at::Tensor forward(const at::Tensor& x) { return head->forward(torch::tanh(frozen->forward(x.flatten(1)))); }
  torch::nn::Linear frozen{nullptr}, head{nullptr};
  at::Tensor unused;
};
TORCH_MODULE(PartlyFrozen);

}  // namespace

TEST(HessianOperator, AutogradProductMatchesTheExactHessianOverUnevenBatches) {
  TinyMlp t = tiny_mlp();
  // 64 examples in batches of 24, 24, 16: the weights n_b/N must make this the Hessian of the mean loss.
  const Objective batched = Objective::for_model(t.model, t.data, ObjectiveOptions().batch_size(24));
  const Objective whole = Objective::for_model(t.model, t.data, ObjectiveOptions().batch_size(64));
  ASSERT_EQ(batched.num_batches(), 3);
  ASSERT_EQ(batched.dim(), 244);
  const at::Tensor h = exact_hessian(whole);
  MeasurementScope scope(batched, false);
  HessianOperator op(batched);
  for (int i = 0; i < 3; ++i) {
    const at::Tensor v = torch::randn({batched.dim()}, torch::kDouble);
    EXPECT_LT(relative(op.apply(v), torch::mv(h, v)), 1e-10);
  }
  EXPECT_EQ(op.products(), 3);
  EXPECT_NEAR(op.loss(), whole.value(), 1e-12);
}

TEST(HessianOperator, CachedGraphsGiveTheSameProductsAsRecomputation) {
  TinyMlp t = tiny_mlp(1);
  const Objective o = Objective::for_model(t.model, t.data, ObjectiveOptions().batch_size(20));
  MeasurementScope scope(o, false);
  HessianOperator cached(o, HvpOptions().graph_memory_mb(-1));
  HessianOperator recomputed(o, HvpOptions().graph_memory_mb(0));
  HessianOperator tiny_budget(o, HvpOptions().graph_memory_mb(1e-9));
  for (int i = 0; i < 3; ++i) {  // the cached graphs must survive repeated use
    const at::Tensor v = torch::randn({o.dim()}, torch::kDouble);
    const at::Tensor a = cached.apply(v);
    EXPECT_LT(relative(a, recomputed.apply(v)), 1e-13);
    EXPECT_LT(relative(a, tiny_budget.apply(v)), 1e-13);
  }
  EXPECT_EQ(cached.cached_batches(), 4);
  EXPECT_EQ(recomputed.cached_batches(), 0);
  EXPECT_LT(tiny_budget.cached_batches(), 4);
  EXPECT_LT(relative(cached.gradient(), recomputed.gradient()), 1e-14);
}

TEST(HessianOperator, FiniteDifferencesAgreeWithAutograd) {
  TinyMlp t = tiny_mlp(2);
  const Objective o = Objective::for_model(t.model, t.data);
  const at::Tensor before = o.flat_parameters();
  MeasurementScope scope(o, false);
  HessianOperator autograd(o);
  HessianOperator fd(o, HvpOptions().method(HvpMethod::kFiniteDifference).fd_epsilon(1e-4));
  for (int i = 0; i < 3; ++i) {
    const at::Tensor v = torch::randn({o.dim()}, torch::kDouble) * 3.0;  // any norm
    EXPECT_LT(relative(fd.apply(v), autograd.apply(v)), 1e-6);
  }
  EXPECT_TRUE(torch::equal(o.flat_parameters(), before)) << "finite differences must restore W exactly";

  // float32 with the default ε: agreement to float precision over ε.
  torch::manual_seed(3);
  models::Model mlp = models::make_model(models::ModelSpec().name("mlp").width(16).image_size(6).num_classes(5));
  data::Dataset d{torch::randn({50, 1, 6, 6}), torch::randint(0, 5, {50}, torch::kLong), 5};
  const Objective of = Objective::for_model(mlp, d);
  HessianOperator a32(of), f32(of, HvpOptions().method(HvpMethod::kFiniteDifference));
  const at::Tensor v = torch::randn({of.dim()});
  EXPECT_LT(relative(f32.apply(v), a32.apply(v)), 2e-2);
}

TEST(HessianOperator, SkipsFrozenAndUnusedParametersWithoutCrashing) {
  torch::manual_seed(4);
  PartlyFrozen net;
  data::Dataset d{torch::randn({30, 1, 2, 3}), torch::randint(0, 3, {30}, torch::kLong), 3};
  const Objective o = Objective::for_model(models::Model(net), d, ObjectiveOptions().batch_size(7));
  ASSERT_EQ(o.parameters().size(), 3u);  // head.weight, head.bias, unused — never the frozen layer
  EXPECT_EQ(o.dim(), 15 + 3 + 4);
  const at::Tensor h = exact_hessian(o);
  MeasurementScope scope(o, false);
  HessianOperator op(o);
  const at::Tensor v = torch::randn({o.dim()});
  const at::Tensor hv = op.apply(v);
  EXPECT_LT(relative(hv, torch::mv(h.to(torch::kFloat), v)), 1e-5);
  size_t unused = 0;
  while (unused < o.parameters().size() && o.parameters()[unused].name != "unused") ++unused;
  ASSERT_LT(unused, o.parameters().size());
  EXPECT_EQ(hv.narrow(0, o.offset(unused), 4).abs().max().item<double>(), 0.0);  // no curvature, no crash
  const TraceResult tr = hutchinson_trace(op, TraceOptions().max_probes(5));
  EXPECT_EQ(tr.layers[unused].name, "unused");
  EXPECT_EQ(tr.layers[unused].trace, 0.0);
  EXPECT_NO_THROW(top_eigenvalues(op, EigenOptions().k(2).max_iterations(22)));
}

TEST(Trace, HutchinsonIsWithinItsReportedErrorAndPerLayerTracesSumToTheTotal) {
  TinyMlp t = tiny_mlp(5);
  const Objective o = Objective::for_model(t.model, t.data, ObjectiveOptions().batch_size(32));
  const at::Tensor h = exact_hessian(o);
  const double exact = h.trace().item<double>();
  const TraceResult r = hutchinson_trace(o, TraceOptions().rel_tol(0.02).seed(11));
  ASSERT_GT(r.std_error, 0);
  EXPECT_LE(std::abs(r.trace - exact), 3 * r.std_error) << r.trace << " ± " << r.std_error << " vs " << exact;
  EXPECT_EQ(r.hvps, r.probes);
  EXPECT_GE(r.probes, 10);
  if (r.converged) EXPECT_LE(r.std_error, 0.02 * std::abs(r.trace));
  else EXPECT_EQ(r.probes, 100);
  EXPECT_NEAR(r.probe_std / std::sqrt(static_cast<double>(r.probes)), r.std_error, 1e-12);
  // Per parameter tensor: the same probes, so the blocks add up to the total exactly, and each estimates
  // the trace of its diagonal block.
  ASSERT_EQ(r.layers.size(), 4u);
  double sum = 0;
  int64_t offset = 0;
  for (const auto& layer : r.layers) {
    sum += layer.trace;
    const double block = h.diagonal().narrow(0, offset, layer.numel).sum().item<double>();
    EXPECT_LE(std::abs(layer.trace - block), 4 * layer.std_error + 1e-12) << layer.name;
    offset += layer.numel;
  }
  EXPECT_NEAR(sum, r.trace, 1e-10 * std::abs(r.trace));
  EXPECT_EQ(r.layers[0].name, "fc1.weight");
  EXPECT_EQ(r.layers[0].numel, 160);

  // Deterministic: the same seed, the same probes, the same answer.
  const TraceResult again = hutchinson_trace(o, TraceOptions().rel_tol(0.02).seed(11));
  EXPECT_EQ(again.trace, r.trace);
  EXPECT_EQ(again.probes, r.probes);
  EXPECT_NE(hutchinson_trace(o, TraceOptions().rel_tol(0.02).seed(12)).trace, r.trace);
  // More probes, smaller error.
  const TraceResult many = hutchinson_trace(o, TraceOptions().rel_tol(0).max_probes(400).seed(11));
  EXPECT_LE(std::abs(many.trace - exact), 3 * many.std_error);
  EXPECT_LT(many.std_error, r.std_error);
  EXPECT_FALSE(many.converged);
}

TEST(Trace, PyHessianRuleIsAvailableByName) {
  TinyMlp t = tiny_mlp(6);
  const Objective o = Objective::for_model(t.model, t.data);
  const TraceResult r = hutchinson_trace(o, TraceOptions().stop_rule(TraceStopRule::kPyHessianChange).rel_tol(1e-3));
  EXPECT_GE(r.probes, 2);
  EXPECT_LE(r.probes, 100);
}

TEST(Trace, HutchppIsExactOnLowRankAndAccurateOnTheMlp) {
  // Rank 5 in dimension 40: a sketch of 10 columns captures the whole range, the remainder is 0.
  std::vector<double> values(40, 0.0);
  for (int i = 0; i < 5; ++i) values[i] = 1.0 + i;
  const Quadratic q = quadratic(with_eigenvalues(values, 7), torch::randn({40}, torch::kDouble));
  const TraceResult r = hutchpp_trace(q.objective, HutchppOptions().hvps(30));
  EXPECT_NEAR(r.trace, 15.0, 1e-9);
  EXPECT_EQ(r.hvps, 30);

  TinyMlp t = tiny_mlp(7);
  const Objective o = Objective::for_model(t.model, t.data);
  const double exact = exact_hessian(o).trace().item<double>();
  const TraceResult pp = hutchpp_trace(o, HutchppOptions().hvps(90).seed(3));
  EXPECT_LE(std::abs(pp.trace - exact), 3 * pp.std_error + 1e-9 * std::abs(exact));
}

TEST(Eigen, TopFiveMatchTheExactSpectrumWithin1e3) {
  TinyMlp t = tiny_mlp(8);
  const Objective o = Objective::for_model(t.model, t.data, ObjectiveOptions().batch_size(40));
  const std::vector<double> exact = exact_eigenvalues(exact_hessian(o));
  const EigenResult r = top_eigenvalues(o, EigenOptions().k(5).vectors(true));
  ASSERT_TRUE(r.converged);
  ASSERT_EQ(r.values.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(r.values[i], exact[i], 1e-3 * std::abs(exact[i])) << "λ" << i + 1;
    EXPECT_LE(r.residuals[i], 1e-3 * std::abs(r.values[i]) + 1e-12);
  }
  EXPECT_LT(r.iterations, 100);
  EXPECT_EQ(r.hvps, r.iterations + 5);  // Lanczos steps + one verification product per value
  // Eigenvectors: unit, orthogonal, and H v = λ v.
  MeasurementScope scope(o, false);
  HessianOperator op(o);
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(r.vectors[i].norm().item<double>(), 1.0, 1e-10);
    for (int j = 0; j < i; ++j) EXPECT_LT(std::abs(torch::dot(r.vectors[i], r.vectors[j]).item<double>()), 1e-6);
    EXPECT_LT((op.apply(r.vectors[i]) - r.values[i] * r.vectors[i]).norm().item<double>(), 1e-3 * r.values[i]);
  }
}

TEST(Eigen, OrderByValueOrMagnitudeAndExactOnInvariantSubspaces) {
  std::vector<double> values{-10.0, 5.0, 3.0, 1.0, 0.5, -0.25, 0.1, 0.0};
  const Quadratic q = quadratic(with_eigenvalues(values, 9), torch::randn({8}, torch::kDouble));
  const EigenResult largest = top_eigenvalues(q.objective, EigenOptions().k(2).tol(1e-8));
  EXPECT_NEAR(largest.values[0], 5.0, 1e-8);
  EXPECT_NEAR(largest.values[1], 3.0, 1e-8);
  const EigenResult magnitude =
      top_eigenvalues(q.objective, EigenOptions().k(2).tol(1e-8).order(EigenOrder::kLargestMagnitude));
  EXPECT_NEAR(magnitude.values[0], -10.0, 1e-8);
  EXPECT_NEAR(magnitude.values[1], 5.0, 1e-8);
  EXPECT_TRUE(magnitude.converged);
  EXPECT_LE(magnitude.iterations, 8);
  EXPECT_THROW(top_eigenvalues(q.objective, EigenOptions().k(9)), flatmin::Error);
}

TEST(Density, MassIsOneWeightsSumToOneAndTheGridCoversTheSpectrum) {
  TinyMlp t = tiny_mlp(9);
  const Objective o = Objective::for_model(t.model, t.data);
  const std::vector<double> exact = exact_eigenvalues(exact_hessian(o));
  const DensityResult d = spectral_density(o, DensityOptions().runs(2).iterations(80).grid_points(2000));
  ASSERT_EQ(d.nodes.size(), 2u);
  for (size_t run = 0; run < 2; ++run) {
    double w = 0;
    for (double x : d.weights[run]) w += x;
    EXPECT_NEAR(w, 1.0, 1e-10);
    for (double node : d.nodes[run]) {
      EXPECT_GE(node, exact.back() - 1e-8);
      EXPECT_LE(node, exact.front() + 1e-8);
    }
  }
  EXPECT_NEAR(d.mass, 1.0, 1e-3);
  EXPECT_LE(d.grid.front(), exact.back());
  EXPECT_GE(d.grid.back(), exact.front());
  EXPECT_EQ(d.hvps, 160);
  for (double x : d.density) EXPECT_GE(x, 0.0);

  // With as many steps as dimensions the quadrature nodes are the exact eigenvalues.
  std::vector<double> values{4.0, 2.5, 2.0, 1.0, 0.5, 0.25, -0.5, -1.5};
  const Quadratic q = quadratic(with_eigenvalues(values, 10), torch::randn({8}, torch::kDouble));
  const DensityResult exact_d = spectral_density(q.objective, DensityOptions().iterations(50));
  std::vector<double> nodes = exact_d.nodes[0];
  std::sort(nodes.rbegin(), nodes.rend());
  ASSERT_EQ(nodes.size(), values.size());
  for (size_t i = 0; i < nodes.size(); ++i) EXPECT_NEAR(nodes[i], values[i], 1e-9);
}

TEST(Gradient, NormPerLayerAndNormalizedTrace) {
  TinyMlp t = tiny_mlp(10);
  const Objective o = Objective::for_model(t.model, t.data, ObjectiveOptions().batch_size(10));
  const GradientResult g = gradient(o);
  // Reference: one backward over the whole mean loss in eval mode.
  t.model->eval();
  t.model->zero_grad();
  torch::nn::functional::cross_entropy(t.model(t.data.inputs), t.data.targets).backward();
  double norm2 = 0;
  for (const auto& p : t.model->parameters()) norm2 += p.grad().pow(2).sum().item<double>();
  EXPECT_NEAR(g.norm, std::sqrt(norm2), 1e-12);
  double layers = 0;
  for (double n : g.layer_norms) layers += n * n;
  EXPECT_NEAR(layers, g.norm * g.norm, 1e-12);
  EXPECT_EQ(g.names.front(), "fc1.weight");

  TraceResult trace;
  trace.trace = 3.0;
  trace.std_error = 0.3;
  const auto [c, c_se] = normalized_trace(trace, g);
  EXPECT_NEAR(c, 3.0 / norm2, 1e-9 * c);
  EXPECT_NEAR(c_se, 0.3 / norm2, 1e-9 * c);
}

TEST(Scalars, MeasureScalarsReturnsNamedValuesConsistentWithTheEstimators) {
  TinyMlp t = tiny_mlp(11, 120);
  const auto scalars =
      measure_scalars(t.model, t.data, ScalarOptions().max_examples(100).batch_size(50).max_probes(40).seed(2));
  std::vector<std::string> names;
  for (const auto& [name, value] : scalars) names.push_back(name);
  const std::vector<std::string> expected{"loss", "grad_norm", "hessian_trace", "hessian_trace_se",
                                          "hessian_trace_probes", "normalized_trace", "lambda1", "lambda1_residual"};
  EXPECT_EQ(names, expected);
  auto get = [&](const std::string& name) {
    for (const auto& [n, v] : scalars)
      if (n == name) return v;
    return std::nan("");
  };
  const data::Dataset sample = sample_examples(t.data, 100, 2);
  const Objective o = Objective::for_model(t.model, sample);
  const at::Tensor h = exact_hessian(o);
  EXPECT_NEAR(get("loss"), o.value(), 1e-12);
  EXPECT_LE(std::abs(get("hessian_trace") - h.trace().item<double>()), 3 * get("hessian_trace_se"));
  EXPECT_NEAR(get("lambda1"), exact_eigenvalues(h).front(), 1e-2 * exact_eigenvalues(h).front());
  EXPECT_NEAR(get("normalized_trace"), get("hessian_trace") / (get("grad_norm") * get("grad_norm")), 1e-9);

  const ScalarOptions only = ScalarOptions::from_names("trace,grad_norm");
  EXPECT_TRUE(only.trace() && only.grad_norm() && !only.lambda1() && !only.normalized_trace());
  EXPECT_THROW(ScalarOptions::from_names("trace,sharpness"), flatmin::Error);
  EXPECT_EQ(measure_scalars(t.model, t.data, ScalarOptions::from_names("grad_norm")).size(), 2u);
  // scalar_names announces exactly the columns measure_scalars fills, for every subset.
  for (const char* names : {"all", "trace", "lambda1", "normalized_trace", "grad_norm", "trace,lambda1",
                            "normalized_trace,grad_norm"}) {
    const ScalarOptions o = ScalarOptions::from_names(names).max_probes(3).lanczos_iterations(5);
    std::vector<std::string> measured;
    for (const auto& [name, value] : measure_scalars(t.model, t.data, o)) measured.push_back(name);
    EXPECT_EQ(measured, scalar_names(o)) << names;
  }
}

TEST(Objective, RejectsWhatItCannotMeasure) {
  at::Tensor frozen = torch::randn({3});
  EXPECT_THROW(Objective({{"w", frozen}}, [frozen] { return frozen.sum(); }), flatmin::Error);
  at::Tensor w = torch::randn({3}, torch::requires_grad());
  const Objective closure({{"w", w}}, [w] { return (w * w).sum(); });
  EXPECT_FALSE(closure.has_example_loss());
  EXPECT_THROW(closure.example(0), flatmin::Error);
  EXPECT_THROW(closure.unflatten(torch::zeros({4})), flatmin::Error);
  EXPECT_NEAR(hutchinson_trace(closure, TraceOptions().max_probes(3)).trace, 6.0, 1e-6);  // H = 2I: every probe exact
}

}  // namespace hessian_test
