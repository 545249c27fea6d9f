#include "flatmin/training/run.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>
#include <torch/utils.h>

#include "flatmin/core/error.h"
#include "flatmin/core/seed.h"
#include "flatmin/models/scripted.h"
#include "flatmin/training/checkpoint.h"
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
  // bSAM's later options only when set: a config.json written before them stays the same (resume compares it).
  if (m.bsam_noise_std() > 0) j["method"]["bsam_noise_std"] = m.bsam_noise_std();
  if (m.bsam_prior_mean() != "zero") j["method"]["bsam_prior_mean"] = m.bsam_prior_mean();
  if (m.bsam_bn_statistics() != "both") j["method"]["bsam_bn_statistics"] = m.bsam_bn_statistics();
  j["loss"] = {{"label_smoothing", loss_.label_smoothing()}};
  j["l2sp"] = l2sp_;
  j["model"] = {{"name", model_.name()}, {"width", model_.width()}};
  if (!model_.file().empty()) j["model"]["file"] = model_.file();
  if (model_.activation() != "relu") j["model"]["activation"] = model_.activation();  // older configs stay the same
  j["split"] = {{"val_size", split_.val_size()},
                {"classes", split_.classes()},
                {"train_per_class", split_.train_per_class()},
                {"test_size", split_.test_size()},
                {"normalize", split_.normalize()},
                {"mean", split_.mean()},
                {"std", split_.std()},
                {"label_noise", split_.label_noise()}};
  j["init"] = {{"path", init_.path()},
               {"checksum", init_.checksum()},
               {"reset_head", init_.reset_head()},
               {"freeze", init_.freeze()}};
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
                  {"eval_every", t.eval_every()},
                  {"train_eval_size", t.train_eval_size()},
                  {"drop_last", t.drop_last()},
                  {"lr_min_factor", t.lr_schedule().min_factor()},
                  {"augment", t.augment().enabled()},
                  {"augment_padding", t.augment().padding()},
                  {"augment_flip", t.augment().flip()},
                  {"on_divergence", t.on_divergence() == DivergencePolicy::kSkip ? "skip" : "stop"}};
  // Written only when not fp32: configs (and so resumable checkpoints) of fp32 runs stay as they were.
  if (t.precision() != Precision::kFloat32) j["trainer"]["precision"] = to_string(t.precision());
  return j.dump(indent);
}

