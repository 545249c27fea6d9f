#include "flatmin/geometry/perturbation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <tuple>

#include <torch/autograd.h>
#include <torch/nn/module.h>
#include <torch/utils.h>

#include "flatmin/core/error.h"
#include "internal.h"

namespace flatmin::geometry {
namespace {

using namespace detail;

// The stream of per-example probe seeds (the `draw` argument of noise_key).
constexpr uint64_t kExampleProbeStream = 7;

}  // namespace

// ------------------------------------------------------------------------------------ perturbation gap

GapResult perturbation_gap(const Objective& objective, const GapOptions& options) {
  check(!options.sigmas().empty(), "perturbation gap: no sigma given");
  for (double s : options.sigmas())
    check(s >= 0 && std::isfinite(s), "perturbation gap: sigma must be finite and >= 0, got " + fmt("%g", s));
  check(options.draws() >= 2, "perturbation gap: draws must be >= 2");
  const auto t0 = Clock::now();
  GapResult r;
  r.draws = options.draws();
  r.law = noise::to_string(options.law());
  r.antithetic = options.antithetic() && noise::is_mean_zero(options.law());
  if (std::isnan(options.trace())) {
    const TraceResult trace = hutchinson_trace(objective, options.trace_options());
    r.trace = trace.trace;
    r.trace_std_error = trace.std_error;
  } else {
    r.trace = options.trace();
    r.trace_std_error = options.trace_std_error();
  }

  MeasurementScope scope(objective);  // eval mode; W restored by copy at the end, even on an exception
  const auto& anchor = scope.anchor();
  const auto& params = objective.parameters();
  r.loss = objective.value();
  Progress* progress = options.progress();
  const int64_t total = static_cast<int64_t>(options.sigmas().size()) * options.draws();
  if (progress) progress->start("perturbation gap", total);
  int64_t done = 0;
  for (double sigma : options.sigmas()) {
    Running gaps;
    for (int64_t j = 0; j < options.draws(); ++j) {
      {
        torch::NoGradGuard no_grad;
        for (size_t t = 0; t < params.size(); ++t) {
          at::Tensor p = params[t].tensor.data();
          // The same unit draw for every σ: common random numbers across the rows.
          noise::add_noise_(p, anchor[t], options.law(), sigma, noise::noise_key(options.seed(), 0, j, t));
        }
      }
      const double plus = objective.value();
      double gap = plus - r.loss;
      if (r.antithetic) {
        {
          torch::NoGradGuard no_grad;
          for (size_t t = 0; t < params.size(); ++t) params[t].tensor.data().mul_(-1).add_(anchor[t], 2);  // 2W − (W+U)
        }
        gap = 0.5 * (plus + objective.value()) - r.loss;
      }
      gaps.add(gap);
      if (progress) progress->update(++done, "σ " + fmt("%.4g", sigma));
    }
    scope.restore_parameters();
    GapRow row;
    row.sigma = sigma;
    row.gap = gaps.mean;
    row.gap_std = gaps.std();
    row.gap_std_error = gaps.std_error();  // draws >= 2
    row.predicted = 0.5 * sigma * sigma * r.trace;
    row.predicted_std_error = 0.5 * sigma * sigma * r.trace_std_error;
    row.relative_error = row.gap != 0 ? (row.predicted - row.gap) / row.gap : std::numeric_limits<double>::infinity();
    const double se = std::hypot(row.gap_std_error, row.predicted_std_error);
    row.z = se > 0 ? (row.gap - row.predicted) / se : 0.0;
    r.rows.push_back(row);
  }

  double residual = 0, gap_squares = 0, relative_squares = 0, gap_s2 = 0, s4 = 0;
  for (const auto& row : r.rows) {
    residual += (row.gap - row.predicted) * (row.gap - row.predicted);
    gap_squares += row.gap * row.gap;
    relative_squares += row.relative_error * row.relative_error;
    gap_s2 += row.gap * row.sigma * row.sigma;
    s4 += std::pow(row.sigma, 4);
  }
  r.effective_trace = s4 > 0 ? 2 * gap_s2 / s4 : std::numeric_limits<double>::quiet_NaN();
  r.rss_absolute = residual;
  r.rss = gap_squares > 0 ? residual / gap_squares : std::numeric_limits<double>::infinity();
  r.rms_relative_error = std::sqrt(relative_squares / static_cast<double>(r.rows.size()));

  // Say plainly where the quadratic model σ²/2·Tr cannot be trusted.
  if (!(r.trace > 0))
    r.warnings.push_back("Tr∇²f = " + fmt("%.4g", r.trace) +
                         " is not positive: the quadratic approximation predicts no gap (W is not near a minimum of "
                         "this loss, or the trace estimate is noise)");
  else if (r.trace_std_error > 0.2 * r.trace)
    r.warnings.push_back("the trace is poorly resolved (standard error " + fmt("%.0f", 100 * r.trace_std_error / r.trace) +
                         "% of it): the predictions carry that error");
  if (r.loss < 1e-2)
    r.warnings.push_back("f(W) = " + fmt("%.3g", r.loss) +
                         " is near zero: the curvature at W is small and higher-order terms dominate the gap; the "
                         "quadratic approximation is unreliable here");
  std::vector<const GapRow*> off;  // rows where σ²/2·Tr misses the gap by > 10%, beyond sampling error
  for (const auto& row : r.rows) {
    if (row.gap_std_error > 0.25 * std::abs(row.gap))
      r.warnings.push_back("σ = " + fmt("%.4g", row.sigma) + ": the gap is not resolved from sampling noise (standard error " +
                           fmt("%.2g", row.gap_std_error) + " vs gap " + fmt("%.2g", row.gap) + "); raise the draws");
    else if (std::abs(row.relative_error) > 0.1 && std::abs(row.z) > 3)
      off.push_back(&row);
  }
  if (!off.empty()) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (const GapRow* row : off) {
      lo = std::min(lo, row->relative_error);
      hi = std::max(hi, row->relative_error);
    }
    std::string where = "σ = " + fmt("%.4g", off.front()->sigma);
    if (off.size() > 1) where += " … " + fmt("%.4g", off.back()->sigma);
    std::string text = "σ²/2·Tr misses the measured gap by " + fmt("%+.1f", 100 * lo) + "% … " + fmt("%+.1f", 100 * hi) +
                       "% at " + where + " (beyond sampling error): the quadratic approximation fails there";
    const double mean = 0.5 * (std::abs(lo) + std::abs(hi));
    if (off.size() >= 3 && hi - lo < 0.25 * mean && (lo > 0) == (hi > 0))
      text += "; the error hardly changes with σ, so it is a σ² term the Hessian at W lacks (e.g. ReLU kinks, where "
              "autograd's second derivative is 0; effective trace 2·gap/σ² = " + fmt("%.4g", r.effective_trace) +
              "), not higher-order terms, which would grow with σ";
    r.warnings.push_back(text);
  }
  r.seconds = seconds_since(t0);
  return r;
}

