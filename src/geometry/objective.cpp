#include "flatmin/geometry/objective.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <cmath>

#include <torch/autograd.h>
#include <torch/nn/functional/loss.h>
#include <torch/nn/module.h>
#include <torch/utils.h>

#include "flatmin/core/device.h"
#include "flatmin/core/error.h"

namespace flatmin::geometry {
namespace {

/// Heap bytes in use (glibc), or -1 where that cannot be read.
int64_t heap_in_use() {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  const struct mallinfo2 info = mallinfo2();
  return static_cast<int64_t>(info.uordblks + info.hblkhd);
#else
  return -1;
#endif
}

std::vector<at::Tensor> tensors_of(const std::vector<NamedParameter>& parameters) {
  std::vector<at::Tensor> out;
  out.reserve(parameters.size());
  for (const auto& p : parameters) out.push_back(p.tensor);
  return out;
}

at::Tensor checked_scalar(const at::Tensor& loss, const std::string& what) {
  check(loss.defined() && loss.numel() == 1, what + ": the loss must be a scalar tensor");
  return loss.reshape({});
}

}  // namespace

std::vector<NamedParameter> trainable_parameters(const torch::nn::Module& module) {
  std::vector<NamedParameter> out;
  for (const auto& item : module.named_parameters(/*recurse=*/true))
    if (item.value().requires_grad()) out.push_back({item.key(), item.value()});
  return out;
}

// ------------------------------------------------------------------------------------------- Objective

Objective::Objective(std::vector<NamedParameter> parameters, BatchLoss loss, std::vector<double> weights)
    : loss_(std::move(loss)), weights_(std::move(weights)) {
  for (auto& p : parameters) {
    check(p.tensor.defined(), "Objective: parameter '" + p.name + "' is undefined");
    if (p.tensor.requires_grad()) parameters_.push_back(std::move(p));  // frozen ones are skipped
  }
  check(!parameters_.empty(), "Objective: no parameter requires a gradient");
  check(static_cast<bool>(loss_), "Objective: the loss closure is empty");
  check(!weights_.empty(), "Objective: no batches");
  for (double w : weights_) check(std::isfinite(w), "Objective: batch weights must be finite");
  const auto& first = parameters_.front().tensor;
  for (const auto& p : parameters_) {
    check(p.tensor.scalar_type() == first.scalar_type(),
          "Objective: parameters differ in dtype ('" + p.name + "' vs '" + parameters_.front().name + "')");
    check(p.tensor.device() == first.device(), "Objective: parameters are on different devices");
    check(at::isFloatingType(p.tensor.scalar_type()), "Objective: parameter '" + p.name + "' is not floating point");
    offsets_.push_back(dim_);
    dim_ += p.tensor.numel();
  }
}

Objective::Objective(std::vector<NamedParameter> parameters, std::function<at::Tensor()> loss)
    : Objective(std::move(parameters), [loss = std::move(loss)](int64_t) { return loss(); }, {1.0}) {}

Objective Objective::for_model(const models::Model& model, const data::Dataset& data, const ObjectiveOptions& options) {
  check(static_cast<bool>(model), "Objective: the model is empty");
  check(options.batch_size() >= 1, "Objective: batch size must be >= 1");
  const int64_t n = data.size();
  check(n >= 1, "Objective: the dataset is empty");
  check(data.inputs.defined() && data.inputs.size(0) == n, "Objective: inputs and targets differ in count");
  models::LossFn loss_fn = options.loss();
  if (!loss_fn)
    loss_fn = [](const at::Tensor& logits, const at::Tensor& targets) {
      return torch::nn::functional::cross_entropy(logits, targets);
    };
  const int64_t batch = options.batch_size();
  std::vector<double> weights;
  for (int64_t start = 0; start < n; start += batch)
    weights.push_back(static_cast<double>(std::min(batch, n - start)) / static_cast<double>(n));
  // The measured examples move to the model's device once: every measure reads them many times.
  const c10::Device device = module_device(*model.module());
  const at::Tensor x = data.inputs.to(device), y = data.targets.to(device);
  Objective objective(
      trainable_parameters(*model.module()),
      [model, x, y, batch, n, loss_fn](int64_t b) {
        const int64_t start = b * batch, count = std::min(batch, n - start);
        return loss_fn(model.forward(x.narrow(0, start, count)), y.narrow(0, start, count));
      },
      std::move(weights));
  objective.set_module(model.module(), options.mode());
  objective.set_example_loss(n, [model, x, y, loss_fn](int64_t i) {
    return loss_fn(model.forward(x.narrow(0, i, 1)), y.narrow(0, i, 1));
  });
  return objective;
}

Objective& Objective::set_module(std::shared_ptr<torch::nn::Module> module, ModelMode mode) {
  module_ = std::move(module);
  mode_ = mode;
  return *this;
}

ModelMode parse_model_mode(const std::string& name) {
  if (name == "eval") return ModelMode::kEval;
  if (name == "train") return ModelMode::kTrain;
  throw Error("unknown model mode '" + name + "' (valid: eval, train)");
}

std::string to_string(ModelMode mode) { return mode == ModelMode::kTrain ? "train" : "eval"; }

Objective& Objective::set_example_loss(int64_t num_examples, ExampleLoss loss) {
  check(num_examples >= 0, "Objective: number of examples must be >= 0");
  num_examples_ = num_examples;
  example_loss_ = std::move(loss);
  return *this;
}

Objective Objective::example(int64_t i) const {
  check(has_example_loss(), "this measurement needs per-example losses (Objective::for_model or set_example_loss)");
  check(mode_ == ModelMode::kEval, "per-example measurements need eval mode: one example has no batch statistics");
  check(i >= 0 && i < num_examples_,
        "example " + std::to_string(i) + " out of range [0, " + std::to_string(num_examples_) + ")");
  Objective one(parameters_, [f = example_loss_, i](int64_t) { return f(i); }, {1.0});
  one.module_ = module_;
  one.mode_ = mode_;
  return one;
}

double Objective::value() const {
  torch::NoGradGuard no_grad;
  double total = 0;
  for (int64_t b = 0; b < num_batches(); ++b)
    total += weights_[static_cast<size_t>(b)] * checked_scalar(loss_(b), "Objective").item<double>();
  return total;
}

std::vector<at::Tensor> Objective::unflatten(const at::Tensor& flat) const {
  check(flat.dim() == 1 && flat.numel() == dim_,
        "Objective: a flat vector must have " + std::to_string(dim_) + " elements, got " + std::to_string(flat.numel()));
  std::vector<at::Tensor> out;
  out.reserve(parameters_.size());
  for (size_t i = 0; i < parameters_.size(); ++i)
    out.push_back(flat.narrow(0, offsets_[i], parameters_[i].tensor.numel()).view(parameters_[i].tensor.sizes()));
  return out;
}

at::Tensor Objective::flatten(const std::vector<at::Tensor>& tensors) const {
  check(tensors.size() == parameters_.size(), "Objective::flatten: one tensor per parameter expected");
  at::Tensor flat = at::zeros({dim_}, tensor_options());
  for (size_t i = 0; i < tensors.size(); ++i)
    if (tensors[i].defined()) flat.narrow(0, offsets_[i], parameters_[i].tensor.numel()).copy_(tensors[i].reshape(-1));
  return flat;
}

at::Tensor Objective::flat_parameters() const {
  torch::NoGradGuard no_grad;
  return flatten(tensors_of(parameters_));
}

at::TensorOptions Objective::tensor_options() const {
  return at::TensorOptions().dtype(parameters_.front().tensor.scalar_type()).device(parameters_.front().tensor.device());
}

// ------------------------------------------------------------------------------------ MeasurementScope
// Parameters are moved and restored through .data(): the values come back bit for bit, and the autograd
// version counters do not move, so gradient graphs built at W (a HessianOperator's cache, a caller's graph)
// stay valid across a measurement that perturbs W.

MeasurementScope::MeasurementScope(const Objective& objective, bool snapshot_parameters) : objective_(objective) {
  torch::NoGradGuard no_grad;
  if (objective.module()) {
    // Pre-order: restoring in this order (each train() call recurses) leaves every module as it was.
    for (const auto& m : objective.module()->modules(/*include_self=*/true)) modes_.emplace_back(m.get(), m->is_training());
    for (const auto& b : objective.module()->buffers(/*recurse=*/true)) {
      buffers_.push_back(b);
      buffer_copies_.push_back(b.clone());
    }
    objective.module()->train(objective.mode() == ModelMode::kTrain);
  }
  if (snapshot_parameters)
    for (const auto& p : objective.parameters()) anchor_.push_back(p.tensor.detach().clone());
}

void MeasurementScope::restore_parameters() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < anchor_.size(); ++i) objective_.parameters()[i].tensor.data().copy_(anchor_[i]);
}

