#include "flatmin/training/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn/functional/loss.h>
#include <torch/serialize/archive.h>
#include <torch/utils.h>
#include <nlohmann/json.hpp>

#include "flatmin/core/error.h"
#include "flatmin/core/stop_points.h"

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

// A CPU batch on `device`: through pinned memory, so that the copy does not wait for the device's queue.
at::Tensor to_device(const at::Tensor& t, const c10::Device& device) {
  if (device.is_cpu()) return t;
  return (device.is_cuda() ? t.pin_memory() : t).to(device, /*non_blocking=*/true);
}

// The rows [first, end) of n that process `rank` of `count` takes: contiguous, in rank order, sizes differing
// by at most one (each process's shard of a batch, its share of an evaluated split).
std::pair<int64_t, int64_t> rows_of(int64_t n, int rank, int count) {
  return {n * rank / count, n * (rank + 1) / count};
}

std::string fmt_double(const char* format, double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

}  // namespace

namespace {

// The summed loss (double) and the number of correct predictions (long) of `model` on `data`, where the model
// is: one read back per evaluation, not two per batch (a wait for the device's queue on a GPU).
std::pair<at::Tensor, at::Tensor> evaluation_sums(const models::Model& model, const data::Dataset& data,
                                                  int64_t batch_size) {
  check(batch_size >= 1, "evaluation batch size must be >= 1");
  torch::nn::Module& module = *model.module();
  const bool was_training = module.is_training();
  module.eval();
  torch::NoGradGuard no_grad;
  const c10::Device device = module_device(module);
  at::Tensor loss_sum = at::zeros({}, at::TensorOptions().dtype(at::kDouble).device(device));
  at::Tensor correct = at::zeros({}, at::TensorOptions().dtype(at::kLong).device(device));
  for (int64_t start = 0; start < data.size(); start += batch_size) {
    const int64_t n = std::min(batch_size, data.size() - start);
    const at::Tensor logits = model.forward(to_device(data.inputs.narrow(0, start, n), device));
    const at::Tensor targets = to_device(data.targets.narrow(0, start, n), device);
    loss_sum += torch::nn::functional::cross_entropy(
                    logits, targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                    .to(at::kDouble);
    correct += logits.argmax(1).eq(targets).sum();
  }
  module.train(was_training);
  return {loss_sum, correct};
}

EvalResult from_sums(const at::Tensor& loss_sum, const at::Tensor& correct, int64_t count) {
  EvalResult result;
  result.count = count;
  if (count == 0) {
    result.loss = result.accuracy = std::numeric_limits<double>::quiet_NaN();
    return result;
  }
  result.loss = loss_sum.item<double>() / static_cast<double>(count);
  result.accuracy = static_cast<double>(correct.item<int64_t>()) / static_cast<double>(count);
  return result;
}

}  // namespace

EvalResult evaluate(const models::Model& model, const data::Dataset& data, int64_t batch_size) {
  check(batch_size >= 1, "evaluation batch size must be >= 1");
  if (data.size() == 0) return from_sums({}, {}, 0);
  const auto [loss_sum, correct] = evaluation_sums(model, data, batch_size);
  return from_sums(loss_sum, correct, data.size());
}

Trainer::Trainer(models::Model model, std::shared_ptr<optim::PerturbedOptimizer> optimizer, TrainerOptions options)
    : model_(std::move(model)), optimizer_(std::move(optimizer)), options_(std::move(options)), loss_(cross_entropy) {
  check(static_cast<bool>(model_), "Trainer: model is empty");
  check(optimizer_ != nullptr, "Trainer: optimizer is null");
  check(options_.epochs() >= 1, "epochs must be >= 1, got " + std::to_string(options_.epochs()));
  check(options_.batch_size() >= 1, "batch size must be >= 1, got " + std::to_string(options_.batch_size()));
  check(options_.eval_batch_size() >= 1, "evaluation batch size must be >= 1");
  check(options_.train_eval_size() >= 0, "train evaluation size must be >= 0");
  check(options_.eval_every() >= 0, "eval_every must be >= 0");
  check(options_.on_divergence() == DivergencePolicy::kStop || optimizer_->options().check_finite_every() == 1,
        "skipping non-finite steps needs every step checked (a finiteness check every " +
            std::to_string(optimizer_->options().check_finite_every()) + " steps cannot skip the steps between)");
  options_.lr_schedule().validate();
}

void Trainer::share_evaluation(int rank, int count, std::function<void(const std::vector<at::Tensor>&)> sum) {
  check(count >= 1 && rank >= 0 && rank < count && (count == 1 || sum), "Trainer: evaluation share " +
                                                                           std::to_string(rank) + " of " +
                                                                           std::to_string(count));
  eval_rank_ = rank;
  eval_count_ = count;
  eval_sum_ = std::move(sum);
}

EvalResult Trainer::score(const data::Dataset& data) const {
  if (eval_count_ == 1) return evaluate(model_, data, options_.eval_batch_size());
  const int64_t n = data.size();
  const auto [lo, hi] = rows_of(n, eval_rank_, eval_count_);
  const data::Dataset share{data.inputs.narrow(0, lo, hi - lo), data.targets.narrow(0, lo, hi - lo), data.num_classes};
  auto [loss_sum, correct] = evaluation_sums(model_, share, options_.eval_batch_size());
  eval_sum_({loss_sum, correct});
  return from_sums(loss_sum, correct, n);
}

void Trainer::set_shard(int rank, int count) {
  check(count >= 1 && rank >= 0 && rank < count, "Trainer: shard " + std::to_string(rank) + " of " + std::to_string(count));
  check(count <= options_.batch_size(), "a batch of " + std::to_string(options_.batch_size()) +
                                            " cannot be split across " + std::to_string(count) + " processes");
  shard_rank_ = rank;
  shard_count_ = count;
}

std::vector<EpochMetrics> Trainer::fit(const data::Splits& splits, const EpochCallback& on_epoch, Progress* progress) {
  check(splits.train.size() > 0, "the training split is empty");
  data::Batcher batcher(splits.train, options_.batch_size(), /*shuffle=*/true, options_.seed(), options_.drop_last());
  const int64_t steps_per_epoch = batcher.num_batches();
  check(steps_per_epoch > 0, "no full batch of " + std::to_string(options_.batch_size()) + " in a training split of " +
                                 std::to_string(splits.train.size()) + " examples (drop_last)");
  if (shard_count_ > 1 && !options_.drop_last()) {
    // Said before the first step, not when the epoch's last batch comes.
    const int64_t last = splits.train.size() - (steps_per_epoch - 1) * options_.batch_size();
    check(last >= shard_count_, "the last batch of each epoch (" + std::to_string(last) + " of " +
                                    std::to_string(splits.train.size()) + " examples) is smaller than the " +
                                    std::to_string(shard_count_) +
                                    " processes: change the batch size, the number of examples or of processes");
  }
  const data::Dataset train_eval = evaluation_subset(splits.train, options_.train_eval_size(), options_.seed());
  std::unique_ptr<data::Augmenter> augment;
  if (options_.augment().enabled()) augment = std::make_unique<data::Augmenter>(options_.augment());
  auto& groups = optimizer_->param_groups();

  TrainerState state;
  if (resume_) {
    state = std::move(*resume_);
    resume_.reset();
    // batch == steps_per_epoch: stopped after the epoch's last step, before its scoring (which comes next).
    check(state.epoch >= 0 && state.batch >= 0 && state.batch <= steps_per_epoch,
          "resume: the checkpoint's position (epoch " + std::to_string(state.epoch + 1) + ", batch " +
              std::to_string(state.batch) + ") does not fit this run's " + std::to_string(steps_per_epoch) +
              " batches per epoch");
    check(static_cast<int64_t>(state.history.size()) == state.epoch,
          "resume: the checkpoint's metrics do not match its epoch");
    check(state.initial_lr.size() == groups.size(), "resume: the optimizer's parameter groups changed");
    check(state.shuffle_state.defined(), "resume: the checkpoint lacks the shuffling state");
    if (augment) {
      check(state.augment_state.defined(), "resume: the checkpoint lacks the augmentation state");
      augment->set_generator_state(state.augment_state);
    }
  } else {
    state.shuffle_state = batcher.generator_state();
    for (const auto& group : groups) state.initial_lr.push_back(group.options().get_lr());
  }
  // Everything a checkpoint needs, at this moment (between two steps).
  auto snapshot = [&] {
    TrainerState s = state;
    if (augment) s.augment_state = augment->generator_state();
    return s;
  };

  torch::nn::Module& module = *model_.module();
  const c10::Device device = module_device(module);
  // Off the CPU the step's loss stays on the device and is read back only every check_every steps (when
  // the optimizer's finiteness check waits anyway), before checkpoints and at the epoch's end.
  const int64_t check_every = optimizer_->options().check_finite_every();
  at::Tensor unread_objective;
  int64_t unread_count = 0;
  auto read_objective = [&] {
    if (unread_count == 0) return;
    state.objective_sum += unread_objective.item<double>();
    state.objective_count += unread_count;
    unread_objective = at::Tensor();
    unread_count = 0;
  };
  // Before a checkpoint or the epoch's scores: the steps not yet checked must be finite.
  auto settle = [&](int64_t epoch, int64_t b) {
    const std::string non_finite = optimizer_->settle_finite_check();
    read_objective();
    if (non_finite.empty()) return;
    throw TrainingDiverged("training diverged by epoch " + std::to_string(epoch + 1) + ", step " +
                               std::to_string(b + 1) + ": " + non_finite +
                               "; resume from the last checkpoint with a lower learning rate or noise scale",
                           snapshot());
  };
  const int64_t epochs = options_.epochs();
  for (; state.epoch < epochs; ++state.epoch) {
    const int64_t epoch = state.epoch;
    optimizer_->set_epoch(epoch, epochs);
    batcher.set_generator_state(state.shuffle_state);  // the state before this epoch's permutation
    batcher.start_epoch();
    module.train();
    if (progress) progress->start("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(epochs), steps_per_epoch);
    auto t0 = std::chrono::steady_clock::now();
    auto lap = [&] {
      const auto now = std::chrono::steady_clock::now();
      state.train_seconds += std::chrono::duration<double>(now - t0).count();
      t0 = now;
    };
    while (state.batch < steps_per_epoch) {
      const int64_t b = state.batch;
      // The learning rate is a pure function of the position in the run.
      const double factor = options_.lr_schedule().factor(epoch * steps_per_epoch + b, steps_per_epoch, epochs);
      for (size_t g = 0; g < groups.size(); ++g) groups[g].options().set_lr(state.initial_lr[g] * factor);
      data::Batch batch = batcher.batch(b);
      if (augment) batch.inputs = (*augment)(batch.inputs);
      double loss_scale = 1.0;
      if (shard_count_ > 1) {
        const int64_t n = batch.inputs.size(0);  // >= shard_count_: checked before the first step
        const auto [lo, hi] = rows_of(n, shard_rank_, shard_count_);
        loss_scale = static_cast<double>((hi - lo) * shard_count_) / static_cast<double>(n);
        batch.inputs = batch.inputs.narrow(0, lo, hi - lo);
        batch.targets = batch.targets.narrow(0, lo, hi - lo);
      }
      batch.inputs = to_device(batch.inputs, device);
      batch.targets = to_device(batch.targets, device);
      const at::Tensor loss = optimizer_->step([&] {
        at::Tensor l;
        {
          AutocastScope autocast(device, options_.precision());  // one scope per point: W moves between them
          l = loss_(model_.forward(batch.inputs), batch.targets);
        }
        if (loss_scale != 1.0) l = l * loss_scale;
        l.backward();
        return l;
      });
      if (optimizer_->last_step_skipped()) {
        if (options_.on_divergence() == DivergencePolicy::kStop) {
          lap();
          throw TrainingDiverged("training diverged at epoch " + std::to_string(epoch + 1) + ", step " +
                                     std::to_string(b + 1) + ": " + optimizer_->last_step_non_finite() +
                                     "; the step was not applied (lower the learning rate or the noise scale, or "
                                     "skip such steps with --on-divergence skip)",
                                 snapshot());
        }
        ++state.skipped_steps;
      } else if (device.is_cpu()) {
        state.objective_sum += loss.item<double>();
        ++state.objective_count;
      } else {
        unread_objective = unread_count == 0 ? loss : unread_objective + loss;
        ++unread_count;
        if (optimizer_->steps_taken() % check_every == 0) read_objective();
      }
      ++state.batch;
      if (progress)
        progress->update(state.batch, "loss " + fmt_double("%.4f", state.objective_sum /
                                                                       static_cast<double>(std::max<int64_t>(
                                                                           state.objective_count, 1))));
      stop_point("step", optimizer_->steps_taken());
      const bool stop = stop_requested_ && stop_requested_();
      const bool periodic = options_.checkpoint_every_steps() > 0 &&
                            optimizer_->steps_taken() % options_.checkpoint_every_steps() == 0 &&
                            state.batch < steps_per_epoch;  // the epoch's end writes its own
      if (stop || periodic) {
        settle(epoch, b);
        lap();
        if (checkpoint_writer_) checkpoint_writer_(snapshot());
        t0 = std::chrono::steady_clock::now();
      }
      if (stop)
        throw TrainingInterrupted("training interrupted after epoch " + std::to_string(epoch + 1) + ", step " +
                                      std::to_string(b + 1),
                                  snapshot());
    }
    settle(epoch, steps_per_epoch - 1);
    lap();

    EpochMetrics m;
    m.epoch = epoch + 1;
    m.steps = optimizer_->steps_taken();
    m.gradient_evaluations = optimizer_->gradient_evaluations();
    // The last step's rate, from the schedule: a run resumed after that step has not set it in this process.
    m.lr = state.initial_lr.front() *
           options_.lr_schedule().factor(epoch * steps_per_epoch + steps_per_epoch - 1, steps_per_epoch, epochs);
    m.method_scalars = optimizer_->method().scalars();
    m.objective = state.objective_count > 0 ? state.objective_sum / static_cast<double>(state.objective_count)
                                            : std::numeric_limits<double>::quiet_NaN();
    m.train_seconds = state.train_seconds;
    m.ms_per_step = 1000.0 * state.train_seconds / static_cast<double>(steps_per_epoch);
    m.skipped_steps = state.skipped_steps;
    stop_point("eval", epoch + 1);
    const auto eval0 = std::chrono::steady_clock::now();
    // Validation every epoch (the learning curves); the test set and the clean training subset after the
    // last epoch, and every eval_every epochs when asked (the other rows: NaN, count 0).
    m.val = score(splits.val);
    const bool last = epoch + 1 == epochs;
    if (last || (options_.eval_every() > 0 && (epoch + 1) % options_.eval_every() == 0)) {
      m.train = score(train_eval);
      m.test = score(splits.test);
    } else {
      m.train = m.test = evaluate(model_, data::Dataset{}, 1);
    }
    const auto eval1 = std::chrono::steady_clock::now();
    m.eval_seconds = std::chrono::duration<double>(eval1 - eval0).count();
    if (epoch_measure_) {
      stop_point("measure", epoch + 1);
      m.measures = epoch_measure_(m);
    }
    m.measure_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - eval1).count();
    state.history.push_back(m);
    if (on_epoch) on_epoch(m);
    // The next epoch: its permutation is drawn from the generator as this epoch's left it.
    state.shuffle_state = batcher.generator_state();
    state.batch = 0;
    state.objective_sum = 0;
    state.objective_count = 0;
    state.train_seconds = 0;
    if (checkpoint_writer_) {
      TrainerState next = snapshot();
      next.epoch = epoch + 1;
      checkpoint_writer_(next);
    }
  }
  return state.history;
}

DivergencePolicy parse_divergence_policy(const std::string& name) {
  if (name == "stop") return DivergencePolicy::kStop;
  if (name == "skip") return DivergencePolicy::kSkip;
  throw Error("unknown divergence policy '" + name + "' (valid: stop, skip)");
}

namespace {

nlohmann::json eval_to_json(const EvalResult& r) {
  return {{"loss", std::isfinite(r.loss) ? nlohmann::json(r.loss) : nlohmann::json()},
          {"accuracy", std::isfinite(r.accuracy) ? nlohmann::json(r.accuracy) : nlohmann::json()},
          {"count", r.count}};
}

EvalResult eval_from_json(const nlohmann::json& j) {
  EvalResult r;
  r.loss = j.at("loss").is_null() ? std::numeric_limits<double>::quiet_NaN() : j.at("loss").get<double>();
  r.accuracy = j.at("accuracy").is_null() ? std::numeric_limits<double>::quiet_NaN() : j.at("accuracy").get<double>();
  r.count = j.at("count").get<int64_t>();
  return r;
}

// Metrics go into the checkpoint as JSON text with every double written exactly (17 digits round-trip).
std::string history_to_json(const std::vector<EpochMetrics>& history) {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& m : history) {
    nlohmann::json scalars = nlohmann::json::array();
    for (const auto& [name, value] : m.method_scalars) scalars.push_back({name, value});
    nlohmann::json measures = nlohmann::json::array();
    for (const auto& [name, value] : m.measures)
      measures.push_back({name, std::isfinite(value) ? nlohmann::json(value) : nlohmann::json()});
    rows.push_back({{"epoch", m.epoch},
                    {"steps", m.steps},
                    {"gradient_evaluations", m.gradient_evaluations},
                    {"lr", m.lr},
                    {"method_scalars", scalars},
                    {"objective", std::isfinite(m.objective) ? nlohmann::json(m.objective) : nlohmann::json()},
                    {"train", eval_to_json(m.train)},
                    {"val", eval_to_json(m.val)},
                    {"test", eval_to_json(m.test)},
                    {"train_seconds", m.train_seconds},
                    {"ms_per_step", m.ms_per_step},
                    {"eval_seconds", m.eval_seconds},
                    {"measure_seconds", m.measure_seconds},
                    {"skipped_steps", m.skipped_steps},
                    {"measures", measures}});
  }
  return rows.dump();
}

std::vector<EpochMetrics> history_from_json(const std::string& text) {
  std::vector<EpochMetrics> history;
  for (const auto& row : nlohmann::json::parse(text)) {
    EpochMetrics m;
    m.epoch = row.at("epoch").get<int64_t>();
    m.steps = row.at("steps").get<int64_t>();
    m.gradient_evaluations = row.at("gradient_evaluations").get<int64_t>();
    m.lr = row.at("lr").get<double>();
    for (const auto& s : row.at("method_scalars")) m.method_scalars.emplace_back(s.at(0).get<std::string>(), s.at(1).get<double>());
    m.objective = row.at("objective").is_null() ? std::numeric_limits<double>::quiet_NaN() : row.at("objective").get<double>();
    m.train = eval_from_json(row.at("train"));
    m.val = eval_from_json(row.at("val"));
    m.test = eval_from_json(row.at("test"));
    m.train_seconds = row.at("train_seconds").get<double>();
    m.ms_per_step = row.at("ms_per_step").get<double>();
    m.eval_seconds = row.value("eval_seconds", 0.0);
    m.measure_seconds = row.value("measure_seconds", 0.0);
    m.skipped_steps = row.at("skipped_steps").get<int64_t>();
    for (const auto& s : row.at("measures"))
      m.measures.emplace_back(s.at(0).get<std::string>(),
                              s.at(1).is_null() ? std::numeric_limits<double>::quiet_NaN() : s.at(1).get<double>());
    history.push_back(std::move(m));
  }
  return history;
}

}  // namespace

