#pragma once
/// The base optimizers that apply a method's combined gradient.

#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <torch/arg.h>
#include <torch/optim/optimizer.h>

namespace flatmin::optim {

struct BaseOptimizerOptions {
  TORCH_ARG(std::string, name) = "sgd";  ///< sgd | adamw
  TORCH_ARG(double, lr) = 0.05;
  TORCH_ARG(double, momentum) = 0.9;       ///< SGD
  TORCH_ARG(bool, nesterov) = false;       ///< SGD
  TORCH_ARG(double, weight_decay) = 0.0;   ///< SGD: L2 added to the gradient; AdamW: decoupled
  TORCH_ARG(double, beta1) = 0.9;          ///< AdamW
  TORCH_ARG(double, beta2) = 0.999;        ///< AdamW
  TORCH_ARG(double, eps) = 1e-8;           ///< AdamW
};

/// torch::optim::SGD or torch::optim::AdamW over `params`; throws flatmin::Error on an unknown name or an
/// out-of-range value (lr < 0, momentum outside [0, 1), weight decay < 0, nesterov without momentum).
std::shared_ptr<torch::optim::Optimizer> make_base_optimizer(std::vector<at::Tensor> params,
                                                             const BaseOptimizerOptions& options);

}  // namespace flatmin::optim
