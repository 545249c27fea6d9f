#pragma once
/// The loss whose geometry is measured, and its Hessian as an operator.
///
/// An `Objective` is L(W) = Σ_b w_b·ℓ_b(W): a weighted sum of batch losses over a fixed list of batches,
/// a function of a list of parameter tensors. Built from a model and a dataset it is the mean loss over the
/// dataset (w_b = n_b/N, any batch size, the last batch may be short), measured in eval mode; built from a
/// closure it is whatever the closure returns. Parameters that do not require gradients are skipped;
/// parameters that the loss does not use get zero gradient and zero Hessian rows (never an error).
///
/// A `HessianOperator` applies ∇²L to flat vectors (the parameters concatenated in order). Two methods:
///  - autograd (default): Hv = ∇(∇L·v) by double backpropagation, batch by batch, weighted by w_b. The
///    gradient graph of each batch is built once and reused by every later product (retain_graph) while it
///    fits in `graph_memory_mb`; beyond that, batches are recomputed per product (3–7× slower). The
///    memory is measured (glibc heap in use before and after building a batch's graph), not guessed.
///  - finite differences: Hv ≈ ‖v‖·[∇L(W + εv̂) − ∇L(W − εv̂)] / (2ε), v̂ = v/‖v‖ (central, error O(ε²));
///    W is restored by copy.
/// Measurements put the model in eval mode (or, asked, train mode) and restore every module's mode, the
/// weights and the buffers exactly afterwards (`MeasurementScope`).

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Tensor.h>
#include <torch/arg.h>

#include "flatmin/data/dataset.h"
#include "flatmin/models/models.h"
#include "flatmin/models/loss_fn.h"

namespace torch::nn {
class Module;
}

namespace flatmin::geometry {

struct NamedParameter {
  std::string name;
  at::Tensor tensor;
};

/// The parameters of `module` that require gradients, with their dotted names ("fc1.weight").
std::vector<NamedParameter> trainable_parameters(const torch::nn::Module& module);

/// The model's mode while a measurement runs.
enum class ModelMode {
  kEval,   ///< BatchNorm with its running statistics, Dropout off: the model as it is evaluated
  kTrain,  ///< BatchNorm with each batch's own statistics: the loss the training steps (and NSO's noise) see
};

/// "eval" | "train"; throws flatmin::Error otherwise.
ModelMode parse_model_mode(const std::string& name);
std::string to_string(ModelMode mode);

struct ObjectiveOptions {
  /// Examples per forward/backward pass. 100, measured: a 1,000-example batch of the CNN made every
  /// Hessian-vector product 6.5x slower (its activations exceed glibc's mmap ceiling; docs/PERFORMANCE.md).
  TORCH_ARG(int64_t, batch_size) = 100;
  /// Per-batch mean loss of (logits, targets); cross-entropy when empty.
  TORCH_ARG(models::LossFn, loss) = nullptr;
  /// The model's mode while measuring; the running statistics a train-mode pass moves are restored after.
  TORCH_ARG(ModelMode, mode) = ModelMode::kEval;
};

class Objective {
 public:
  /// The scalar loss of batch b, computed from the parameters with the current autograd mode.
  using BatchLoss = std::function<at::Tensor(int64_t batch)>;
  /// The scalar loss of example i alone (for per-example measurements); optional.
  using ExampleLoss = std::function<at::Tensor(int64_t example)>;

  Objective() = default;
  /// L = Σ_b weights[b]·loss(b), b = 0 … weights.size()−1. Throws flatmin::Error when no parameter requires a
  /// gradient, when the parameters differ in dtype or device, or on a non-finite weight.
  Objective(std::vector<NamedParameter> parameters, BatchLoss loss, std::vector<double> weights);
  /// One batch: L = loss().
  Objective(std::vector<NamedParameter> parameters, std::function<at::Tensor()> loss);

  /// The mean of options.loss over `data` (batched in order), with per-example losses for per-sample measures.
  static Objective for_model(const models::Model& model, const data::Dataset& data, const ObjectiveOptions& options = {});

  /// Makes measurements put `module` in `mode` (and restore it afterwards); set by for_model.
  Objective& set_module(std::shared_ptr<torch::nn::Module> module, ModelMode mode = ModelMode::kEval);
  Objective& set_example_loss(int64_t num_examples, ExampleLoss loss);

  const std::vector<NamedParameter>& parameters() const { return parameters_; }
  int64_t num_batches() const { return static_cast<int64_t>(weights_.size()); }
  double weight(int64_t batch) const { return weights_.at(static_cast<size_t>(batch)); }
  at::Tensor batch_loss(int64_t batch) const { return loss_(batch); }
  /// Σ numel over the parameters: the dimension of the Hessian.
  int64_t dim() const { return dim_; }
  /// Offset of parameter i in a flat vector.
  int64_t offset(size_t i) const { return offsets_.at(i); }
  const std::shared_ptr<torch::nn::Module>& module() const { return module_; }
  ModelMode mode() const { return mode_; }

