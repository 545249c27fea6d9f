#include "flatmin/training/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include "flatmin/core/error.h"

namespace flatmin::training {
namespace {

at::Tensor cross_entropy(const at::Tensor& logits, const at::Tensor& targets) {
  return torch::nn::functional::cross_entropy(logits, targets);
}

// A fixed random subset of the training split for the per-epoch clean evaluation.
data::Dataset evaluation_subset(const data::Dataset& train, int64_t size, uint64_t seed) {
  if (size <= 0 || size >= train.size()) return train;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed ^ 0x5eed5eedULL);
  at::Tensor order = at::randperm(train.size(), generator, at::kLong);
  return train.subset(order.narrow(0, 0, size));
}

std::string fmt_double(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

}  // namespace

EvalResult evaluate(const models::Model& model, const data::Dataset& data, int64_t batch_size) {
  check(batch_size >= 1, "evaluation batch size must be >= 1");
  EvalResult result;
  result.count = data.size();
  if (result.count == 0) {
    result.loss = result.accuracy = std::numeric_limits<double>::quiet_NaN();
    return result;
  }
  torch::nn::Module& module = *model.module();
  const bool was_training = module.is_training();
  module.eval();
  torch::NoGradGuard no_grad;
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t start = 0; start < result.count; start += batch_size) {
    const int64_t n = std::min(batch_size, result.count - start);
    const at::Tensor logits = model.forward(data.inputs.narrow(0, start, n));
    const at::Tensor targets = data.targets.narrow(0, start, n);
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .item<double>();
    correct += logits.argmax(1).eq(targets).sum().item<int64_t>();
  }
  module.train(was_training);
  result.loss = loss_sum / static_cast<double>(result.count);
  result.accuracy = static_cast<double>(correct) / static_cast<double>(result.count);
  return result;
}

Trainer::Trainer(models::Model model, std::shared_ptr<optim::PerturbedOptimizer> optimizer, TrainerOptions options)
    : model_(std::move(model)), optimizer_(std::move(optimizer)), options_(std::move(options)), loss_(cross_entropy) {
  check(static_cast<bool>(model_), "Trainer: model is empty");
  check(optimizer_ != nullptr, "Trainer: optimizer is null");
  check(options_.epochs() >= 1, "epochs must be >= 1, got " + std::to_string(options_.epochs()));
  check(options_.batch_size() >= 1, "batch size must be >= 1, got " + std::to_string(options_.batch_size()));
  check(options_.eval_batch_size() >= 1, "evaluation batch size must be >= 1");
  check(options_.train_eval_size() >= 0, "train evaluation size must be >= 0");
  options_.lr_schedule().validate();
}

std::vector<EpochMetrics> Trainer::fit(const data::Splits& splits, const EpochCallback& on_epoch, Progress* progress) {
  check(splits.train.size() > 0, "the training split is empty");
  data::Batcher batcher(splits.train, options_.batch_size(), /*shuffle=*/true, options_.seed(), options_.drop_last());
  const int64_t steps_per_epoch = batcher.num_batches();
  check(steps_per_epoch > 0, "no full batch of " + std::to_string(options_.batch_size()) + " in a training split of " +
                                 std::to_string(splits.train.size()) + " examples (drop_last)");
  const data::Dataset train_eval = evaluation_subset(splits.train, options_.train_eval_size(), options_.seed());
  std::unique_ptr<data::Augmenter> augment;
  if (options_.augment().enabled()) augment = std::make_unique<data::Augmenter>(options_.augment());

  std::vector<double> initial_lr;
  for (const auto& group : optimizer_->param_groups()) initial_lr.push_back(group.options().get_lr());

  torch::nn::Module& module = *model_.module();
  std::vector<EpochMetrics> history;
  const int64_t epochs = options_.epochs();
  int64_t step = optimizer_->steps_taken();
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    optimizer_->set_epoch(epoch, epochs);
    batcher.start_epoch();
    module.train();
    if (progress) progress->start("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(epochs), steps_per_epoch);
    double objective_sum = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t b = 0; b < steps_per_epoch; ++b, ++step) {
      const double factor = options_.lr_schedule().factor(step, steps_per_epoch, epochs);
      auto& groups = optimizer_->param_groups();
      for (size_t g = 0; g < groups.size(); ++g) groups[g].options().set_lr(initial_lr[g] * factor);
      data::Batch batch = batcher.batch(b);
      if (augment) batch.inputs = (*augment)(batch.inputs);
      const at::Tensor loss = optimizer_->step([&] {
        at::Tensor l = loss_(model_.forward(batch.inputs), batch.targets);
        l.backward();
        return l;
      });
      const double value = loss.item<double>();
      if (!std::isfinite(value))
        throw Error("training diverged: loss is " + fmt_double("%g", value) + " at epoch " + std::to_string(epoch + 1) +
                    ", step " + std::to_string(b + 1) + " (lower the learning rate or the noise scale)");
      objective_sum += value;
      if (progress) progress->update(b + 1, "loss " + fmt_double("%.4f", objective_sum / static_cast<double>(b + 1)));
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    EpochMetrics m;
    m.epoch = epoch + 1;
    m.steps = optimizer_->steps_taken();
    m.gradient_evaluations = optimizer_->gradient_evaluations();
    m.lr = optimizer_->param_groups().front().options().get_lr();
    m.method_scalars = optimizer_->method().scalars();
    m.objective = objective_sum / static_cast<double>(steps_per_epoch);
    m.train_seconds = seconds;
    m.ms_per_step = 1000.0 * seconds / static_cast<double>(steps_per_epoch);
    m.train = evaluate(model_, train_eval, options_.eval_batch_size());
    m.val = evaluate(model_, splits.val, options_.eval_batch_size());
    m.test = evaluate(model_, splits.test, options_.eval_batch_size());
    history.push_back(m);
    if (on_epoch) on_epoch(m);
  }
  return history;
}

}  // namespace flatmin::training
