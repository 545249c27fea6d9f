// `flatmin train` as one library call: data → model → method + base optimizer → Trainer, with the run's files.
#include "flatmin/jobs/train.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <thread>
#include <tuple>

#include <nlohmann/json.hpp>

#include "flatmin/core/device.h"
#include "flatmin/core/error.h"
#include "flatmin/core/files.h"
#include "flatmin/core/runtime.h"
#include "flatmin/core/text.h"
#include "flatmin/data/sources.h"
#include "flatmin/distributed/communicator.h"
#include "flatmin/geometry/spectrum.h"
#include "flatmin/jobs/stop_signals.h"
#include "flatmin/training/checkpoint.h"
#include "flatmin/training/metrics_log.h"
#include "run_record.h"

namespace flatmin::jobs {
namespace {

std::string num(double value, const char* format = "%.4f") { return format_number(value, format); }

}  // namespace

training::RunConfig to_run_config(const TrainJob& a) {
  return training::RunConfig()
      .method(optim::MethodSpec()
                  .name(a.method())
                  .sigma(a.sigma())
                  .law(noise::parse_noise_law(a.noise()))
                  .sigma_schedule(noise::parse_schedule_kind(a.sigma_schedule()))
                  .sigma_warmup_epochs(a.sigma_warmup_epochs())
                  .k(a.k())
                  .two_point(!a.no_negative())
                  .rho(a.rho())
                  .asam_eta(a.asam_eta())
                  .rsam_sigma(a.rsam_sigma())
                  .rsam_lambda(a.rsam_lambda())
                  .rsam_sigma_start(a.rsam_sigma_start())
                  .rsam_rho_end(a.rsam_rho_end())
                  .bsam_train_size(a.bsam_train_size())
                  .bsam_prior_precision(a.bsam_prior_precision())
                  .bsam_damping(a.bsam_damping())
                  .bsam_init_precision(a.bsam_init_precision())
                  .bsam_beta1(a.bsam_beta1())
                  .bsam_beta2(a.bsam_beta2())
                  .bsam_noise_std(a.bsam_noise_std())
                  .bsam_prior_mean(a.bsam_prior_mean())
                  .bsam_bn_statistics(a.bsam_bn_statistics())
                  .crsam_alpha(a.crsam_alpha())
                  .crsam_beta(a.crsam_beta()))
      .model(a.model_file().empty()
                 ? models::ModelSpec().name(a.model()).width(a.width()).activation(a.activation())
                 : models::ModelSpec().name("torchscript").file(std::filesystem::absolute(a.model_file()).string()))
      .split(data::SplitOptions()
                 .val_size(a.val_size())
                 .classes(a.classes())
                 .train_per_class(a.per_class())
                 .test_size(a.test_size())
                 .normalize(!a.no_normalize())
                 .label_noise(a.label_noise()))
      .optimizer(optim::BaseOptimizerOptions()
                     .name(a.optimizer())
                     .lr(a.lr() >= 0 ? a.lr() : (a.method() == "bsam" ? 0.5 : 0.05))
                     .momentum(a.momentum())
                     .nesterov(a.nesterov())
                     .weight_decay(a.weight_decay()))
      .trainer(training::TrainerOptions()
                   .epochs(a.epochs())
                   .batch_size(a.batch_size())
                   .lr_schedule(training::LrSchedule()
                                    .kind(training::parse_lr_schedule(a.lr_schedule()))
                                    .step_epochs(a.lr_step_epochs())
                                    .gamma(a.lr_gamma()))
                   .train_eval_size(a.train_eval_size())
                   .eval_batch_size(a.eval_batch_size())
                   .eval_every(a.eval_every())
                   .augment(data::AugmentOptions().enabled(a.augment()).padding(a.augment_padding()).flip(!a.no_flip()))
                   .on_divergence(training::parse_divergence_policy(a.on_divergence()))
                   .precision(parse_precision(a.precision())))
      .max_grad_norm(a.max_grad_norm())
      .loss(training::LossOptions().label_smoothing(a.label_smoothing()))
      .l2sp(a.l2sp())
      .seed(a.seed())
      .init(training::InitOptions().path(a.init()).reset_head(a.reset_head()).freeze(a.freeze()));
}

namespace {

std::string epoch_line(const training::EpochMetrics& m, int64_t epochs) {
  std::string scalars;
  for (const auto& [name, value] : m.method_scalars) scalars += "  " + name + " " + num(value, "%.4g");
  for (const auto& [name, value] : m.measures)
    if ((name == "geo_hessian_trace" || name == "geo_lambda1" || name == "geo_normalized_trace") && std::isfinite(value))
      scalars += "  " + name.substr(4) + " " + num(value, "%.4g");
  // An epoch that does not score the training subset and the test set (--eval-every) shows only validation.
  auto scored = [](const char* name, const training::EvalResult& r) {
    return r.count == 0 ? std::string() : std::string("  ") + name + " " + num(r.loss) + "/" + percent(r.accuracy);
  };
  const std::string gap = m.test.count && m.train.count ? "  gap " + num(m.test.loss - m.train.loss) : "";
  return "epoch " + std::to_string(m.epoch) + "/" + std::to_string(epochs) + "  obj " + num(m.objective) +
         scored("train", m.train) + scored("val", m.val) + scored("test", m.test) + gap + "  lr " + num(m.lr, "%.4g") +
         scalars + "  " + num(m.ms_per_step, "%.3f") + " ms/step";
}

training::Record epoch_record(const training::EpochMetrics& m) {
  training::Record r;
  r.add("epoch", m.epoch).add("steps", m.steps).add("gradient_evaluations", m.gradient_evaluations).add("lr", m.lr);
  for (const auto& [name, value] : m.method_scalars) r.add(name, value);
  r.add("objective", m.objective)
      .add("train_loss", m.train.loss)
      .add("train_acc", m.train.accuracy)
      .add("val_loss", m.val.loss)
      .add("val_acc", m.val.accuracy)
      .add("test_loss", m.test.loss)
      .add("test_acc", m.test.accuracy)
      .add("gap_loss", m.test.loss - m.train.loss)
      .add("gap_acc", m.train.accuracy - m.test.accuracy)
      .add("skipped_steps", m.skipped_steps);
  for (const auto& [name, value] : m.measures) r.add(name, value);
  r.add("train_seconds", m.train_seconds)
      .add("ms_per_step", m.ms_per_step)
      .add("eval_seconds", m.eval_seconds);
  return r;
}

// The config of the run in `dir` (its newest intact checkpoint) and that checkpoint's path.
std::pair<training::RunConfig, std::string> resume_point(const std::string& dir, training::Progress& progress) {
  const std::string checkpoints = (std::filesystem::path(dir) / "checkpoints").string();
  check(std::filesystem::is_directory(checkpoints),
        dir + ": no checkpoints/ directory (was it written by flatmin train, without --no-checkpoints?)");
  const std::string path =
      training::latest_checkpoint(checkpoints, [&](const std::string& warning) { progress.line("warning: " + warning); });
  const training::CheckpointContents saved = training::load_checkpoint(path);
  return {training::RunConfig::from_json(saved.config_json), path};
}

}  // namespace

int TrainOutcome::exit_code() const {
  return status == JobStatus::kFinished ? 0 : status == JobStatus::kDiverged ? kExitDiverged : kExitInterrupted;
}

TrainOutcome run_train_job(TrainJob a, const std::string& resume_hint) {  // by value: --resume replaces some fields
  // Several processes: rank 0 alone prints, writes metrics, checkpoints and the model.
  const distributed::World world = distributed::world_from_env();
  const bool writer = world.rank == 0;
  training::Progress progress(training::parse_progress_mode(writer ? a.progress() : "quiet"));
  training::RunConfig config;
  std::string resume_path;
  if (!a.resume().empty()) {
    // The run's own config decides everything that shapes it; the CLI's values are not used.
    std::tie(config, resume_path) = resume_point(a.resume(), progress);
    a.out() = a.resume();
    a.model() = config.model().name();
    a.epochs() = config.trainer().epochs();
    std::ifstream in(a.out() + "/config.json");
    const auto j = in ? nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false) : nlohmann::json();
    if (const auto source = recorded_data_source(j)) {
      a.dataset() = source->kind();
      a.cifar100_labels() = source->labels();
      a.image_size() = source->image_size();
      if (a.data_dir().empty()) a.data_dir() = source->dir();  // --data-dir may point at where the data moved
    }
    if (j.is_object() && j.contains("processes") && j["processes"].is_object()) {
      // A resumed run splits its steps as before, unless told otherwise.
      if (!a.parallel_given()) a.parallel() = j["processes"].value("parallel", a.parallel());
      if (!a.sam_ascent_given()) a.sam_ascent() = j["processes"].value("sam_ascent", a.sam_ascent());
    }
    if (j.is_object() && j.contains("geometry") && j["geometry"].is_object()) {
      // The resumed rows must have the columns of the rows before the interruption.
      a.geometry_every() = j["geometry"].value("every", int64_t{0});
      a.geometry_measures() = j["geometry"].value("measures", a.geometry_measures());
      a.geometry_examples() = j["geometry"].value("examples", a.geometry_examples());
      a.geometry_splits() = j["geometry"].value("splits", a.geometry_splits());
      a.geometry_rho() = j["geometry"].value("rho", a.geometry_rho());
    }
  } else {
    // Parses names (fails before any work); a fine-tuning run takes its architecture, normalisation and
    // checksum from the init file.
    config = training::with_pretrained_defaults(to_run_config(a));
    if ((a.model_given() && a.model() != config.model().name()) || (a.width_given() && a.width() != config.model().width()) ||
        (a.activation_given() && a.activation() != config.model().activation()))
      throw UsageError("--init: --model " + a.model() + " --width " + std::to_string(a.width()) +
                                               " --activation " + a.activation() + " disagree with the init file's " +
                                               config.model().name() + " (width " +
                                               std::to_string(config.model().width()) + ", " +
                                               config.model().activation() + ")");
    a.model() = config.model().name();
  }
  optim::check_base_for_method(config.method(), config.optimizer());
  const std::string& method_name = config.method().name();
  check(a.parallel() != "perturbation" || method_name == "nso" || method_name == "wp-sgd",
        "--parallel perturbation needs independent points whose gradients add up (nso, wp-sgd); " + method_name +
            (method_name == "sgd" ? " evaluates only W" : " reads the gradient of one point to place the next") +
            ": use data-parallel");
  const c10::Device device = parse_device(a.device());  // before the data: a missing GPU is said at once
  // The local processes share the cores.
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / world.local_size);
  const int threads = a.threads() > 0 ? a.threads() : models::default_num_threads(config.model(), cores);
  const ThreadCounts thread_counts = set_num_threads(threads);
  const std::string out_dir =
      a.out().empty() ? "runs/" + a.method() + "-" + a.model() + "-seed" + std::to_string(a.seed()) : a.out();

  const data::DataSource source = data::DataSource()
                                      .kind(a.dataset())
                                      .dir(a.data_dir())
                                      .labels(a.cifar100_labels())
                                      .image_size(a.image_size())
                                      .cache_dir(a.cache_dir());
  const data::TrainTest data = data::load_dataset(source, &progress);
  std::unique_ptr<distributed::Communicator> communicator;
  if (world.distributed()) {
    communicator = std::make_unique<distributed::Communicator>(
        world, std::chrono::milliseconds(static_cast<int64_t>(a.dist_timeout() * 1000)));
  }
  std::error_code ec;
  if (writer) std::filesystem::create_directories(out_dir, ec);
  check(!ec, out_dir + ": cannot create the output directory: " + ec.message());
  if (writer && resume_path.empty() && !a.no_checkpoints()) {
    // A fresh run in an old run's directory must not resume from, or mix with, its checkpoints.
    for (const auto& old : training::list_step_checkpoints(out_dir + "/checkpoints")) std::filesystem::remove(old, ec);
  }
  std::optional<training::MetricsLog> log;
  if (writer) log.emplace(out_dir);
  const auto t0 = std::chrono::steady_clock::now();

  const training::RunResult* current = nullptr;  // the run being trained, for the epoch measurements
  auto on_start = [&](const training::RunResult& run) {
    current = &run;
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(config.to_json());
    j["command"] = "train";
    j["flatmin"] = version_string();
    j["started"] = now_utc();
    record_data_source(j, source);
    j["method"]["description"] = run.optimizer->method().describe();
    j["method"]["gradient_evaluations_per_step"] = run.optimizer->evaluations();
    j["model"]["parameters"] = run.parameter_count;
    j["split"]["train_examples"] = run.splits.train.size();
    j["split"]["val_examples"] = run.splits.val.size();
    j["split"]["test_examples"] = run.splits.test.size();
    j["threads"] = {{"torch_intra_op", thread_counts.torch_intra_op}, {"blas", thread_counts.blas}};
    j["device"] = device.str();
    if (world.distributed())
      j["processes"] = {{"world_size", world.size}, {"parallel", a.parallel()}, {"sam_ascent", a.sam_ascent()}};
    j["geometry"] = {{"every", a.geometry_every()}, {"measures", a.geometry_measures()}, {"examples", a.geometry_examples()}};
    if (a.geometry_splits() != std::vector<std::string>{"train"}) j["geometry"]["splits"] = a.geometry_splits();
    if (a.geometry_measures().find("ratio") != std::string::npos) j["geometry"]["rho"] = a.geometry_rho();
    if (writer && !run.resumed_from) flatmin::write_text_file(out_dir + "/config.json", j.dump(2) + "\n");
    progress.line("flatmin train: " + run.optimizer->method().describe() + " | " + a.model() + ", " +
                  std::to_string(run.parameter_count) + " parameters | " + std::to_string(run.optimizer->evaluations()) +
                  " gradient evaluations/step | train " + std::to_string(run.splits.train.size()) + ", val " +
                  std::to_string(run.splits.val.size()) + ", test " + std::to_string(run.splits.test.size()) + " | " +
                  std::to_string(thread_counts.torch_intra_op) + " thread(s) | " + device.str() +
                  (config.trainer().precision() == Precision::kFloat32 ? "" : ", bf16 autocast") + " | -> " + out_dir);
    if (run.pretrained) progress.line(run.pretrained->describe());
    if (run.resumed_from) {
      // The metrics files hold exactly the checkpoint's rows again: none duplicated, none missing.
      if (log)
        for (const auto& m : run.resumed_from->history) log->append(epoch_record(m));
      progress.line("resumed from " + resume_path + " at epoch " + std::to_string(run.resumed_from->epoch + 1) +
                    ", step " + std::to_string(run.resumed_from->batch) + " of the epoch (" +
                    std::to_string(run.optimizer->steps_taken()) + " steps done)");
    }
  };
  auto on_epoch = [&](const training::EpochMetrics& m) {
    if (log) log->append(epoch_record(m));
    progress.line(epoch_line(m, a.epochs()));
  };

  // Flatness every N epochs (and after the last), on a fixed sample of each chosen split (columns geo_NAME
  // for the training split, geo_SPLIT_NAME for the others); the other epochs' rows hold NaN there.
  training::Trainer::EpochMeasure epoch_measure;
  if (a.geometry_every() > 0) {
    const geometry::ScalarOptions geometry_options = geometry::ScalarOptions::from_names(a.geometry_measures())
                                                         .max_examples(a.geometry_examples())
                                                         .ratio_rho(a.geometry_rho())
                                                         .seed(config.seed());
    epoch_measure = [&, geometry_options](const training::EpochMetrics& m) {
      std::vector<std::pair<std::string, double>> all;
      for (const std::string& split : a.geometry_splits()) {
        std::vector<std::pair<std::string, double>> values;
        if (m.epoch % a.geometry_every() == 0 || m.epoch == a.epochs()) {
          const data::Dataset& data = split == "test" ? current->splits.test
                                      : split == "val" ? current->splits.val
                                                       : current->splits.train;
          values = geometry::measure_scalars(current->model, data, geometry_options);
        } else {
          for (const auto& name : geometry::scalar_names(geometry_options))
            values.emplace_back(name, std::numeric_limits<double>::quiet_NaN());
        }
        for (auto& value : values) all.emplace_back((split == "train" ? "geo_" : "geo_" + split + "_") + value.first, value.second);
      }
      return all;
    };
  }

  training::RunControl control;
  control.epoch_measure(epoch_measure);
  control.resume_from(resume_path).keep_checkpoints(a.keep_checkpoints()).checkpoint_every_steps(a.checkpoint_every());
  if (writer && !a.no_checkpoints()) control.checkpoint_dir(out_dir + "/checkpoints");
  if (communicator) {
    optim::Parallelism parallelism;
    parallelism.mode = a.parallel() == "perturbation" ? optim::Parallelism::Mode::kPerturbation
                                                    : optim::Parallelism::Mode::kData;
    parallelism.rank = world.rank;
    parallelism.size = world.size;
    parallelism.synced_ascent = a.sam_ascent() == "synced";
    parallelism.sum = [c = communicator.get()](const std::vector<at::Tensor>& tensors) { c->sum(tensors); };
    control.parallelism(parallelism);
  }
  control.device(device).check_finite_every(a.check_finite_every());
  const StopOnSignals stop;  // from here on, SIGINT / SIGTERM stop the run after its current step
  control.stop_requested([&stop] { return stop.requested(); });

  TrainOutcome outcome;
  outcome.out_dir = out_dir;
  training::RunResult run;
  try {
    run = training::run_training(config, data, on_start, on_epoch, &progress, control);
  } catch (const training::TrainingInterrupted& e) {
    outcome.status = JobStatus::kInterrupted;
    outcome.message = std::string("interrupted (") + stop.signal_name() + "): " + e.what() + "; checkpoint written";
    std::string hint = resume_hint;
    if (const auto at = hint.find("{}"); at != std::string::npos) hint.replace(at, 2, out_dir);
    progress.line(outcome.message + ". Resume with:  " + hint);
    return outcome;
  } catch (const training::TrainingDiverged& e) {
    outcome.status = JobStatus::kDiverged;
    outcome.message = e.what();
    const auto kept = training::list_step_checkpoints(out_dir + "/checkpoints");
    if (!a.no_checkpoints() && !kept.empty()) outcome.last_checkpoint = kept.back();
    return outcome;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const training::EpochMetrics& last = run.history.back();
  double step_ms = 0, train_s = 0, eval_s = 0, measure_s = 0;
  for (const auto& m : run.history) {
    step_ms += m.ms_per_step / static_cast<double>(run.history.size());
    train_s += m.train_seconds;
    eval_s += m.eval_seconds;
    measure_s += m.measure_seconds;
  }
  nlohmann::ordered_json summary;
  summary["final_test_acc"] = last.test.accuracy;
  summary["final_test_loss"] = last.test.loss;
  summary["final_val_acc"] = last.val.accuracy;
  summary["final_train_acc"] = last.train.accuracy;
  summary["final_train_loss"] = last.train.loss;
  summary["gap_loss"] = last.test.loss - last.train.loss;
  summary["epochs"] = a.epochs();
  summary["steps"] = last.steps;
  summary["gradient_evaluations"] = last.gradient_evaluations;
  summary["skipped_steps"] = last.skipped_steps;
  summary["mean_ms_per_step"] = step_ms;
  summary["total_seconds"] = seconds;
  // Where a whole run's time goes (of this process: a resumed run counts its epochs' own times).
  summary["train_seconds"] = train_s;
  summary["eval_seconds"] = eval_s;
  summary["measure_seconds"] = measure_s;
  summary["resumed"] = !resume_path.empty();
  summary["threads"] = thread_counts.torch_intra_op;
  summary["device"] = device.str();
  // The flatness measured during training, at its last measurement (the report shows each as a column and
  // its metrics.csv column as a curve); standard errors, probe counts and residuals stay in metrics.csv.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  for (const auto& [name, value] : last.measures) {
    const auto ends_with = [&n = name](const std::string& suffix) {
      return n.size() >= suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (name.rfind("geo_", 0) == 0 && !ends_with("_se") && !ends_with("_probes") && !ends_with("_residual"))
      extra[name] = value;
  }
  if (!extra.empty()) summary["extra"] = extra;
  if (communicator) {
    summary["processes"] = world.size;
    summary["collective_seconds"] = communicator->collective_seconds();
  }
  outcome.summary_json = summary.dump(2) + "\n";
  if (!writer) return outcome;
  flatmin::write_text_file(out_dir + "/summary.json", outcome.summary_json);
  if (!a.no_save_model())
    training::save_checkpoint(out_dir + "/model.ckpt", run.spec, run.model, config.to_json(), run.splits.channel_mean,
                              run.splits.channel_std, a.epochs());

  progress.line("final test accuracy " + percent(last.test.accuracy) + " (loss " + num(last.test.loss) + ") after " +
                std::to_string(a.epochs()) + " epochs, " + num(seconds, "%.1f") + " s | " + out_dir + "/metrics.csv");
  return outcome;
}

}  // namespace flatmin::jobs