RunConfig RunConfig::from_json(const std::string& text) {
  try {
    const auto j = nlohmann::json::parse(text);
    const auto& m = j.at("method");
    const auto& o = j.at("optimizer");
    const auto& t = j.at("trainer");
    const auto& sp = j.at("split");
    RunConfig c;
    c.seed(j.at("seed").get<uint64_t>());
    c.method(optim::MethodSpec()
                 .name(m.at("name").get<std::string>())
                 .sigma(m.at("sigma").get<double>())
                 .law(noise::parse_noise_law(m.at("noise").get<std::string>()))
                 .sigma_schedule(noise::parse_schedule_kind(m.at("sigma_schedule").get<std::string>()))
                 .sigma_warmup_epochs(m.at("sigma_warmup_epochs").get<int64_t>())
                 .k(m.at("k").get<int64_t>())
                 .two_point(m.at("two_point").get<bool>())
                 .rho(m.at("rho").get<double>())
                 .asam_eta(m.at("asam_eta").get<double>())
                 .rsam_sigma(m.at("rsam_sigma").get<double>())
                 .rsam_lambda(m.at("rsam_lambda").get<double>())
                 .rsam_sigma_start(m.at("rsam_sigma_start").get<double>())
                 .rsam_rho_end(m.at("rsam_rho_end").get<double>())
                 .bsam_train_size(m.at("bsam_train_size").get<int64_t>())
                 .bsam_prior_precision(m.at("bsam_prior_precision").get<double>())
                 .bsam_damping(m.at("bsam_damping").get<double>())
                 .bsam_init_precision(m.at("bsam_init_precision").get<double>())
                 .bsam_beta1(m.at("bsam_beta1").get<double>())
                 .bsam_beta2(m.at("bsam_beta2").get<double>())
                 .crsam_alpha(m.at("crsam_alpha").get<double>())
                 .crsam_beta(m.at("crsam_beta").get<double>())
                 .bsam_noise_std(m.value("bsam_noise_std", 0.0))
                 .bsam_prior_mean(m.value("bsam_prior_mean", std::string("zero")))
                 .bsam_bn_statistics(m.value("bsam_bn_statistics", std::string("both"))));
    c.loss(LossOptions().label_smoothing(j.at("loss").at("label_smoothing").get<double>()));
    c.l2sp(j.at("l2sp").get<double>());
    c.model(models::ModelSpec()
                .name(j.at("model").at("name").get<std::string>())
                .width(j.at("model").at("width").get<int64_t>())
                .file(j.at("model").value("file", std::string()))
                .activation(j.at("model").value("activation", std::string("relu"))));
    c.split(data::SplitOptions()
                .val_size(sp.at("val_size").get<int64_t>())
                .classes(sp.at("classes").get<std::vector<int64_t>>())
                .train_per_class(sp.at("train_per_class").get<int64_t>())
                .test_size(sp.at("test_size").get<int64_t>())
                .normalize(sp.at("normalize").get<bool>())
                // Absent from configs written before fine-tuning existed: their defaults.
                .mean(sp.value("mean", std::vector<double>{}))
                .std(sp.value("std", std::vector<double>{}))
                .label_noise(sp.value("label_noise", 0.0)));
    if (j.contains("init")) {
      const auto& in = j.at("init");
      c.init(InitOptions()
                 .path(in.at("path").get<std::string>())
                 .checksum(in.at("checksum").get<std::string>())
                 .reset_head(in.at("reset_head").get<bool>())
                 .freeze(in.at("freeze").get<std::vector<std::string>>()));
    }
    c.optimizer(optim::BaseOptimizerOptions()
                    .name(o.at("name").get<std::string>())
                    .lr(o.at("lr").get<double>())
                    .momentum(o.at("momentum").get<double>())
                    .nesterov(o.at("nesterov").get<bool>())
                    .weight_decay(o.at("weight_decay").get<double>())
                    .beta1(o.at("beta1").get<double>())
                    .beta2(o.at("beta2").get<double>())
                    .eps(o.at("eps").get<double>()));
    c.max_grad_norm(o.at("max_grad_norm").get<double>());
    c.trainer(TrainerOptions()
                  .epochs(t.at("epochs").get<int64_t>())
                  .batch_size(t.at("batch_size").get<int64_t>())
                  .lr_schedule(LrSchedule()
                                   .kind(parse_lr_schedule(t.at("lr_schedule").get<std::string>()))
                                   .step_epochs(t.at("lr_step_epochs").get<int64_t>())
                                   .gamma(t.at("lr_gamma").get<double>())
                                   .min_factor(t.at("lr_min_factor").get<double>()))
                  .eval_batch_size(t.at("eval_batch_size").get<int64_t>())
                  .eval_every(t.value("eval_every", int64_t{1}))
                  .train_eval_size(t.at("train_eval_size").get<int64_t>())
                  .drop_last(t.at("drop_last").get<bool>())
                  .augment(data::AugmentOptions()
                               .enabled(t.at("augment").get<bool>())
                               .padding(t.at("augment_padding").get<int64_t>())
                               .flip(t.at("augment_flip").get<bool>()))
                  .on_divergence(parse_divergence_policy(t.at("on_divergence").get<std::string>()))
                  .precision(parse_precision(t.value("precision", std::string("fp32")))));
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("run config: ") + e.what());
  }
}