MeasurementScope::~MeasurementScope() {
  try {
    restore_parameters();
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < buffers_.size(); ++i) buffers_[i].data().copy_(buffer_copies_[i]);
    for (const auto& [module, training] : modes_) module->train(training);
  } catch (...) {
    // A destructor must not throw; the copies above cannot fail for tensors that were copied from.
  }
}

// ------------------------------------------------------------------------------------- HessianOperator

struct HessianOperator::Cache {
  bool prepared = false;
  double loss = 0;
  at::Tensor gradient;                            ///< flat ∇L(W)
  std::vector<std::vector<at::Tensor>> graphs;    ///< per batch: ∇ℓ_b with its graph, or empty
  int64_t cached = 0;
  int64_t bytes = 0;
};

HessianOperator::HessianOperator(const Objective& objective, HvpOptions options)
    : objective_(objective), options_(options), cache_(std::make_unique<Cache>()) {
  check(options_.method() != HvpMethod::kFiniteDifference ||
            (options_.fd_epsilon() > 0 && std::isfinite(options_.fd_epsilon())),
        "finite-difference epsilon must be > 0");
}

HessianOperator::~HessianOperator() = default;

int64_t HessianOperator::cached_batches() const { return cache_->cached; }
int64_t HessianOperator::cached_bytes() const { return cache_->bytes; }

