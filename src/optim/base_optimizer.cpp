#include "flatmin/optim/base_optimizer.h"

#include <cmath>

#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include "flatmin/core/error.h"

namespace flatmin::optim {

std::shared_ptr<torch::optim::Optimizer> make_base_optimizer(std::vector<at::Tensor> params,
                                                             const BaseOptimizerOptions& o) {
  check(std::isfinite(o.lr()) && o.lr() >= 0, "learning rate must be finite and >= 0, got " + std::to_string(o.lr()));
  check(o.weight_decay() >= 0, "weight decay must be >= 0, got " + std::to_string(o.weight_decay()));
  if (o.name() == "sgd") {
    check(o.momentum() >= 0 && o.momentum() < 1, "momentum must be in [0, 1), got " + std::to_string(o.momentum()));
    check(!o.nesterov() || o.momentum() > 0, "Nesterov momentum needs momentum > 0");
    return std::make_shared<torch::optim::SGD>(
        std::move(params),
        torch::optim::SGDOptions(o.lr()).momentum(o.momentum()).nesterov(o.nesterov()).weight_decay(o.weight_decay()));
  }
  if (o.name() == "adamw") {
    check(o.beta1() >= 0 && o.beta1() < 1 && o.beta2() >= 0 && o.beta2() < 1, "AdamW betas must be in [0, 1)");
    check(o.eps() > 0, "AdamW eps must be > 0");
    return std::make_shared<torch::optim::AdamW>(
        std::move(params), torch::optim::AdamWOptions(o.lr())
                               .betas({o.beta1(), o.beta2()})
                               .eps(o.eps())
                               .weight_decay(o.weight_decay()));
  }
  throw Error("unknown base optimizer '" + o.name() + "' (valid: sgd, adamw)");
}

}  // namespace flatmin::optim