// ------------------------------------------------------------------------------ SAM approximation ratio

AscentRatioResult sam_approximation_ratio(const Objective& objective, const AscentRatioOptions& options) {
  check(objective.has_example_loss(), "approximation ratio: needs per-example losses (Objective::for_model)");
  check(options.rho() > 0 && std::isfinite(options.rho()), "approximation ratio: rho must be > 0");
  check(options.steps() >= 1, "approximation ratio: steps must be >= 1");
  check(options.step_size() >= 0 && std::isfinite(options.step_size()), "approximation ratio: step size must be >= 0");
  const auto t0 = Clock::now();
  MeasurementScope scope(objective);
  const auto& anchor = scope.anchor();
  const auto& params = objective.parameters();
  std::vector<at::Tensor> tensors;
  for (const auto& p : params) tensors.push_back(p.tensor);
  const double rho = options.rho();
  const double eta = options.step_size() > 0 ? options.step_size() : 0.5 * rho;

  auto move_to = [&](const at::Tensor& delta) {  // W ← W₀ + δ
    torch::NoGradGuard no_grad;
    const std::vector<at::Tensor> pieces = objective.unflatten(delta);
    for (size_t t = 0; t < params.size(); ++t) params[t].tensor.data().copy_(anchor[t]).add_(pieces[t]);
  };
  auto loss_and_gradient = [&](const Objective& one) -> std::pair<double, at::Tensor> {
    torch::AutoGradMode grad_mode(true);
    const at::Tensor loss = one.batch_loss(0);
    if (!loss.requires_grad()) return {loss.item<double>(), at::zeros({objective.dim()}, objective.tensor_options())};
    const auto grads = torch::autograd::grad({loss}, tensors, {}, false, false, /*allow_unused=*/true);
    return {loss.item<double>(), objective.flatten(grads)};
  };

  AscentRatioResult r;
  Running ratios, one_step, best_step;
  const int64_t n = objective.num_examples();
  if (options.progress()) options.progress()->start("approximation ratio", n);
  for (int64_t i = 0; i < n; ++i) {
    const Objective one = objective.example(i);
    scope.restore_parameters();
    double loss0 = 0, loss1 = 0;
    at::Tensor g;
    std::tie(loss0, g) = loss_and_gradient(one);
    double gnorm = g.norm().item<double>();
    if (!(gnorm > 0)) {
      ++r.skipped;
      continue;
    }
    at::Tensor delta = g * (rho / gnorm);  // δ₁: SAM's one step
    move_to(delta);
    std::tie(loss1, g) = loss_and_gradient(one);
    gnorm = g.norm().item<double>();
    double best = loss1;
    for (int64_t s = 0; s < options.steps() && gnorm > 0; ++s) {
      delta.add_(g, eta / gnorm);
      const double dn = delta.norm().item<double>();
      if (dn > rho) delta.mul_(rho / dn);
      move_to(delta);
      if (s + 1 < options.steps()) {
        auto [loss, grad] = loss_and_gradient(one);
        best = std::max(best, loss);
        g = grad;
        gnorm = g.norm().item<double>();
        if (!(gnorm > 0)) break;
      } else {
        best = std::max(best, one.value());
      }
    }
    const double increase1 = loss1 - loss0, increase = best - loss0;
    if (!(increase >= options.min_increase())) {
      ++r.skipped;
      continue;
    }
    ratios.add(increase1 / increase);
    one_step.add(increase1);
    best_step.add(increase);
    if (options.progress())
      options.progress()->update(i + 1, "AR " + fmt("%.4f", ratios.mean));
  }
  scope.restore_parameters();
  r.points = ratios.n;
  r.ratio = ratios.n > 0 ? ratios.mean : std::numeric_limits<double>::quiet_NaN();
  r.ratio_std = ratios.std();
  r.ratio_std_error = ratios.n > 1 ? ratios.std_error() : 0.0;
  r.one_step_increase = one_step.mean;
  r.best_increase = best_step.mean;
  r.seconds = seconds_since(t0);
  return r;
}

