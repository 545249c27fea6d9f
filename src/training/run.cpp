#include "flatmin/training/run.h"

#include <nlohmann/json.hpp>
#include <torch/utils.h>

#include "flatmin/core/seed.h"

namespace flatmin::training {

std::string RunConfig::to_json(int indent) const {
  const auto& m = method_;
  const auto& o = optimizer_;
  const auto& t = trainer_;
  nlohmann::ordered_json j;
  j["seed"] = seed_;
  j["method"] = {{"name", m.name()},
                 {"sigma", m.sigma()},
                 {"noise", noise::to_string(m.law())},
                 {"sigma_schedule", noise::to_string(m.sigma_schedule())},
                 {"sigma_warmup_epochs", m.sigma_warmup_epochs()},
                 {"k", m.k()},
                 {"two_point", m.two_point()}};
  j["model"] = {{"name", model_.name()}, {"width", model_.width()}};
  j["split"] = {{"val_size", split_.val_size()},
                {"classes", split_.classes()},
                {"train_per_class", split_.train_per_class()},
                {"test_size", split_.test_size()},
                {"normalize", split_.normalize()}};
  j["optimizer"] = {{"name", o.name()},         {"lr", o.lr()},       {"momentum", o.momentum()},
                    {"nesterov", o.nesterov()}, {"weight_decay", o.weight_decay()},
                    {"beta1", o.beta1()},       {"beta2", o.beta2()}, {"eps", o.eps()},
                    {"max_grad_norm", max_grad_norm_}};
  j["trainer"] = {{"epochs", t.epochs()},
                  {"batch_size", t.batch_size()},
                  {"lr_schedule", to_string(t.lr_schedule().kind())},
                  {"lr_step_epochs", t.lr_schedule().step_epochs()},
                  {"lr_gamma", t.lr_schedule().gamma()},
                  {"eval_batch_size", t.eval_batch_size()},
                  {"train_eval_size", t.train_eval_size()},
                  {"drop_last", t.drop_last()}};
  return j.dump(indent);
}

RunResult run_training(const RunConfig& config, const data::TrainTest& data, const RunStartCallback& on_start,
                       const Trainer::EpochCallback& on_epoch, Progress* progress) {
  // Validate the cheap things first.
  auto method = optim::make_method(config.method());
  config.trainer().lr_schedule().validate();

  RunResult run;
  data::SplitOptions split = config.split();
  split.seed(derive_seed(config.seed(), SeedStream::kDataSplit));
  run.splits = data::make_splits(data, split);

  torch::manual_seed(derive_seed(config.seed(), SeedStream::kModelInit));
  models::ModelSpec spec = config.model();
  spec.in_channels(run.splits.train.inputs.size(1))
      .image_size(run.splits.train.inputs.size(2))
      .num_classes(run.splits.train.num_classes);
  run.spec = spec;
  run.model = models::make_model(spec);
  run.parameter_count = models::count_parameters(*run.model.module());

  auto base = optim::make_base_optimizer(run.model->parameters(), config.optimizer());
  run.optimizer = std::make_shared<optim::PerturbedOptimizer>(
      base, method,
      optim::PerturbedOptimizerOptions()
          .seed(derive_seed(config.seed(), SeedStream::kNoise))
          .max_grad_norm(config.max_grad_norm())
          .accumulate_in_grad(true));  // the Trainer's closure never zeroes .grad
  run.optimizer->track_buffers(run.model->buffers());

  TrainerOptions trainer_options = config.trainer();
  trainer_options.seed(derive_seed(config.seed(), SeedStream::kShuffle));
  Trainer trainer(run.model, run.optimizer, trainer_options);
  if (on_start) on_start(run);
  run.history = trainer.fit(run.splits, on_epoch, progress);
  return run;
}

}  // namespace flatmin::training
