#pragma once
// Small models and objectives whose Hessians are known exactly, for the geometry tests.
#include <torch/torch.h>

#include "flatmin/geometry/objective.h"
#include "flatmin/models/models.h"

namespace flatmin::geometry::testing {

/// The full Hessian of the objective by double backpropagation, one row per parameter (dense, double).
/// Computed on the total loss Σ_b w_b·ℓ_b in one graph — independent of HessianOperator's batching.
inline at::Tensor exact_hessian(const Objective& objective) {
  MeasurementScope scope(objective, /*snapshot_parameters=*/false);
  std::vector<at::Tensor> params;
  for (const auto& p : objective.parameters()) params.push_back(p.tensor);
  torch::AutoGradMode grad_mode(true);
  at::Tensor total;
  for (int64_t b = 0; b < objective.num_batches(); ++b) {
    at::Tensor l = objective.batch_loss(b) * objective.weight(b);
    total = total.defined() ? total + l : l;
  }
  auto grads = torch::autograd::grad({total}, params, {}, true, true, true);
  std::vector<at::Tensor> flat;
  for (size_t i = 0; i < params.size(); ++i)
    flat.push_back(grads[i].defined() ? grads[i].reshape(-1) : torch::zeros({params[i].numel()}, params[i].options()));
  const at::Tensor g = torch::cat(flat);
  const int64_t n = g.numel();
  at::Tensor h = torch::zeros({n, n}, torch::kDouble);
  for (int64_t i = 0; i < n; ++i) {
    if (!g.requires_grad()) break;
    auto row = torch::autograd::grad({g[i]}, params, {}, true, false, true);
    std::vector<at::Tensor> pieces;
    for (size_t j = 0; j < params.size(); ++j)
      pieces.push_back(row[j].defined() ? row[j].reshape(-1) : torch::zeros({params[j].numel()}, params[j].options()));
    h[i].copy_(torch::cat(pieces));
  }
  return 0.5 * (h + h.t());
}

/// Exact eigenvalues, descending.
inline std::vector<double> exact_eigenvalues(const at::Tensor& hessian) {
  const at::Tensor values = std::get<0>(torch::linalg_eigh(hessian)).flip(0).contiguous();
  return std::vector<double>(values.data_ptr<double>(), values.data_ptr<double>() + values.numel());
}

/// A 244-parameter MLP (10 → 16 → 4) in double precision and 64 random examples of 4 classes.
struct TinyMlp {
  models::Model model;
  data::Dataset data;
};

inline TinyMlp tiny_mlp(uint64_t seed = 0, int64_t examples = 64) {
  torch::manual_seed(seed);
  models::Mlp mlp(models::MlpOptions(10, 4).hidden(16));
  mlp->to(torch::kDouble);
  TinyMlp t{models::Model(mlp), {}};
  t.data.inputs = torch::randn({examples, 1, 2, 5}, torch::kDouble);
  t.data.targets = torch::randint(0, 4, {examples}, torch::kLong);
  t.data.num_classes = 4;
  return t;
}

/// f(w) = ½·wᵀAw over one parameter vector w (double), A symmetric.
struct Quadratic {
  at::Tensor w;
  at::Tensor a;
  Objective objective;
};

inline Quadratic quadratic(const at::Tensor& a, const at::Tensor& w0) {
  Quadratic q;
  q.a = a;
  q.w = w0.clone().set_requires_grad(true);
  at::Tensor w = q.w, m = a;
  q.objective = Objective({{"w", q.w}}, [w, m] { return 0.5 * torch::dot(w, torch::mv(m, w)); });
  return q;
}

/// A random symmetric matrix with the given eigenvalues.
inline at::Tensor with_eigenvalues(const std::vector<double>& values, uint64_t seed) {
  torch::manual_seed(seed);
  const int64_t n = static_cast<int64_t>(values.size());
  const at::Tensor q = std::get<0>(torch::linalg_qr(torch::randn({n, n}, torch::kDouble)));
  return torch::mm(q, torch::mm(torch::diag(torch::tensor(values, torch::kDouble)), q.t()));
}

}  // namespace flatmin::geometry::testing
