#include "flatmin/optim/regularizers.h"

#include <cmath>

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "flatmin/core/error.h"

namespace flatmin::optim {

L2Sp::L2Sp(std::vector<at::Tensor> params, double lambda) : lambda_(lambda) {
  check(std::isfinite(lambda) && lambda >= 0, "L2-SP: lambda must be finite and >= 0, got " + std::to_string(lambda));
  torch::NoGradGuard no_grad;
  for (auto& p : params) {
    if (!p.requires_grad()) continue;
    start_.push_back(p.detach().clone());
    params_.push_back(std::move(p));
  }
}

void L2Sp::operator()() const {
  torch::NoGradGuard no_grad;
  for (size_t j = 0; j < params_.size(); ++j) {
    at::Tensor g = params_[j].grad();
    if (!g.defined()) continue;
    g.add_(params_[j] - start_[j], 2.0 * lambda_);  // W − W₀ first: exact where W is close to W₀
  }
}

double L2Sp::penalty() const {
  torch::NoGradGuard no_grad;
  double sum = 0;
  for (size_t j = 0; j < params_.size(); ++j) sum += (params_[j] - start_[j]).square().sum().item<double>();
  return lambda_ * sum;
}

}  // namespace flatmin::optim