// ------------------------------------------------------------------------------- per-example traces

SampleTraces per_example_traces(const Objective& objective, const SampleTraceOptions& options) {
  check(objective.has_example_loss(), "per-example traces: needs per-example losses (Objective::for_model)");
  check(objective.num_examples() >= 1, "per-example traces: no examples");
  check(options.probes() >= 2, "per-example traces: probes must be >= 2 (for a standard error)");
  const auto t0 = Clock::now();
  MeasurementScope scope(objective, /*snapshot_parameters=*/false);
  check(options.refine_top() >= 0 && options.refine_probes() >= 0, "per-example traces: refinement must be >= 0");
  SampleTraces r;
  const int64_t n = objective.num_examples();
  const int64_t refine = std::min(options.refine_top(), n);
  const int64_t refine_probes = options.refine_probes() > 0 ? options.refine_probes() : 10 * options.probes();
  auto estimate = [&](int64_t i, int64_t probes, uint64_t round) {
    const Objective one = objective.example(i);
    HessianOperator hessian(one);
    return hutchinson_trace(hessian, TraceOptions()
                                         .max_probes(probes)
                                         .min_probes(probes)
                                         .rel_tol(0)
                                         .seed(noise::noise_key(options.seed(), static_cast<uint64_t>(i),
                                                                kExampleProbeStream, round)));
  };
  if (options.progress()) options.progress()->start("per-example traces", n + refine);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const TraceResult t = estimate(i, options.probes(), 0);
    r.traces.push_back(t.trace);
    r.std_errors.push_back(t.std_error);
    sum += t.trace;
    if (options.progress()) options.progress()->update(i + 1, "mean " + fmt("%.4g", sum / static_cast<double>(i + 1)));
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  std::partial_sort(order.begin(), order.begin() + refine, order.end(),
                    [&](int64_t a, int64_t b) { return r.traces[static_cast<size_t>(a)] > r.traces[static_cast<size_t>(b)]; });
  for (int64_t k = 0; k < refine; ++k) {
    const int64_t i = order[static_cast<size_t>(k)];
    const TraceResult t = estimate(i, refine_probes, 1);  // fresh probes: free of the selection bias
    r.traces[static_cast<size_t>(i)] = t.trace;
    r.std_errors[static_cast<size_t>(i)] = t.std_error;
    if (options.progress()) options.progress()->update(n + k + 1, "refining the largest");
  }
  Running all;
  r.max = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < n; ++i) {
    all.add(r.traces[static_cast<size_t>(i)]);
    if (r.traces[static_cast<size_t>(i)] > r.max) {
      r.max = r.traces[static_cast<size_t>(i)];
      r.max_std_error = r.std_errors[static_cast<size_t>(i)];
      r.max_index = i;
    }
  }
  r.mean = all.mean;
  r.mean_std_error = all.n > 1 ? all.std_error() : 0.0;
  r.seconds = seconds_since(t0);
  return r;
}

