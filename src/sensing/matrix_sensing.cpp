#include "flatmin/sensing/matrix_sensing.h"

#include <cmath>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "flatmin/core/error.h"
#include "flatmin/core/seed.h"
#include "flatmin/optim/perturbed_optimizer.h"

namespace flatmin::sensing {

namespace {

// ⟨A_i, X⟩ for every i: the measurements as rows of an n × d² matrix times vec X.
at::Tensor measure(const at::Tensor& a, const at::Tensor& x) {
  return torch::mv(a.reshape({a.size(0), -1}), x.reshape({-1}));
}

}  // namespace

Problem make_problem(const ProblemOptions& o) {
  check(o.dimension() > 0 && o.rank() > 0 && o.measurements() > 0 && o.test_measurements() > 0,
        "matrix sensing: d, r, n and the test measurements must be positive");
  check(o.rank() <= o.dimension(), "matrix sensing: the rank r = " + std::to_string(o.rank()) +
                                       " exceeds the dimension d = " + std::to_string(o.dimension()));
  const int64_t d = o.dimension();
  at::Generator gen = at::detail::createCPUGenerator(derive_seed(o.seed(), SeedStream::kDataSplit));
  Problem p;
  p.u_star = torch::randn({d, o.rank()}, gen, torch::kFloat32);
  p.x_star = torch::mm(p.u_star, p.u_star.t());
  p.a_train = torch::randn({o.measurements(), d, d}, gen, torch::kFloat32);
  p.a_test = torch::randn({o.test_measurements(), d, d}, gen, torch::kFloat32);
  p.y_train = measure(p.a_train, p.x_star);
  p.y_test = measure(p.a_test, p.x_star);
  return p;
}

at::Tensor sensing_loss(const at::Tensor& u, const at::Tensor& a, const at::Tensor& y) {
  const at::Tensor r = measure(a, torch::mm(u, u.t())) - y;
  return r.pow(2).sum() / (2.0 * static_cast<double>(a.size(0)));
}

PackedMeasurements::PackedMeasurements(const at::Tensor& a, const at::Tensor& y) : y_(y) {
  torch::NoGradGuard no_grad;
  const int64_t n = a.size(0), d = a.size(1);
  const at::Tensor rows_cols = torch::triu_indices(d, d, 0, torch::kLong);
  upper_ = rows_cols[0] * d + rows_cols[1];
  // ⟨A, X⟩ = Σ_j A_jj X_jj + Σ_{j<k} (A_jk + A_kj) X_jk for symmetric X.
  const at::Tensor weight = torch::where(rows_cols[0] == rows_cols[1], 0.5, 1.0).to(a.scalar_type());
  packed_ = (a + a.transpose(1, 2)).reshape({n, d * d}).index_select(1, upper_) * weight;
}

at::Tensor PackedMeasurements::loss(const at::Tensor& u) const {
  const at::Tensor r = torch::mv(packed_, torch::mm(u, u.t()).reshape({-1}).index_select(0, upper_)) - y_;
  return r.pow(2).sum() / (2.0 * static_cast<double>(packed_.size(0)));
}

HessianTrace::HessianTrace(const at::Tensor& a_in, const at::Tensor& y_in) {
  torch::NoGradGuard no_grad;
  const at::Tensor a = a_in.to(torch::kFloat64), y = y_in.to(torch::kFloat64);
  const int64_t n = a.size(0), d = a.size(1);
  // Both terms are linear in X = UUᵀ once summed over i: ‖S_i U‖_F² = ⟨S_i S_i, X⟩ (S_i symmetric) and
  // Σ r_i tr A_i = ⟨Σ tr A_i · A_i, X⟩ − Σ tr A_i · y_i. So Tr = (⟨M, X⟩ − c)/n with one d × d matrix M, made
  // here once (n·d³ products, in chunks to bound the memory), and each U then costs a d × d product.
  const at::Tensor trace_a = a.diagonal(0, 1, 2).sum(1);
  m_ = torch::zeros({d, d}, torch::kFloat64);
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 22) / (d * d));
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t end = std::min(n, begin + chunk);
    const at::Tensor part = a.slice(0, begin, end), s = part + part.transpose(1, 2);
    m_ += torch::bmm(s, s).sum(0) +
          2.0 * static_cast<double>(d) * (trace_a.slice(0, begin, end).view({-1, 1, 1}) * part).sum(0);
  }
  c_ = 2.0 * static_cast<double>(d) * (trace_a * y).sum().item<double>();
  n_ = n;
}

