#include "flatmin/training/losses.h"

#include <cmath>

#include <ATen/ATen.h>
#include <torch/nn/functional/loss.h>

#include "flatmin/core/error.h"

namespace flatmin::training {

at::Tensor smoothed_cross_entropy(const at::Tensor& logits, const at::Tensor& targets, double label_smoothing) {
  const at::Tensor log_p = at::log_softmax(logits, 1);
  const at::Tensor nll = -log_p.gather(1, targets.unsqueeze(1)).squeeze(1);  // lse − z_y
  if (label_smoothing == 0.0) return nll.mean();
  const at::Tensor uniform = -log_p.mean(1);  // lse − mean_k z_k
  return ((1.0 - label_smoothing) * nll + label_smoothing * uniform).mean();
}

LossFn make_loss(const LossOptions& options) {
  const double eps = options.label_smoothing();
  check(std::isfinite(eps) && eps >= 0 && eps < 1, "label smoothing must be in [0, 1), got " + std::to_string(eps));
  if (eps == 0.0)
    return [](const at::Tensor& logits, const at::Tensor& targets) {
      return torch::nn::functional::cross_entropy(logits, targets);
    };
  return [eps](const at::Tensor& logits, const at::Tensor& targets) {
    return smoothed_cross_entropy(logits, targets, eps);
  };
}

}  // namespace flatmin::training