namespace {

// Copies the weights and buffers of `from` into `to` (same architecture): resuming keeps the run's own
// module objects, which the optimizer and the gradient terms already point at.
void copy_state(const models::Model& from, const models::Model& to) {
  torch::NoGradGuard no_grad;
  const auto src_params = from->named_parameters(), dst_params = to->named_parameters();
  for (const auto& p : dst_params) p.value().copy_(src_params[p.key()]);
  const auto src_buffers = from->named_buffers(), dst_buffers = to->named_buffers();
  for (const auto& b : dst_buffers) b.value().copy_(src_buffers[b.key()]);
}

// The init file named by `config`, read and checked against the checksum the config recorded.
std::pair<std::string, CheckpointContents> read_init(const RunConfig& config) {
  const std::string path = resolve_init_path(config.init().path());
  CheckpointContents pretrained = load_checkpoint(path);
  check(config.init().checksum().empty() || config.init().checksum() == pretrained.checksum(),
        path + ": the init file changed since the run was configured (crc32 " + pretrained.checksum() + ", recorded " +
            config.init().checksum() + ")");
  return {path, std::move(pretrained)};
}

int64_t check_finite_interval(const RunControl& control, DivergencePolicy policy) {
  check(control.check_finite_every() >= 0, "the finiteness check interval must be >= 0 (0 = automatic)");
  if (control.check_finite_every() > 0) return control.check_finite_every();
  return control.device().is_cpu() || policy == DivergencePolicy::kSkip ? 1 : kDeviceCheckEvery;
}

}  // namespace

RunConfig with_pretrained_defaults(RunConfig config) {
  if (config.init().path().empty()) return config;
  const auto [path, pretrained] = read_init(config);
  config.init().path(path).checksum(pretrained.checksum());
  config.model().name(pretrained.spec.name()).width(pretrained.spec.width()).file(pretrained.spec.file()).activation(
      pretrained.spec.activation());
  if (config.split().normalize() && config.split().mean().empty() && pretrained.channel_mean.defined() &&
      pretrained.channel_std.defined()) {
    config.split().mean(pretrained.mean_values());
    config.split().std(pretrained.std_values());
  }
  return config;
}

models::Model build_initial_model(const RunConfig& config, const models::ModelSpec& spec, PretrainedReport* report) {
  torch::manual_seed(derive_seed(config.seed(), SeedStream::kModelInit));
  models::Model model = models::make_model(spec);
  if (!config.init().path().empty()) {
    const auto [path, pretrained] = read_init(config);
    PretrainedReport loaded = load_pretrained(pretrained, path, spec, model, config.init());
    if (report) *report = std::move(loaded);
  } else if (models::as_scripted(model)) {
    // A TorchScript model brings its own trained weights: freezing parts of it needs no --init.
    freeze_parameters(*model.module(), config.init().freeze());
  } else {
    check(config.init().freeze().empty(), "--freeze needs --init (a pretrained network to keep parts of)");
  }
  return model;
}