void HessianOperator::prepare() {
  if (cache_->prepared) return;
  const auto params = tensors_of(objective_.parameters());
  const bool autograd = options_.method() == HvpMethod::kAutograd;
  const double budget_mb = options_.graph_memory_mb();
  const double budget = budget_mb < 0 ? std::numeric_limits<double>::infinity() : budget_mb * 1024.0 * 1024.0;
  // A kept graph holds at least its create_graph gradient, one parameter-sized set of tensors: the floor of
  // every estimate, also where the heap cannot be read (other allocators, sanitizers).
  int64_t parameter_bytes = 0;
  for (const auto& p : params) parameter_bytes += static_cast<int64_t>(p.numel() * p.element_size());
  int64_t largest = parameter_bytes;  // the largest graph measured so far: the estimate for the next one
  bool caching = autograd && budget > 0;
  std::vector<at::Tensor> sum(params.size());
  double loss_sum = 0;
  cache_->graphs.assign(static_cast<size_t>(objective_.num_batches()), {});
  for (int64_t b = 0; b < objective_.num_batches(); ++b) {
    const double w = objective_.weight(b);
    if (caching && static_cast<double>(cache_->bytes + largest) > budget) caching = false;
    const int64_t before = caching ? heap_in_use() : 0;
    torch::AutoGradMode grad_mode(true);
    const at::Tensor loss = checked_scalar(objective_.batch_loss(b), "Objective");
    check(loss.requires_grad(), "Objective: the loss does not depend on any parameter");
    std::vector<at::Tensor> grads = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/caching,
                                                          /*create_graph=*/caching, /*allow_unused=*/true);
    loss_sum += w * loss.item<double>();
    for (size_t i = 0; i < params.size(); ++i) {
      if (!grads[i].defined()) continue;
      at::Tensor g = grads[i].detach() * w;
      sum[i] = sum[i].defined() ? sum[i] + g : g;
    }
    if (caching) {
      const int64_t after = heap_in_use();
      const int64_t bytes = std::max(parameter_bytes, before >= 0 && after >= 0 ? after - before : 0);
      largest = std::max(largest, bytes);
      if (static_cast<double>(cache_->bytes + bytes) <= budget) {
        cache_->graphs[static_cast<size_t>(b)] = std::move(grads);
        cache_->bytes += bytes;
        ++cache_->cached;
      } else {
        caching = false;  // this one does not fit: neither will later ones
      }
    }
  }
  cache_->loss = loss_sum;
  cache_->gradient = objective_.flatten(sum);
  cache_->prepared = true;
}

double HessianOperator::loss() {
  prepare();
  return cache_->loss;
}

at::Tensor HessianOperator::gradient() {
  prepare();
  return cache_->gradient;
}

at::Tensor HessianOperator::apply(const at::Tensor& v) {
  check(v.defined() && v.dim() == 1 && v.numel() == dim(),
        "HessianOperator: vector must have " + std::to_string(dim()) + " elements");
  prepare();
  ++products_;
  const at::Tensor direction = v.detach().to(objective_.tensor_options()).contiguous();
  return options_.method() == HvpMethod::kAutograd ? apply_autograd(direction) : apply_finite_difference(direction);
}