void TrainerState::save(torch::serialize::OutputArchive& archive) const {
  archive.write("epoch", c10::IValue(epoch));
  archive.write("batch", c10::IValue(batch));
  archive.write("shuffle_state", shuffle_state);
  if (augment_state.defined()) archive.write("augment_state", augment_state);
  archive.write("objective_sum", c10::IValue(objective_sum));
  archive.write("objective_count", c10::IValue(objective_count));
  archive.write("train_seconds", c10::IValue(train_seconds));
  archive.write("skipped_steps", c10::IValue(skipped_steps));
  archive.write("initial_lr", c10::IValue(c10::List<double>(initial_lr)));
  archive.write("history", c10::IValue(history_to_json(history)));
}

void TrainerState::load(torch::serialize::InputArchive& archive) {
  c10::IValue v;
  auto read = [&](const char* key) -> const c10::IValue& {
    archive.read(key, v);
    return v;
  };
  epoch = read("epoch").toInt();
  batch = read("batch").toInt();
  archive.read("shuffle_state", shuffle_state);
  if (!archive.try_read("augment_state", augment_state)) augment_state = at::Tensor();
  objective_sum = read("objective_sum").toDouble();
  objective_count = read("objective_count").toInt();
  train_seconds = read("train_seconds").toDouble();
  skipped_steps = read("skipped_steps").toInt();
  initial_lr = read("initial_lr").toDoubleVector();
  try {
    history = history_from_json(read("history").toStringRef());
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("trainer state: malformed metrics history: ") + e.what());
  }
}

}  // namespace flatmin::training