RunResult run_training(const RunConfig& config, const data::TrainTest& data, const RunStartCallback& on_start,
                       const Trainer::EpochCallback& on_epoch, Progress* progress, const RunControl& control) {
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

  models::ModelSpec spec = config.model();
  spec.in_channels(run.splits.train.inputs.size(1))
      .image_size(run.splits.train.inputs.size(2))
      .num_classes(run.splits.train.num_classes);
  run.spec = spec;
  if (!config.init().path().empty()) {
    run.pretrained.emplace();
    run.model = build_initial_model(config, spec, &*run.pretrained);
  } else {
    run.model = build_initial_model(config, spec);
  }
  check(models::as_scripted(run.model) || run.splits.train.inputs.size(2) == run.splits.train.inputs.size(3),
        "flatmin's " + spec.name() + " needs square images; the data's are " +
            std::to_string(run.splits.train.inputs.size(3)) + "x" + std::to_string(run.splits.train.inputs.size(2)) +
            " (a TorchScript model, --model-file, takes any shape)");
  if (models::as_scripted(run.model)) {
    // Written elsewhere for some input: check it fits this data before any step (channels, size, classes).
    models::check_model_fits(run.model, run.splits.train.inputs.slice(0, 0, 2), spec.num_classes(), spec.file());
  }
  // Before the optimizer, the gradient terms and the buffers are taken: they hold the device's tensors.
  run.model->to(control.device());
  run.parameter_count = models::count_parameters(*run.model.module());
  // Frozen parameters are not the optimizer's: no noise, no step, no weight decay moves them.
  std::vector<at::Tensor> trainable;
  for (const auto& p : run.model->parameters())
    if (p.requires_grad()) trainable.push_back(p);
  check(!trainable.empty(), "every parameter is frozen: nothing to train");

  if (method_spec.bsam_train_size() == 0) method_spec.bsam_train_size(run.splits.train.size());
  run.optimizer = optim::make_perturbed_optimizer(
      trainable, method_spec, config.optimizer(),
      optim::PerturbedOptimizerOptions()
          .seed(derive_seed(config.seed(), SeedStream::kNoise))
          .max_grad_norm(config.max_grad_norm())
          .accumulate_in_grad(true)  // the Trainer's closure never zeroes .grad
          .check_finite_every(check_finite_interval(control, config.trainer().on_divergence())));
  run.optimizer->track_buffers(run.model->buffers());
  optim::Parallelism parallelism = control.parallelism();
  if (parallelism.mode != optim::Parallelism::Mode::kNone) {
    parallelism.stop_requested = control.stop_requested();
    run.optimizer->set_parallelism(parallelism);
  }
  if (config.l2sp() > 0) run.optimizer->add_gradient_term(optim::L2Sp(trainable, config.l2sp()));

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
  trainer_options.checkpoint_every_steps(control.checkpoint_every_steps());
  Trainer trainer(run.model, run.optimizer, trainer_options);
  trainer.set_loss(loss);
  if (parallelism.mode == optim::Parallelism::Mode::kData) trainer.set_shard(parallelism.rank, parallelism.size);
  if (parallelism.mode != optim::Parallelism::Mode::kNone)
    trainer.share_evaluation(parallelism.rank, parallelism.size, parallelism.sum);
  if (parallelism.mode != optim::Parallelism::Mode::kNone) {
    // Every process stops after the same step: the request travels in the step's own collective.
    trainer.set_stop_request([optimizer = run.optimizer] { return optimizer->stop_requested_anywhere(); });
  } else if (control.stop_requested()) {
    trainer.set_stop_request(control.stop_requested());
  }
  if (control.epoch_measure()) trainer.set_epoch_measure(control.epoch_measure());

  const std::string config_json = config.to_json();
  if (!control.resume_from().empty()) {
    // Everything is built exactly as in the original run (so W₀ of L2-SP, the split and the
    // normalisation agree); then the checkpoint's weights, optimizer state and position take over.
    CheckpointContents saved = load_checkpoint(control.resume_from());
    check(saved.config_json == config_json,
          control.resume_from() + ": written by a run with another config; resume with the config stored in it");
    check(saved.trainer_state.has_value(), control.resume_from() + ": not a training checkpoint (no trainer state)");
    copy_state(saved.model, run.model);
    load_optimizer_state(control.resume_from(), *run.optimizer);
    run.resumed_from = *saved.trainer_state;
    trainer.resume_from(*saved.trainer_state);
  }
  if (!control.checkpoint_dir().empty()) {
    check(control.keep_checkpoints() >= 1, "keep_checkpoints must be >= 1");
    std::error_code ec;
    std::filesystem::create_directories(control.checkpoint_dir(), ec);
    check(!ec, control.checkpoint_dir() + ": cannot create the checkpoint directory: " + ec.message());
    trainer.set_checkpoint_writer([&](const TrainerState& state) {
      char name[48];
      std::snprintf(name, sizeof name, "step-%010lld.ckpt", static_cast<long long>(run.optimizer->steps_taken()));
      const std::string path = (std::filesystem::path(control.checkpoint_dir()) / name).string();
      save_checkpoint(path, run.spec, run.model, config_json, run.splits.channel_mean, run.splits.channel_std,
                      state.epoch, run.optimizer.get(), &state);
      const std::vector<std::string> all = list_step_checkpoints(control.checkpoint_dir());
      for (size_t i = 0; i + static_cast<size_t>(control.keep_checkpoints()) < all.size(); ++i)
        std::filesystem::remove(all[i], ec);
    });
  }
  if (on_start) on_start(run);
  run.history = trainer.fit(run.splits, on_epoch, progress);
  return run;
}

}  // namespace flatmin::training
