#pragma once
/// Training losses: cross-entropy, optionally with label smoothing. Any method uses any of them (the loss
/// is the closure's business; the methods only see gradients).

#include <functional>

#include <ATen/Tensor.h>
#include <torch/arg.h>

#include "flatmin/models/loss_fn.h"

namespace flatmin::training {

/// loss(logits [N, K], targets [N] int64) → a scalar (models/loss_fn.h).
using LossFn = models::LossFn;

struct LossOptions {
  /// Label smoothing ε in [0, 1) (Szegedy et al. 2016; the NSO paper's grid: 0.1, 0.2, 0.3). 0 = plain
  /// cross-entropy.
  TORCH_ARG(double, label_smoothing) = 0.0;
};

/// Cross-entropy against smoothed targets q = (1 − ε)·onehot(y) + ε/K, averaged over the batch:
///     loss = mean_i [ −Σ_k q_ik · log softmax(z_i)_k ] = mean_i [ (1 − ε)·(lse_i − z_iy) + ε·(lse_i − mean_k z_ik) ]
/// with lse_i = log Σ_k exp z_ik. ε = 0 is plain cross-entropy.
at::Tensor smoothed_cross_entropy(const at::Tensor& logits, const at::Tensor& targets, double label_smoothing);

/// The training loss of `options`; throws flatmin::Error when ε is outside [0, 1).
LossFn make_loss(const LossOptions& options);

}  // namespace flatmin::training