  int64_t num_examples() const { return num_examples_; }
  bool has_example_loss() const { return static_cast<bool>(example_loss_); }
  /// The objective of example i alone (same parameters, module and mode). Throws flatmin::Error when the
  /// objective has no per-example losses or i is out of range.
  Objective example(int64_t i) const;

  /// L(W) without gradients (call inside a MeasurementScope to get eval mode).
  double value() const;
  /// Splits a flat vector into views shaped like the parameters.
  std::vector<at::Tensor> unflatten(const at::Tensor& flat) const;
  /// Concatenates per-parameter tensors (undefined = zeros) into a flat vector.
  at::Tensor flatten(const std::vector<at::Tensor>& tensors) const;
  /// The parameters' current values as a flat vector (a copy).
  at::Tensor flat_parameters() const;
  at::TensorOptions tensor_options() const;

 private:
  std::vector<NamedParameter> parameters_;
  BatchLoss loss_;
  std::vector<double> weights_;
  std::vector<int64_t> offsets_;
  int64_t dim_ = 0;
  std::shared_ptr<torch::nn::Module> module_;
  ModelMode mode_ = ModelMode::kEval;
  int64_t num_examples_ = 0;
  ExampleLoss example_loss_;
};

/// While alive: the objective's module (if any) is in eval mode; on destruction every submodule's mode is
/// restored as it was, and the parameters are copied back from a snapshot taken at construction (so a
/// measurement that moves W — perturbations, finite differences — leaves it bit-identical, even on an
/// exception). Buffers are not touched in eval mode; they are snapshotted and restored too. Values are moved and
/// restored through .data(), so autograd version counters do not change: graphs built at W stay usable.
class MeasurementScope {
 public:
  explicit MeasurementScope(const Objective& objective, bool snapshot_parameters = true);
  ~MeasurementScope();
  MeasurementScope(const MeasurementScope&) = delete;
  MeasurementScope& operator=(const MeasurementScope&) = delete;
  /// Copies the snapshot back into the parameters now (no-op without snapshot).
  void restore_parameters();
  const std::vector<at::Tensor>& anchor() const { return anchor_; }

 private:
  const Objective& objective_;
  std::vector<std::pair<torch::nn::Module*, bool>> modes_;
  std::vector<at::Tensor> anchor_;
  std::vector<at::Tensor> buffers_, buffer_copies_;
};

enum class HvpMethod { kAutograd, kFiniteDifference };

struct HvpOptions {
  TORCH_ARG(HvpMethod, method) = HvpMethod::kAutograd;
  /// Finite differences: step length along the unit direction.
  TORCH_ARG(double, fd_epsilon) = 1e-3;
  /// Autograd: memory for cached per-batch gradient graphs, in MiB (0 = recompute every batch every
  /// product; negative = no limit).
  TORCH_ARG(double, graph_memory_mb) = 2048;
};

/// ∇²L as an operator on flat vectors. Construct it inside a MeasurementScope (the functions of this module do).
class HessianOperator {
 public:
  HessianOperator(const Objective& objective, HvpOptions options = {});
  ~HessianOperator();
  HessianOperator(const HessianOperator&) = delete;
  HessianOperator& operator=(const HessianOperator&) = delete;

  /// H·v for a flat v of size dim() (any norm). Counts one product.
  at::Tensor apply(const at::Tensor& v);
  int64_t dim() const { return objective_.dim(); }
  const Objective& objective() const { return objective_; }
  /// L(W) and ∇L(W) (flat), computed with the first product (or on the first call here).
  double loss();
  at::Tensor gradient();
  int64_t products() const { return products_; }
  /// Batches whose gradient graph is kept (autograd method, after the first product).
  int64_t cached_batches() const;
  /// Heap memory measured for the cached graphs, in bytes (0 where it cannot be measured).
  int64_t cached_bytes() const;

 private:
  struct Cache;
  void prepare();
  at::Tensor apply_autograd(const at::Tensor& v);
  at::Tensor apply_finite_difference(const at::Tensor& v);

  const Objective& objective_;
  HvpOptions options_;
  std::unique_ptr<Cache> cache_;
  int64_t products_ = 0;
};

/// Gradient of the objective at W.
struct GradientResult {
  double loss = 0;
  double norm = 0;                       ///< ‖∇L‖₂
  std::vector<std::string> names;        ///< per parameter tensor
  std::vector<double> layer_norms;       ///< ‖∇_t L‖₂, Σ layer_norms² = norm²
  at::Tensor gradient;                   ///< flat
};

GradientResult gradient(const Objective& objective);

}  // namespace flatmin::geometry
