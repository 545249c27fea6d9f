#include "flatmin/training/run.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>
#include <torch/utils.h>

#include "flatmin/core/error.h"
#include "flatmin/core/seed.h"
#include "flatmin/optim/regularizers.h"

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
                 {"two_point", m.two_point()},
                 {"rho", optim::resolved_rho(m)},
                 {"asam_eta", m.asam_eta()},
                 {"rsam_sigma", m.rsam_sigma()},
                 {"rsam_lambda", m.rsam_lambda()},
                 {"rsam_sigma_start", m.rsam_sigma_start()},
                 {"rsam_rho_end", m.rsam_rho_end()},
                 {"bsam_train_size", m.bsam_train_size()},
                 {"bsam_prior_precision", m.bsam_prior_precision()},
                 {"bsam_damping", m.bsam_damping()},
                 {"bsam_init_precision", m.bsam_init_precision()},
                 {"bsam_beta1", m.bsam_beta1()},
                 {"bsam_beta2", m.bsam_beta2()},
                 {"crsam_alpha", m.crsam_alpha()},
                 {"crsam_beta", m.crsam_beta()}};
  j["loss"] = {{"label_smoothing", loss_.label_smoothing()}};
  j["l2sp"] = l2sp_;
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
                  {"drop_last", t.drop_last()},
                  {"augment", t.augment().enabled()},
                  {"augment_padding", t.augment().padding()},
                  {"augment_flip", t.augment().flip()}};
  return j.dump(indent);
}

RunResult run_training(const RunConfig& config, const data::TrainTest& data, const RunStartCallback& on_start,
                       const Trainer::EpochCallback& on_epoch, Progress* progress) {
  // Validate the cheap things first (bSAM's N is known only once the split is made).
  optim::MethodSpec method_spec = config.method();
  optim::make_method(optim::MethodSpec(method_spec).bsam_train_size(std::max<int64_t>(method_spec.bsam_train_size(), 1)));
  optim::check_base_for_method(method_spec, config.optimizer());
  config.trainer().lr_schedule().validate();
  const LossFn loss = make_loss(config.loss());
  check(std::isfinite(config.l2sp()) && config.l2sp() >= 0, "L2-SP lambda must be finite and >= 0");

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

  if (method_spec.bsam_train_size() == 0) method_spec.bsam_train_size(run.splits.train.size());
  run.optimizer = optim::make_perturbed_optimizer(
      run.model->parameters(), method_spec, config.optimizer(),
      optim::PerturbedOptimizerOptions()
          .seed(derive_seed(config.seed(), SeedStream::kNoise))
          .max_grad_norm(config.max_grad_norm())
          .accumulate_in_grad(true));  // the Trainer's closure never zeroes .grad
  run.optimizer->track_buffers(run.model->buffers());
  if (config.l2sp() > 0) run.optimizer->add_gradient_term(optim::L2Sp(run.model->parameters(), config.l2sp()));

  TrainerOptions trainer_options = config.trainer();
  trainer_options.seed(derive_seed(config.seed(), SeedStream::kShuffle));
  if (trainer_options.augment().enabled()) {
    trainer_options.augment().seed(derive_seed(config.seed(), SeedStream::kAugment));
    if (trainer_options.augment().fill().empty()) {
      // Pad with what a black pixel became under the split's standardisation.
      std::vector<double> fill;
      for (int64_t c = 0; c < run.splits.channel_mean.numel(); ++c)
        fill.push_back(-run.splits.channel_mean[c].item<double>() / run.splits.channel_std[c].item<double>());
      trainer_options.augment().fill(fill);
    }
  }
  Trainer trainer(run.model, run.optimizer, trainer_options);
  trainer.set_loss(loss);
  if (on_start) on_start(run);
  run.history = trainer.fit(run.splits, on_epoch, progress);
  return run;
}

}  // namespace flatmin::training