at::Tensor HessianOperator::apply_autograd(const at::Tensor& v) {
  const auto params = tensors_of(objective_.parameters());
  const std::vector<at::Tensor> pieces = objective_.unflatten(v);
  std::vector<at::Tensor> sum(params.size());
  for (int64_t b = 0; b < objective_.num_batches(); ++b) {
    torch::AutoGradMode grad_mode(true);
    const bool cached = !cache_->graphs[static_cast<size_t>(b)].empty();
    std::vector<at::Tensor> grads;
    if (cached) {
      grads = cache_->graphs[static_cast<size_t>(b)];
    } else {
      const at::Tensor loss = checked_scalar(objective_.batch_loss(b), "Objective");
      grads = torch::autograd::grad({loss}, params, {}, /*retain_graph=*/true, /*create_graph=*/true,
                                    /*allow_unused=*/true);
    }
    at::Tensor dot;
    for (size_t i = 0; i < params.size(); ++i) {
      if (!grads[i].defined() || !grads[i].requires_grad()) continue;  // constant in W: no curvature
      const at::Tensor term = (grads[i] * pieces[i]).sum();
      dot = dot.defined() ? dot + term : term;
    }
    if (!dot.defined()) continue;
    const std::vector<at::Tensor> hv = torch::autograd::grad({dot}, params, {}, /*retain_graph=*/cached,
                                                             /*create_graph=*/false, /*allow_unused=*/true);
    const double w = objective_.weight(b);
    for (size_t i = 0; i < params.size(); ++i) {
      if (!hv[i].defined()) continue;
      at::Tensor h = hv[i].detach() * w;
      sum[i] = sum[i].defined() ? sum[i].add_(h) : h;
    }
  }
  return objective_.flatten(sum);
}

namespace {

/// ∇L at the parameters' current values (flat).
at::Tensor full_gradient(const Objective& objective) {
  const auto params = tensors_of(objective.parameters());
  std::vector<at::Tensor> sum(params.size());
  for (int64_t b = 0; b < objective.num_batches(); ++b) {
    torch::AutoGradMode grad_mode(true);
    const at::Tensor loss = checked_scalar(objective.batch_loss(b), "Objective");
    if (!loss.requires_grad()) continue;
    const auto grads = torch::autograd::grad({loss}, params, {}, false, false, /*allow_unused=*/true);
    for (size_t i = 0; i < params.size(); ++i) {
      if (!grads[i].defined()) continue;
      at::Tensor g = grads[i] * objective.weight(b);
      sum[i] = sum[i].defined() ? sum[i].add_(g) : g;
    }
  }
  return objective.flatten(sum);
}

}  // namespace

at::Tensor HessianOperator::apply_finite_difference(const at::Tensor& v) {
  const double norm = v.norm().item<double>();
  if (norm == 0) return at::zeros_like(v);
  const double eps = options_.fd_epsilon();
  const std::vector<at::Tensor> step = objective_.unflatten(v * (eps / norm));
  const auto& params = objective_.parameters();
  std::vector<at::Tensor> anchor;
  {
    torch::NoGradGuard no_grad;
    for (const auto& p : params) anchor.push_back(p.tensor.detach().clone());
  }
  auto move_to = [&](double sign) {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i) params[i].tensor.data().copy_(anchor[i]).add_(step[i], sign);
  };
  struct Restore {
    const std::vector<NamedParameter>& params;
    const std::vector<at::Tensor>& anchor;
    ~Restore() {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < params.size(); ++i) params[i].tensor.data().copy_(anchor[i]);
    }
  } restore{params, anchor};
  move_to(+1.0);
  const at::Tensor plus = full_gradient(objective_);
  move_to(-1.0);
  const at::Tensor minus = full_gradient(objective_);
  return (plus - minus) * (norm / (2.0 * eps));
}

GradientResult gradient(const Objective& objective) {
  MeasurementScope scope(objective, /*snapshot_parameters=*/false);
  HessianOperator op(objective, HvpOptions().graph_memory_mb(0));
  GradientResult r;
  r.loss = op.loss();
  r.gradient = op.gradient();
  double total = 0;
  for (size_t i = 0; i < objective.parameters().size(); ++i) {
    const double n =
        r.gradient.narrow(0, objective.offset(i), objective.parameters()[i].tensor.numel()).norm().item<double>();
    r.names.push_back(objective.parameters()[i].name);
    r.layer_norms.push_back(n);
    total += n * n;
  }
  r.norm = std::sqrt(total);
  return r;
}

}  // namespace flatmin::geometry
