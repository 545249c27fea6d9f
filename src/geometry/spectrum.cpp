#include "flatmin/geometry/spectrum.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <numeric>
#include <sstream>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include "flatmin/core/error.h"
#include "flatmin/geometry/perturbation.h"
#include "flatmin/noise/noise.h"
#include "internal.h"

namespace flatmin::geometry {
namespace {

using namespace detail;

// Purposes of the probe streams (the `draw` argument of noise_key), so no two estimators share draws.
enum Stream : uint64_t { kHutchinson = 0, kHutchppSketch = 1, kHutchppResidual = 2, kLanczosStart = 3, kSlqStart = 4 };

/// A flat probe of law `law` (unit variance), keyed by (seed, index, stream).
at::Tensor probe(const Objective& objective, noise::NoiseLaw law, uint64_t seed, int64_t index, Stream stream) {
  at::Tensor v = at::empty({objective.dim()}, objective.tensor_options());
  noise::fill_noise_(v, law, 1.0, noise::noise_key(seed, static_cast<uint64_t>(index), stream, 0));
  return v;
}

double dot_double(const at::Tensor& a, const at::Tensor& b) { return (a * b).sum(at::kDouble).item<double>(); }

/// Eigen-decomposition of the symmetric tridiagonal matrix with diagonal `alpha` and off-diagonal `beta`
/// (beta.size() == alpha.size() − 1): values ascending, vectors as columns, in double.
std::pair<at::Tensor, at::Tensor> tridiagonal_eigh(const std::vector<double>& alpha, const std::vector<double>& beta) {
  const int64_t m = static_cast<int64_t>(alpha.size());
  at::Tensor t = at::zeros({m, m}, at::kDouble);
  auto a = t.accessor<double, 2>();
  for (int64_t i = 0; i < m; ++i) {
    a[i][i] = alpha[static_cast<size_t>(i)];
    if (i + 1 < m) a[i][i + 1] = a[i + 1][i] = beta[static_cast<size_t>(i)];
  }
  auto [values, vectors] = at::linalg_eigh(t);
  return {values.contiguous(), vectors.contiguous()};
}

struct LanczosState {
  std::vector<double> alpha, beta;  ///< T's diagonal and off-diagonal (beta.size() == alpha.size() − 1)
  double last_beta = 0;             ///< β after the last step: residual of Ritz pair i is last_beta·|s_{m,i}|
  at::Tensor basis;                 ///< [max_steps, dim]; rows 0 … steps−1 are the Lanczos vectors
  int64_t steps = 0;
  bool invariant = false;           ///< an invariant subspace was found: the Ritz values are exact
};

/// Lanczos with full reorthogonalisation (classical Gram–Schmidt, twice) from the unit vector q0. After each
/// step, `done(state)` may stop the iteration.
LanczosState lanczos(HessianOperator& hessian, const at::Tensor& q0, int64_t max_steps,
                     const std::function<bool(const LanczosState&)>& done, Progress* progress,
                     int64_t progress_offset) {
  LanczosState s;
  const int64_t m = std::min(max_steps, hessian.dim());
  s.basis = at::empty({m, hessian.dim()}, q0.options());
  s.basis[0].copy_(q0);
  const double eps = q0.scalar_type() == at::kDouble ? 1e-14 : 1e-6;
  double scale = 0;
  for (int64_t j = 0; j < m; ++j) {
    const at::Tensor q = s.basis[j];
    at::Tensor w = hessian.apply(q);
    const double a = dot_double(w, q);
    w.sub_(q, a);
    if (j > 0) w.sub_(s.basis[j - 1], s.beta.back());
    const at::Tensor basis = s.basis.narrow(0, 0, j + 1);
    for (int pass = 0; pass < 2; ++pass) w.sub_(at::mv(basis.t(), at::mv(basis, w)));
    const double b = w.norm().item<double>();
    s.alpha.push_back(a);
    s.steps = j + 1;
    s.last_beta = b;
    scale = std::max({scale, std::abs(a), b});
    if (progress) progress->update(progress_offset + j + 1);
    if (b <= eps * std::max(scale, 1e-300)) {
      s.invariant = true;
      s.last_beta = 0;
      break;
    }
    if (done && done(s)) break;
    if (j + 1 < m) {
      s.basis[j + 1].copy_(w / b);
      s.beta.push_back(b);
    }
  }
  if (s.steps == hessian.dim()) s.invariant = true;  // the whole space: exact
  return s;
}

struct RitzSelection {
  std::vector<double> values;
  std::vector<int64_t> columns;  ///< columns of the tridiagonal eigenvector matrix
  std::vector<double> residuals;
};

RitzSelection select_ritz(const at::Tensor& values, const at::Tensor& vectors, int64_t k, EigenOrder order,
                          double last_beta) {
  const int64_t m = values.size(0);
  std::vector<int64_t> index(static_cast<size_t>(m));
  std::iota(index.begin(), index.end(), 0);
  const double* v = values.data_ptr<double>();
  if (order == EigenOrder::kLargest)
    std::sort(index.begin(), index.end(), [&](int64_t a, int64_t b) { return v[a] > v[b]; });
  else
    std::sort(index.begin(), index.end(), [&](int64_t a, int64_t b) { return std::abs(v[a]) > std::abs(v[b]); });
  RitzSelection r;
  auto s = vectors.accessor<double, 2>();
  for (int64_t i = 0; i < std::min(k, m); ++i) {
    const int64_t c = index[static_cast<size_t>(i)];
    r.values.push_back(v[c]);
    r.columns.push_back(c);
    r.residuals.push_back(std::abs(last_beta * s[m - 1][c]));
  }
  return r;
}

bool residuals_converged(const std::vector<double>& values, const std::vector<double>& residuals, double tol) {
  if (values.empty()) return false;
  double top = 0;
  for (double v : values) top = std::max(top, std::abs(v));
  for (size_t i = 0; i < values.size(); ++i)
    if (!(residuals[i] <= tol * std::max(std::abs(values[i]), 1e-3 * top))) return false;
  return true;
}

}  // namespace

// ------------------------------------------------------------------------------------------------ trace

TraceResult hutchinson_trace(HessianOperator& hessian, const TraceOptions& options) {
  check(options.max_probes() >= 1, "trace: max probes must be >= 1");
  check(options.min_probes() >= 1, "trace: min probes must be >= 1");
  check(options.rel_tol() >= 0 && std::isfinite(options.rel_tol()), "trace: relative tolerance must be >= 0");
  const auto t0 = Clock::now();
  const Objective& objective = hessian.objective();
  const size_t layers = objective.parameters().size();
  const int64_t products_before = hessian.products();
  std::vector<Running> layer_stats(layers);
  Running total;
  TraceResult r;
  if (options.progress()) options.progress()->start("trace", options.max_probes());
  double previous_mean = 0;
  const ProbeSplit& split = options.split();
  check(split.size >= 1 && split.rank >= 0 && split.rank < split.size && (split.size == 1 || split.sum),
        "trace: invalid probe split");
  bool stop = false;
  // Rounds of `size` probes: each process computes one, the sum gathers them all, and the rule then reads
  // them in probe order, as one process would have.
  for (int64_t base = 0; base < options.max_probes() && !stop; base += split.size) {
    const int64_t count = std::min<int64_t>(split.size, options.max_probes() - base);
    at::Tensor values = at::zeros({count, static_cast<int64_t>(layers)}, at::kDouble);
    if (split.rank < count) {
      const at::Tensor v = probe(objective, noise::NoiseLaw::kRademacher, options.seed(), base + split.rank, kHutchinson);
      const at::Tensor vhv = v * hessian.apply(v);
      for (size_t t = 0; t < layers; ++t)
        values[split.rank][static_cast<int64_t>(t)] =
            vhv.narrow(0, objective.offset(t), objective.parameters()[t].tensor.numel()).sum(at::kDouble).item<double>();
    }
    if (split.size > 1) split.sum({values});
    const auto value = values.accessor<double, 2>();
    for (int64_t q = 0; q < count && !stop; ++q) {
      const int64_t p = base + q;
      double sum = 0;
      for (size_t t = 0; t < layers; ++t) {
        const double x = value[q][static_cast<int64_t>(t)];
        layer_stats[t].add(x);
        sum += x;
      }
      total.add(sum);
      if (options.progress()) {
        std::string status = "Tr " + fmt("%.5g", total.mean) + " ± " + fmt("%.2g", total.std_error());
        if (total.n >= 2 && options.stop_rule() == TraceStopRule::kStandardError && options.rel_tol() > 0 &&
            total.mean != 0) {
          // SE ∝ 1/√n: the probes the target needs at the current spread.
          const double ratio = total.std_error() / (options.rel_tol() * std::abs(total.mean));
          status += " (~" + fmt("%.0f", std::ceil(static_cast<double>(total.n) * ratio * ratio)) + " probes to the target)";
        }
        options.progress()->update(p + 1, status);
      }
      if (options.stop_rule() == TraceStopRule::kStandardError) {
        stop = total.n >= options.min_probes() && total.n >= 2 &&
               total.std_error() <= options.rel_tol() * std::abs(total.mean);
      } else if (p > 0) {  // PyHessian: |mean_new − mean_old| / (|mean_old| + 1e-6) < tol
        stop = std::abs(total.mean - previous_mean) / (std::abs(previous_mean) + 1e-6) < options.rel_tol();
      }
      previous_mean = total.mean;
    }
  }
  r.converged = stop;
  r.trace = total.mean;
  r.std_error = total.n > 1 ? total.std_error() : std::numeric_limits<double>::quiet_NaN();
  r.probe_std = total.std();
  r.probes = total.n;
  r.hvps = hessian.products() - products_before;
  for (size_t t = 0; t < layers; ++t)
    r.layers.push_back({objective.parameters()[t].name, objective.parameters()[t].tensor.numel(), layer_stats[t].mean,
                        total.n > 1 ? layer_stats[t].std_error() : std::numeric_limits<double>::quiet_NaN()});
  r.seconds = seconds_since(t0);
  return r;
}

TraceResult hutchinson_trace(const Objective& objective, const TraceOptions& options) {
  MeasurementScope scope(objective, /*snapshot_parameters=*/false);
  HessianOperator hessian(objective, options.hvp());
  return hutchinson_trace(hessian, options);
}

TraceResult hutchpp_trace(const Objective& objective, const HutchppOptions& options) {
  MeasurementScope scope(objective, /*snapshot_parameters=*/false);
  HessianOperator hessian(objective, options.hvp());
  return hutchpp_trace(hessian, options);
}

TraceResult hutchpp_trace(HessianOperator& hessian, const HutchppOptions& options) {
  check(options.hvps() >= 3, "Hutch++: needs at least 3 Hessian-vector products");
  const auto t0 = Clock::now();
  const Objective& objective = hessian.objective();
  const int64_t products_before = hessian.products();
  const int64_t sketch = std::min<int64_t>(options.hvps() / 3, objective.dim());
  const int64_t remainder = options.hvps() - 2 * sketch;
  Progress* progress = options.progress();
  if (progress) progress->start("Hutch++", options.hvps());
  int64_t done = 0;
  // Q = orth(H·S), S Rademacher [dim, sketch].
  at::Tensor y = at::empty({objective.dim(), sketch}, objective.tensor_options());
  for (int64_t i = 0; i < sketch; ++i) {
    y.select(1, i).copy_(hessian.apply(probe(objective, noise::NoiseLaw::kRademacher, options.seed(), i, kHutchppSketch)));
    if (progress) progress->update(++done);
  }
  const at::Tensor q = std::get<0>(at::linalg_qr(y, "reduced")).contiguous();
  double top = 0;
  for (int64_t i = 0; i < sketch; ++i) {
    const at::Tensor qi = q.select(1, i).contiguous();
    top += dot_double(qi, hessian.apply(qi));
    if (progress) progress->update(++done);
  }
  // Hutchinson on the deflated operator (I − QQᵀ)H(I − QQᵀ).
  Running rest;
  for (int64_t j = 0; j < remainder; ++j) {
    at::Tensor v = probe(objective, noise::NoiseLaw::kRademacher, options.seed(), j, kHutchppResidual);
    v.sub_(at::mv(q, at::mv(q.t(), v)));
    rest.add(dot_double(v, hessian.apply(v)));
    if (progress) progress->update(++done);
  }
  TraceResult r;
  r.trace = top + rest.mean;
  r.std_error = rest.n > 1 ? rest.std_error() : 0.0;
  r.probe_std = rest.std();
  r.probes = rest.n;
  r.hvps = hessian.products() - products_before;
  r.converged = true;
  r.seconds = seconds_since(t0);
  return r;
}

// ------------------------------------------------------------------------------------------ eigenvalues

EigenResult top_eigenvalues(HessianOperator& hessian, const EigenOptions& options) {
  check(options.k() >= 1, "eigenvalues: k must be >= 1");
  check(options.k() <= hessian.dim(), "eigenvalues: k = " + std::to_string(options.k()) + " exceeds the dimension " +
                                          std::to_string(hessian.dim()));
  check(options.max_iterations() >= 1, "eigenvalues: max iterations must be >= 1");
  check(options.tol() > 0 && std::isfinite(options.tol()), "eigenvalues: tolerance must be > 0");
  const auto t0 = Clock::now();
  const int64_t products_before = hessian.products();
  const Objective& objective = hessian.objective();
  const int64_t k = options.k();
  const int64_t max_steps = std::min(std::max(options.max_iterations(), k), hessian.dim());
  const int64_t min_steps = std::min(max_steps, std::max<int64_t>(2 * k, 10));
  at::Tensor q0 = probe(objective, noise::NoiseLaw::kRademacher, options.seed(), 0, kLanczosStart);
  q0.div_(q0.norm());
  if (options.progress()) options.progress()->start("eigenvalues (Lanczos)", max_steps);
  bool lanczos_converged = false;
  auto done = [&](const LanczosState& s) {
    if (s.steps < min_steps || s.steps < k) return false;
    const auto [values, vectors] = tridiagonal_eigh(s.alpha, s.beta);
    const RitzSelection sel = select_ritz(values, vectors, k, options.order(), s.last_beta);
    lanczos_converged = residuals_converged(sel.values, sel.residuals, options.tol());
    return lanczos_converged;
  };
  LanczosState s = lanczos(hessian, q0, max_steps, done, options.progress(), 0);
  const auto [values, vectors] = tridiagonal_eigh(s.alpha, s.beta);
  const RitzSelection sel = select_ritz(values, vectors, k, options.order(), s.last_beta);
  EigenResult r;
  r.values = sel.values;
  r.residuals = sel.residuals;
  r.iterations = s.steps;
  r.converged = s.invariant || lanczos_converged || residuals_converged(sel.values, sel.residuals, options.tol());
  if (options.verify() || options.vectors()) {
    const at::Tensor basis = s.basis.narrow(0, 0, s.steps);
    for (size_t i = 0; i < sel.columns.size(); ++i) {
      const at::Tensor coefficients = vectors.select(1, sel.columns[i]).to(basis.scalar_type());
      at::Tensor y = at::mv(basis.t(), coefficients);
      y.div_(y.norm());
      if (options.verify()) {
        r.residuals[i] = (hessian.apply(y) - y * sel.values[i]).norm().item<double>();
      }
      if (options.vectors()) r.vectors.push_back(y);
    }
    if (options.verify()) r.converged = residuals_converged(r.values, r.residuals, options.tol());
  }
  r.hvps = hessian.products() - products_before;
  r.seconds = seconds_since(t0);
  return r;
}

EigenResult top_eigenvalues(const Objective& objective, const EigenOptions& options) {
  MeasurementScope scope(objective, /*snapshot_parameters=*/false);
  HessianOperator hessian(objective, options.hvp());
  return top_eigenvalues(hessian, options);
}

// ---------------------------------------------------------------------------------------------- density

DensityResult spectral_density(const Objective& objective, const DensityOptions& options) {
  MeasurementScope scope(objective, /*snapshot_parameters=*/false);
  HessianOperator hessian(objective, options.hvp());
  return spectral_density(hessian, options);
}

DensityResult spectral_density(HessianOperator& hessian, const DensityOptions& options) {
  check(options.runs() >= 1, "density: runs must be >= 1");
  check(options.iterations() >= 1, "density: iterations must be >= 1");
  check(options.grid_points() >= 2, "density: grid points must be >= 2");
  check(options.bandwidth() >= 0 && std::isfinite(options.bandwidth()), "density: bandwidth must be >= 0");
  const auto t0 = Clock::now();
  const Objective& objective = hessian.objective();
  const int64_t products_before = hessian.products();
  DensityResult r;
  const int64_t steps = std::min(options.iterations(), objective.dim());
  if (options.progress()) options.progress()->start("density (SLQ)", options.runs() * steps);
  double lo = std::numeric_limits<double>::infinity(), hi = -lo, trace_sum = 0;
  for (int64_t run = 0; run < options.runs(); ++run) {
    at::Tensor v = probe(objective, noise::NoiseLaw::kGaussian, options.seed(), run, kSlqStart);
    v.div_(v.norm());
    LanczosState s = lanczos(hessian, v, steps, nullptr, options.progress(), run * steps);
    const auto [values, vectors] = tridiagonal_eigh(s.alpha, s.beta);
    std::vector<double> nodes(static_cast<size_t>(values.size(0))), weights(nodes.size());
    double moment = 0;
    for (int64_t j = 0; j < values.size(0); ++j) {
      nodes[static_cast<size_t>(j)] = values[j].item<double>();
      const double first = vectors[0][j].item<double>();
      weights[static_cast<size_t>(j)] = first * first;
      moment += first * first * nodes[static_cast<size_t>(j)];
      lo = std::min(lo, nodes[static_cast<size_t>(j)]);
      hi = std::max(hi, nodes[static_cast<size_t>(j)]);
    }
    trace_sum += moment * static_cast<double>(objective.dim());
    r.nodes.push_back(std::move(nodes));
    r.weights.push_back(std::move(weights));
  }
  const double span = hi - lo;
  r.bandwidth = options.bandwidth() > 0 ? options.bandwidth()
                                        : (span > 0 ? 0.01 * span : 1e-3 * std::max(std::abs(hi), 1e-12));
  const double pad = 6 * r.bandwidth;
  const double g0 = lo - pad, g1 = hi + pad;
  const int64_t n = options.grid_points();
  const double step = (g1 - g0) / static_cast<double>(n - 1);
  r.grid.resize(static_cast<size_t>(n));
  r.density.assign(static_cast<size_t>(n), 0.0);
  const double norm = 1.0 / (std::sqrt(2 * M_PI) * r.bandwidth * static_cast<double>(options.runs()));
  for (int64_t i = 0; i < n; ++i) r.grid[static_cast<size_t>(i)] = g0 + step * static_cast<double>(i);
  for (size_t run = 0; run < r.nodes.size(); ++run)
    for (size_t j = 0; j < r.nodes[run].size(); ++j) {
      const double c = r.nodes[run][j], w = r.weights[run][j];
      for (int64_t i = 0; i < n; ++i) {
        const double z = (r.grid[static_cast<size_t>(i)] - c) / r.bandwidth;
        if (std::abs(z) < 12) r.density[static_cast<size_t>(i)] += w * norm * std::exp(-0.5 * z * z);
      }
    }
  for (int64_t i = 0; i + 1 < n; ++i)
    r.mass += 0.5 * step * (r.density[static_cast<size_t>(i)] + r.density[static_cast<size_t>(i + 1)]);
  r.trace_estimate = trace_sum / static_cast<double>(options.runs());
  r.hvps = hessian.products() - products_before;
  r.seconds = seconds_since(t0);
  return r;
}

// ------------------------------------------------------------------------------ gradient-scaled measures

std::pair<double, double> normalized_trace(const TraceResult& trace, const GradientResult& gradient) {
  const double g2 = gradient.norm * gradient.norm;
  if (g2 == 0) return {std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()};
  return {trace.trace / g2, trace.std_error / g2};
}

// ---------------------------------------------------------------------------------- per-epoch scalars

ScalarOptions ScalarOptions::from_names(const std::string& names) {
  ScalarOptions o;
  o.trace(false).lambda1(false).normalized_trace(false).grad_norm(false);
  std::stringstream in(names);
  bool any = false;
  for (std::string name; std::getline(in, name, ',');) {
    if (name.empty()) continue;
    any = true;
    if (name == "all") o.trace(true).lambda1(true).normalized_trace(true).grad_norm(true);
    else if (name == "trace") o.trace(true);
    else if (name == "lambda1") o.lambda1(true);
    else if (name == "normalized_trace") o.normalized_trace(true);
    else if (name == "grad_norm") o.grad_norm(true);
    else if (name == "ratio") o.ratio(true);
    else throw Error("unknown geometry measure '" + name + "' (valid: trace, lambda1, normalized_trace, grad_norm, ratio, all)");
  }
  check(any, "no geometry measure named (valid: trace, lambda1, normalized_trace, grad_norm, ratio, all)");
  return o;
}

data::Dataset sample_examples(const data::Dataset& data, int64_t size, uint64_t seed) {
  if (size <= 0 || size >= data.size()) return data;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const at::Tensor order = at::randperm(data.size(), generator, at::kLong);
  return data.subset(std::get<0>(order.narrow(0, 0, size).sort()));
}

std::vector<std::string> scalar_names(const ScalarOptions& options) {
  std::vector<std::string> names{"loss"};
  if (options.grad_norm()) names.push_back("grad_norm");
  if (options.trace()) names.insert(names.end(), {"hessian_trace", "hessian_trace_se", "hessian_trace_probes"});
  if (options.normalized_trace()) names.push_back("normalized_trace");
  if (options.lambda1()) names.insert(names.end(), {"lambda1", "lambda1_residual"});
  if (options.ratio()) names.push_back("sam_ratio");
  return names;
}

std::vector<std::pair<std::string, double>> measure_scalars(const models::Model& model, const data::Dataset& data,
                                                            const ScalarOptions& options) {
  const data::Dataset sample = sample_examples(data, options.max_examples(), options.seed());
  const Objective objective =
      Objective::for_model(model, sample, ObjectiveOptions().batch_size(options.batch_size()));
  MeasurementScope scope(objective, /*snapshot_parameters=*/false);
  HessianOperator hessian(objective, HvpOptions().graph_memory_mb(options.graph_memory_mb()));
  std::vector<std::pair<std::string, double>> out;
  out.emplace_back("loss", hessian.loss());
  const double grad_norm = hessian.gradient().to(at::kDouble).norm().item<double>();
  if (options.grad_norm()) out.emplace_back("grad_norm", grad_norm);
  if (options.trace() || options.normalized_trace()) {
    const TraceResult trace = hutchinson_trace(
        hessian, TraceOptions().rel_tol(options.trace_rel_tol()).max_probes(options.max_probes()).seed(options.seed())
                     .min_probes(std::min<int64_t>(10, options.max_probes())));
    if (options.trace()) {
      out.emplace_back("hessian_trace", trace.trace);
      out.emplace_back("hessian_trace_se", trace.std_error);
      out.emplace_back("hessian_trace_probes", static_cast<double>(trace.probes));
    }
    if (options.normalized_trace())
      out.emplace_back("normalized_trace", grad_norm > 0 ? trace.trace / (grad_norm * grad_norm)
                                                         : std::numeric_limits<double>::infinity());
  }
  if (options.lambda1()) {
    const EigenResult eig = top_eigenvalues(
        hessian, EigenOptions().k(1).tol(1e-2).max_iterations(options.lanczos_iterations()).seed(options.seed()));
    out.emplace_back("lambda1", eig.values.front());
    out.emplace_back("lambda1_residual", eig.residuals.front());
  }
  if (options.ratio()) {
    const data::Dataset points = sample_examples(sample, options.ratio_examples(), options.seed() + 1);
    const AscentRatioResult r = sam_approximation_ratio(
        Objective::for_model(model, points), AscentRatioOptions().rho(options.ratio_rho()).steps(options.ratio_steps()));
    out.emplace_back("sam_ratio", r.ratio);
  }
  return out;
}

}  // namespace flatmin::geometry
