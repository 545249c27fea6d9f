#pragma once
/// The type of a classification loss, shared by training (losses.h) and geometry (the objective measured).

#include <functional>

#include <ATen/Tensor.h>

namespace flatmin::models {

/// loss(logits [N, K], targets [N] int64) → a scalar.
using LossFn = std::function<at::Tensor(const at::Tensor& logits, const at::Tensor& targets)>;

}  // namespace flatmin::models