double HessianTrace::operator()(const at::Tensor& u_in) const {
  torch::NoGradGuard no_grad;
  const at::Tensor u = u_in.detach().to(torch::kFloat64);
  return ((m_ * torch::mm(u, u.t())).sum().item<double>() - c_) / static_cast<double>(n_);
}

double hessian_trace(const at::Tensor& u, const at::Tensor& a, const at::Tensor& y) { return HessianTrace(a, y)(u); }

double nuclear_norm(const at::Tensor& u) { return u.to(torch::kFloat64).pow(2).sum().item<double>(); }

double recovery_error(const at::Tensor& u_in, const at::Tensor& x_star) {
  const at::Tensor u = u_in.detach().to(torch::kFloat64), x = x_star.to(torch::kFloat64);
  return (torch::mm(u, u.t()) - x).norm().item<double>() / x.norm().item<double>();
}

double penalty_strength(int64_t dimension, double lr, double sigma, int64_t steps) {
  return 2.0 * static_cast<double>(2 * dimension + 1) * lr * sigma * sigma * static_cast<double>(steps);
}

RunResult run(const Problem& problem_in, const optim::MethodSpec& method, const RunOptions& o,
              const std::function<void(const Point&)>& on_point) {
  check(o.steps() >= 0 && o.log_every() > 0, "matrix sensing: steps must be >= 0 and log_every > 0");
  check(o.lr() > 0 && std::isfinite(o.lr()), "matrix sensing: the learning rate must be positive");
  check(method.name() == "sgd" || method.name() == "wp-sgd" || method.name() == "nso",
        "matrix sensing: method '" + method.name() + "' is not one of gd (sgd), wp-gd (wp-sgd), nso");
  const auto dtype = o.float64() ? torch::kFloat64 : torch::kFloat32;
  Problem problem = problem_in;
  for (at::Tensor* t : {&problem.u_star, &problem.x_star, &problem.a_train, &problem.a_test, &problem.y_train,
                        &problem.y_test})
    *t = t->to(dtype);
  const int64_t d = problem.x_star.size(0);
  at::Generator gen = at::detail::createCPUGenerator(derive_seed(o.seed(), SeedStream::kModelInit));
  at::Tensor u = (o.init_scale() * torch::randn({d, d}, gen, torch::kFloat32)).to(dtype).set_requires_grad(true);

  // Full-batch gradient descent is SGD without momentum, weight decay or sampling.
  auto optimizer = optim::make_perturbed_optimizer(
      {u}, method, optim::BaseOptimizerOptions().name("sgd").lr(o.lr()).momentum(0).weight_decay(0),
      optim::PerturbedOptimizerOptions().seed(derive_seed(o.seed(), SeedStream::kNoise)).check_finite(false));
  optimizer->set_epoch(0, 1);

  RunResult result;
  const HessianTrace trace_of(problem.a_train, problem.y_train);  // the float64 measurements, once per run
  const PackedMeasurements train(problem.a_train, problem.y_train), test(problem.a_test, problem.y_test);
  auto record = [&](int64_t step) {
    torch::NoGradGuard no_grad;
    Point p;
    p.step = step;
    p.gradient_evaluations = optimizer->gradient_evaluations();
    p.train_loss = train.loss(u).item<double>();
    p.test_loss = test.loss(u).item<double>();
    p.recovery_error = recovery_error(u, problem.x_star);
    p.hessian_trace = trace_of(u);
    p.nuclear_norm = sensing::nuclear_norm(u);
    p.trace_over_nuclear = p.hessian_trace / p.nuclear_norm;
    result.points.push_back(p);
    if (on_point) on_point(p);
  };
  record(0);
  for (int64_t step = 1; step <= o.steps(); ++step) {
    const at::Tensor loss = optimizer->step([&] {
      optimizer->zero_grad();
      at::Tensor l = train.loss(u);
      l.backward();
      return l;
    });
    const double value = loss.item<double>();
    if (!std::isfinite(value) || value > o.divergence_loss() || !torch::isfinite(u).all().item<bool>()) {
      result.diverged = true;
      result.diverged_at = step;
      break;
    }
    if (step % o.log_every() == 0 || step == o.steps()) record(step);
  }
  result.u = u.detach().clone();
  return result;
}

}  // namespace flatmin::sensing