// -------------------------------------------------------------------------------------- PAC-Bayes

double parameter_distance(const torch::nn::Module& model, const torch::nn::Module& reference) {
  torch::NoGradGuard no_grad;
  const auto ref = reference.named_parameters(/*recurse=*/true);
  double total = 0;
  for (const auto& p : trainable_parameters(model)) {
    const at::Tensor* r = ref.find(p.name);
    check(r != nullptr, "reference model has no parameter '" + p.name + "'");
    check(r->sizes() == p.tensor.sizes(), "reference parameter '" + p.name + "' differs in shape");
    const double d = (p.tensor.to(at::kDouble) - r->to(p.tensor.device(), at::kDouble)).norm().item<double>();
    total += d * d;
  }
  return std::sqrt(total);
}

PacBayesResult pac_bayes_bound(const PacBayesInputs& in) {
  check(in.n() >= 1, "PAC-Bayes: n must be >= 1");
  check(in.alpha() >= 0 && std::isfinite(in.alpha()), "PAC-Bayes: the trace statistic alpha must be finite and >= 0");
  check(in.radius() >= 0 && std::isfinite(in.radius()), "PAC-Bayes: the radius must be finite and >= 0");
  check(in.loss_bound() > 0 && std::isfinite(in.loss_bound()), "PAC-Bayes: the loss bound C must be > 0");
  check(in.epsilon() >= 0 && std::isfinite(in.epsilon()), "PAC-Bayes: epsilon must be >= 0");
  PacBayesResult r;
  r.complexity = std::sqrt(in.loss_bound() * in.alpha() * in.radius() * in.radius() / static_cast<double>(in.n()));
  r.bound = (1 + in.epsilon()) * in.train_loss() + (1 + in.epsilon()) * r.complexity;
  r.predicted_gap = r.bound - in.train_loss();
  r.observed_gap = in.test_loss() - in.train_loss();
  return r;
}

}  // namespace flatmin::geometry
