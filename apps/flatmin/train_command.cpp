// `flatmin train`: data → model → method + base optimizer → Trainer, with metrics files and a summary.
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <tuple>
#include <thread>

#include <nlohmann/json.hpp>
#include <torch/serialize.h>
#include <torch/utils.h>

#include "checkpoint_data.h"
#include "commands.h"
#include "device_option.h"
#include "report_text.h"
#include "validators.h"
#include "flatmin/core/files.h"
#include "flatmin/core/device.h"
#include "flatmin/core/error.h"
#include "flatmin/core/runtime.h"
#include "flatmin/data/dataset.h"
#include "flatmin/distributed/communicator.h"
#include "flatmin/data/sources.h"
#include "flatmin/geometry/spectrum.h"
#include "flatmin/training/checkpoint.h"
#include "flatmin/training/metrics_log.h"
#include "flatmin/training/run.h"

namespace flatmin::cli {
namespace {

struct TrainArgs {
  // method
  std::string method = "nso";
  double sigma = 0.01;
  int64_t k = 1;
  bool no_negative = false;
  std::string noise = "gaussian";
  std::string sigma_schedule = "constant";
  int64_t sigma_warmup_epochs = 0;
  // SAM family (negative = the method's default / off)
  double rho = -1.0;
  double asam_eta = 0.01;
  double rsam_sigma = 0.01;
  double rsam_lambda = 2.0;
  double rsam_sigma_start = -1.0;
  double rsam_rho_end = -1.0;
  int64_t bsam_train_size = 0;
  double bsam_prior_precision = 25.0;
  double bsam_damping = 0.1;
  double bsam_init_precision = 1.0;
  double bsam_beta1 = 0.9;
  double bsam_beta2 = 0.999;
  double bsam_noise_std = 0.0;
  std::string bsam_prior_mean = "zero";
  std::string bsam_bn_statistics = "both";
  double crsam_alpha = 0.1;
  double crsam_beta = 0.01;
  // regularisation and augmentation
  double label_smoothing = 0.0;
  double l2sp = 0.0;
  bool augment = false;
  int64_t augment_padding = 4;
  bool no_flip = false;
  // model
  std::string model = "mlp";
  std::string activation = "relu";
  int64_t width = 0;
  std::string model_file;
  // data
  std::string dataset = "fashion-mnist";
  std::string data_dir;  // empty: Fashion-MNIST's default directory
  std::string cifar100_labels = "fine";
  int64_t image_size = 0;
  std::string cache_dir;
  int64_t val_size = 5000;
  std::vector<int64_t> classes;
  int64_t per_class = 0;
  int64_t test_size = 0;
  bool no_normalize = false;
  double label_noise = 0.0;
  // fine-tuning
  std::string init;
  bool reset_head = false;
  std::vector<std::string> freeze;
  bool model_given = false, width_given = false, activation_given = false;  // with --init they must agree with the init file
  // optimisation
  std::string optimizer = "sgd";
  int64_t epochs = 10;
  int64_t batch_size = 64;
  double lr = -1.0;  // negative: 0.05, or bSAM's α 0.5 for bsam
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 0.0;
  std::string lr_schedule = "cosine";
  int64_t lr_step_epochs = 10;
  double lr_gamma = 0.1;
  double max_grad_norm = 0.0;
  // run
  uint64_t seed = 0;
  std::string out;
  int threads = 0;
  std::string progress = "auto";
  int64_t train_eval_size = 10000;
  int64_t eval_batch_size = training::kDefaultEvalBatchSize;
  int64_t eval_every = 0;
  bool no_save_model = false;
  // keeping and resuming
  int64_t checkpoint_every = 0;
  int64_t keep_checkpoints = 2;
  bool no_checkpoints = false;
  std::string resume;
  std::string on_divergence = "stop";
  // device
  std::string device = "cpu";
  std::string precision = "fp32";
  int64_t check_finite_every = 0;
  // several processes (under flatmin launch, torchrun, ...)
  std::string parallel = "data";
  std::string sam_ascent = "synced";
  double dist_timeout = 60;
  bool parallel_given = false, sam_ascent_given = false;  // on --resume, else the run's own
  // flatness during training
  int64_t geometry_every = 0;
  std::string geometry_measures = "trace,lambda1,normalized_trace,grad_norm";
  int64_t geometry_examples = 2000;
  std::vector<std::string> geometry_splits{"train"};
  double geometry_rho = 0.05;
};

// SIGINT / SIGTERM ask the run to stop after the current step (a second signal kills as usual).
volatile std::sig_atomic_t g_stop_signal = 0;
extern "C" void request_stop(int signal) {
  g_stop_signal = signal;
  std::signal(signal, SIG_DFL);
}

std::string num(double value, const char* format = "%.4f") { return format_number(value, format); }

training::RunConfig to_config(const TrainArgs& a) {
  return training::RunConfig()
      .method(optim::MethodSpec()
                  .name(a.method)
                  .sigma(a.sigma)
                  .law(noise::parse_noise_law(a.noise))
                  .sigma_schedule(noise::parse_schedule_kind(a.sigma_schedule))
                  .sigma_warmup_epochs(a.sigma_warmup_epochs)
                  .k(a.k)
                  .two_point(!a.no_negative)
                  .rho(a.rho)
                  .asam_eta(a.asam_eta)
                  .rsam_sigma(a.rsam_sigma)
                  .rsam_lambda(a.rsam_lambda)
                  .rsam_sigma_start(a.rsam_sigma_start)
                  .rsam_rho_end(a.rsam_rho_end)
                  .bsam_train_size(a.bsam_train_size)
                  .bsam_prior_precision(a.bsam_prior_precision)
                  .bsam_damping(a.bsam_damping)
                  .bsam_init_precision(a.bsam_init_precision)
                  .bsam_beta1(a.bsam_beta1)
                  .bsam_beta2(a.bsam_beta2)
                  .bsam_noise_std(a.bsam_noise_std)
                  .bsam_prior_mean(a.bsam_prior_mean)
                  .bsam_bn_statistics(a.bsam_bn_statistics)
                  .crsam_alpha(a.crsam_alpha)
                  .crsam_beta(a.crsam_beta))
      .model(a.model_file.empty()
                 ? models::ModelSpec().name(a.model).width(a.width).activation(a.activation)
                 : models::ModelSpec().name("torchscript").file(std::filesystem::absolute(a.model_file).string()))
      .split(data::SplitOptions()
                 .val_size(a.val_size)
                 .classes(a.classes)
                 .train_per_class(a.per_class)
                 .test_size(a.test_size)
                 .normalize(!a.no_normalize)
                 .label_noise(a.label_noise))
      .optimizer(optim::BaseOptimizerOptions()
                     .name(a.optimizer)
                     .lr(a.lr >= 0 ? a.lr : (a.method == "bsam" ? 0.5 : 0.05))
                     .momentum(a.momentum)
                     .nesterov(a.nesterov)
                     .weight_decay(a.weight_decay))
      .trainer(training::TrainerOptions()
                   .epochs(a.epochs)
                   .batch_size(a.batch_size)
                   .lr_schedule(training::LrSchedule()
                                    .kind(training::parse_lr_schedule(a.lr_schedule))
                                    .step_epochs(a.lr_step_epochs)
                                    .gamma(a.lr_gamma))
                   .train_eval_size(a.train_eval_size)
                   .eval_batch_size(a.eval_batch_size)
                   .eval_every(a.eval_every)
                   .augment(data::AugmentOptions().enabled(a.augment).padding(a.augment_padding).flip(!a.no_flip))
                   .on_divergence(training::parse_divergence_policy(a.on_divergence))
                   .precision(parse_precision(a.precision)))
      .max_grad_norm(a.max_grad_norm)
      .loss(training::LossOptions().label_smoothing(a.label_smoothing))
      .l2sp(a.l2sp)
      .seed(a.seed)
      .init(training::InitOptions().path(a.init).reset_head(a.reset_head).freeze(a.freeze));
}

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

int run_train(TrainArgs a) {  // by value: --resume replaces some fields
  // Several processes: rank 0 alone prints, writes metrics, checkpoints and the model.
  const distributed::World world = distributed::world_from_env();
  const bool writer = world.rank == 0;
  training::Progress progress(training::parse_progress_mode(writer ? a.progress : "quiet"));
  training::RunConfig config;
  std::string resume_path;
  if (!a.resume.empty()) {
    // The run's own config decides everything that shapes it; the CLI's values are not used.
    std::tie(config, resume_path) = resume_point(a.resume, progress);
    a.out = a.resume;
    a.model = config.model().name();
    a.epochs = config.trainer().epochs();
    std::ifstream in(a.out + "/config.json");
    const auto j = in ? nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false) : nlohmann::json();
    if (const auto source = recorded_data_source(j)) {
      a.dataset = source->kind();
      a.cifar100_labels = source->labels();
      a.image_size = source->image_size();
      if (a.data_dir.empty()) a.data_dir = source->dir();  // --data-dir may point at where the data moved
    }
    if (j.is_object() && j.contains("processes") && j["processes"].is_object()) {
      // A resumed run splits its steps as before, unless told otherwise.
      if (!a.parallel_given) a.parallel = j["processes"].value("parallel", a.parallel);
      if (!a.sam_ascent_given) a.sam_ascent = j["processes"].value("sam_ascent", a.sam_ascent);
    }
    if (j.is_object() && j.contains("geometry") && j["geometry"].is_object()) {
      // The resumed rows must have the columns of the rows before the interruption.
      a.geometry_every = j["geometry"].value("every", int64_t{0});
      a.geometry_measures = j["geometry"].value("measures", a.geometry_measures);
      a.geometry_examples = j["geometry"].value("examples", a.geometry_examples);
      a.geometry_splits = j["geometry"].value("splits", a.geometry_splits);
      a.geometry_rho = j["geometry"].value("rho", a.geometry_rho);
    }
  } else {
    // Parses names (fails before any work); a fine-tuning run takes its architecture, normalisation and
    // checksum from the init file.
    config = training::with_pretrained_defaults(to_config(a));
    if ((a.model_given && a.model != config.model().name()) || (a.width_given && a.width != config.model().width()) ||
        (a.activation_given && a.activation != config.model().activation()))
      throw CLI::ValidationError("--init", "--model " + a.model + " --width " + std::to_string(a.width) +
                                               " --activation " + a.activation + " disagree with the init file's " +
                                               config.model().name() + " (width " +
                                               std::to_string(config.model().width()) + ", " +
                                               config.model().activation() + ")");
    a.model = config.model().name();
  }
  optim::check_base_for_method(config.method(), config.optimizer());
  const std::string& method_name = config.method().name();
  check(a.parallel != "perturbation" || method_name == "nso" || method_name == "wp-sgd",
        "--parallel perturbation needs independent points whose gradients add up (nso, wp-sgd); " + method_name +
            (method_name == "sgd" ? " evaluates only W" : " reads the gradient of one point to place the next") +
            ": use data-parallel");
  const c10::Device device = parse_device(a.device);  // before the data: a missing GPU is said at once
  // The local processes share the cores.
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / world.local_size);
  const int threads = a.threads > 0 ? a.threads : models::default_num_threads(config.model(), cores);
  const ThreadCounts thread_counts = set_num_threads(threads);
  const std::string out_dir =
      a.out.empty() ? "runs/" + a.method + "-" + a.model + "-seed" + std::to_string(a.seed) : a.out;

  const data::DataSource source = data::DataSource()
                                      .kind(a.dataset)
                                      .dir(a.data_dir)
                                      .labels(a.cifar100_labels)
                                      .image_size(a.image_size)
                                      .cache_dir(a.cache_dir);
  const data::TrainTest data = data::load_dataset(source, &progress);
  std::unique_ptr<distributed::Communicator> communicator;
  if (world.distributed()) {
    communicator = std::make_unique<distributed::Communicator>(
        world, std::chrono::milliseconds(static_cast<int64_t>(a.dist_timeout * 1000)));
  }
  std::error_code ec;
  if (writer) std::filesystem::create_directories(out_dir, ec);
  check(!ec, out_dir + ": cannot create the output directory: " + ec.message());
  if (writer && resume_path.empty() && !a.no_checkpoints) {
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
      j["processes"] = {{"world_size", world.size}, {"parallel", a.parallel}, {"sam_ascent", a.sam_ascent}};
    j["geometry"] = {{"every", a.geometry_every}, {"measures", a.geometry_measures}, {"examples", a.geometry_examples}};
    if (a.geometry_splits != std::vector<std::string>{"train"}) j["geometry"]["splits"] = a.geometry_splits;
    if (a.geometry_measures.find("ratio") != std::string::npos) j["geometry"]["rho"] = a.geometry_rho;
    if (writer && !run.resumed_from) flatmin::write_text_file(out_dir + "/config.json", j.dump(2) + "\n");
    progress.line("flatmin train: " + run.optimizer->method().describe() + " | " + a.model + ", " +
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
    progress.line(epoch_line(m, a.epochs));
  };

  // Flatness every N epochs (and after the last), on a fixed sample of each chosen split (columns geo_NAME
  // for the training split, geo_SPLIT_NAME for the others); the other epochs' rows hold NaN there.
  training::Trainer::EpochMeasure epoch_measure;
  if (a.geometry_every > 0) {
    const geometry::ScalarOptions geometry_options = geometry::ScalarOptions::from_names(a.geometry_measures)
                                                         .max_examples(a.geometry_examples)
                                                         .ratio_rho(a.geometry_rho)
                                                         .seed(config.seed());
    epoch_measure = [&, geometry_options](const training::EpochMetrics& m) {
      std::vector<std::pair<std::string, double>> all;
      for (const std::string& split : a.geometry_splits) {
        std::vector<std::pair<std::string, double>> values;
        if (m.epoch % a.geometry_every == 0 || m.epoch == a.epochs) {
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
  control.resume_from(resume_path).keep_checkpoints(a.keep_checkpoints).checkpoint_every_steps(a.checkpoint_every);
  if (writer && !a.no_checkpoints) control.checkpoint_dir(out_dir + "/checkpoints");
  if (communicator) {
    optim::Parallelism parallelism;
    parallelism.mode = a.parallel == "perturbation" ? optim::Parallelism::Mode::kPerturbation
                                                    : optim::Parallelism::Mode::kData;
    parallelism.rank = world.rank;
    parallelism.size = world.size;
    parallelism.synced_ascent = a.sam_ascent == "synced";
    parallelism.sum = [c = communicator.get()](const std::vector<at::Tensor>& tensors) { c->sum(tensors); };
    control.parallelism(parallelism);
  }
  control.stop_requested([] { return g_stop_signal != 0; });
  control.device(device).check_finite_every(a.check_finite_every);
  std::signal(SIGINT, request_stop);
  std::signal(SIGTERM, request_stop);

  training::RunResult run;
  try {
    run = training::run_training(config, data, on_start, on_epoch, &progress, control);
  } catch (const training::TrainingInterrupted& e) {
    progress.line(std::string("interrupted (") + (g_stop_signal == SIGTERM ? "SIGTERM" : "SIGINT") + "): " + e.what() +
                  "; checkpoint written. Resume with:  flatmin train --resume " + out_dir);
    return kExitInterrupted;
  } catch (const training::TrainingDiverged& e) {
    std::cerr << "error: " << e.what() << "\n";
    if (!a.no_checkpoints && !training::list_step_checkpoints(out_dir + "/checkpoints").empty())
      std::cerr << "the last good checkpoint is intact: " << training::list_step_checkpoints(out_dir + "/checkpoints").back()
                << "\n";
    return kExitDiverged;
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
  summary["epochs"] = a.epochs;
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
  if (!writer) return 0;
  flatmin::write_text_file(out_dir + "/summary.json", summary.dump(2) + "\n");
  if (!a.no_save_model)
    training::save_checkpoint(out_dir + "/model.ckpt", run.spec, run.model, config.to_json(), run.splits.channel_mean,
                              run.splits.channel_std, a.epochs);

  progress.line("final test accuracy " + percent(last.test.accuracy) + " (loss " + num(last.test.loss) + ") after " +
                std::to_string(a.epochs) + " epochs, " + num(seconds, "%.1f") + " s | " + out_dir + "/metrics.csv");
  return 0;
}

}  // namespace

Action add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand(
      "train", "Train a model with SGD, WP-SGD, NSO or the SAM family (SAM, USAM, ASAM, RSAM, bSAM, CR-SAM)");
  cmd->footer(
      "Every method evaluates the minibatch gradient g at some points around W, combines them into G and hands G\n"
      "to the base optimizer at W (restored exactly); 'cost' = gradient evaluations per step (SGD = 1). Norms are\n"
      "global over all weights, ‖·‖ + 1e-12 in denominators.\n"
      "  sgd     G = g(W).  Cost 1.\n"
      "  wp-sgd  U ~ P (mean 0, std σ per weight), G = g(W+U).  Cost 1.\n"
      "  nso     U_j ~ P, G = 1/(2k)·Σ_j [g(W+U_j) + g(W−U_j)]: minimises E_U[f(W+U)] ≈ f(W) + σ²/2·Tr∇²f(W)\n"
      "          (NSO paper, Algorithm 1); the ±U pair cancels the first-order noise.  Cost 2k.\n"
      "  sam     δ = ρ·g/‖g‖, G = g(W+δ) (Foret et al. 2021).  Cost 2.\n"
      "  usam    δ = ρ·g, G = g(W+δ) (unnormalised SAM).  Cost 2.\n"
      "  asam    T = |W| + η (element-wise), δ = ρ·T²g/‖Tg‖, G = g(W+δ) (Kwon et al. 2021).  Cost 2.\n"
      "  rsam    δ_j = σ·‖W_j‖·z_j per output unit j (z ~ N(0,I); whole tensor for biases), g̃ = g(W+δ),\n"
      "          v = λ·g̃ + δ, ε = ρ·v/‖v‖, G = g(W+ε) (Liu et al. 2022, the authors' code).  Cost 2.\n"
      "  bsam    θ = W + z/√(N·s), g = g(θ), ε = ρ·g/s, G = g(W+ε), h = √s·|g|; its own update replaces the\n"
      "          base optimizer: m ← β1·m + (1−β1)(G + δW), W ← W − lr·m/s, s ← β2·s + (1−β2)(h + γ + δ),\n"
      "          δ = prior precision/N, γ = damping, s starts at the initial precision (Möllenhoff & Khan\n"
      "          2023). --lr is its α (the paper: 0.5-1); --optimizer/--momentum/--weight-decay do not apply.  Cost 2.\n"
      "  crsam   v = g/‖g‖, g_w = g(W+ρv), g_b = g(W−ρv), G = g_w + α(g_w + g_b − 2g) + β(g_w − g_b): SAM plus the\n"
      "          gradient of α·[L(W+ρv)+L(W−ρv)−2L(W)] + β·[L(W+ρv)−L(W−ρv)], the finite-difference curvature and\n"
      "          slope along v of CR-SAM's regulariser, without its logs (as the authors' code).  Cost 3.\n"
      "BatchNorm running statistics move once per step: from the pass at W for sam/usam/asam/crsam, from the\n"
      "random pass W+δ for rsam, the mean of both passes for bsam and of all 2k passes for nso.\n"
      "With every method: --label-smoothing ε (targets (1−ε)·onehot + ε/K), --l2sp λ (adds 2λ(W − W₀) to G at W,\n"
      "W₀ = the initial weights), --augment (random crop after padding, random horizontal flip, seeded).\n\n"
      "Writes <out>/config.json, metrics.csv + metrics.jsonl (one row per epoch, with the cumulative gradient\n"
      "evaluations), summary.json, model.ckpt.\n\n"
      "Examples:\n"
      "  flatmin train                                   # NSO, MLP, Fashion-MNIST, 10 epochs\n"
      "  flatmin train --method sgd --out runs/sgd       # the baseline\n"
      "  flatmin train --sigma 0.02 --k 2 --noise laplace\n"
      "  flatmin train --method sam --rho 0.05           # SAM at NSO's cost (k = 1)\n"
      "  flatmin train --method crsam --crsam-alpha 0.2 --crsam-beta 0.05 --label-smoothing 0.1 --augment\n"
      "  flatmin train --model cnn --per-class 100 --classes 0,1,2,3,4   # small target set");
  cmd->option_defaults()->always_capture_default();

  const std::string method_group = "Method";
  cmd->add_option("--method", args->method, "sgd | wp-sgd | nso | sam | usam | asam | rsam | bsam | crsam (rules below)")
      ->check(CLI::IsMember(optim::method_names()))
      ->group(method_group);
  cmd->add_option("--sigma", args->sigma, "Noise std σ per weight (NSO, WP-SGD); the paper's grid: 0.008-0.012")
      ->check(number_at_least(0))
      ->group(method_group);
  cmd->add_option("--k", args->k, "NSO: perturbations per step (cost 2k)")
      ->check(integer_in(1, 1024))
      ->group(method_group);
  cmd->add_flag("--no-negative", args->no_negative,
                "NSO ablation: 2k independent one-sided draws instead of k ± pairs (same cost)")
      ->group(method_group);
  cmd->add_option("--noise", args->noise, "Noise law: gaussian | laplace | uniform | rademacher (alias binomial) | binomial4 (the NSO authors' σ·Binomial(4,½): mean 2σ, not zero)")
      ->check(CLI::IsMember({"gaussian", "laplace", "uniform", "rademacher", "binomial", "binomial4"}))
      ->group(method_group);
  cmd->add_option("--sigma-schedule", args->sigma_schedule,
                  "constant | linear | exp: warm σ up from 0 (linear) or 1e-5 (exp) per epoch")
      ->check(CLI::IsMember({"constant", "linear", "exp"}))
      ->group(method_group);
  cmd->add_option("--sigma-warmup-epochs", args->sigma_warmup_epochs, "Warm-up length (0 = the whole run, as the paper)")
      ->check(integer_in(0, 1000000))
      ->group(method_group);

  const std::string sam_group = "SAM family";
  cmd->add_option("--rho", args->rho,
                  "Radius ρ of sam, usam, asam, rsam, bsam, crsam; default per method: sam/usam/rsam 0.05, asam 0.5, "
                  "bsam 0.01, crsam 0.1 (the NSO paper's grid for sam/rsam/bsam: 0.01, 0.02, 0.05; asam 0.5-2)")
      ->check(number_at_least(0))
      ->default_str("per method")
      ->group(sam_group);
  cmd->add_option("--asam-eta", args->asam_eta, "ASAM: η in T = |W| + η")->check(number_at_least(0))->group(sam_group);
  cmd->add_option("--rsam-sigma", args->rsam_sigma,
                  "RSAM: relative noise std σ (δ_j = σ·‖W_j‖·z_j); the NSO paper's grid: 0.008, 0.01, 0.012")
      ->check(number_at_least(0))
      ->group(sam_group);
  cmd->add_option("--rsam-lambda", args->rsam_lambda, "RSAM: λ in v = λ·g(W+δ) + δ")
      ->check(number_at_least(0))
      ->group(sam_group);
  cmd->add_option("--rsam-sigma-start", args->rsam_sigma_start,
                  "RSAM: σ rises from this value to --rsam-sigma along a half cosine over the epochs")
      ->check(number_at_least(0))
      ->default_str("off (constant σ)")
      ->group(sam_group);
  cmd->add_option("--rsam-rho-end", args->rsam_rho_end,
                  "RSAM: ρ falls from --rho to this value along a half cosine over the epochs")
      ->check(number_at_least(0))
      ->default_str("off (constant ρ)")
      ->group(sam_group);
  cmd->add_option("--bsam-train-size", args->bsam_train_size,
                  "bSAM: N, the number of training examples (× the augmentation factor)")
      ->check(integer_in(0))
      ->default_str("the training split's size")
      ->group(sam_group);
  cmd->add_option("--bsam-prior-precision", args->bsam_prior_precision,
                  "bSAM: prior precision (δ = it/N, its weight decay; the paper: 25-40)")
      ->check(number_at_least(0))
      ->group(sam_group);
  cmd->add_option("--bsam-damping", args->bsam_damping, "bSAM: damping γ")->check(number_at_least(0))->group(sam_group);
  cmd->add_option("--bsam-init-precision", args->bsam_init_precision, "bSAM: initial precision s")
      ->check(number_between(0, std::numeric_limits<double>::infinity(), /*lo_closed=*/false))
      ->group(sam_group);
  cmd->add_option("--bsam-beta1", args->bsam_beta1, "bSAM: momentum β1")
      ->check(number_between(0, 1, true, /*hi_closed=*/false))
      ->group(sam_group);
  cmd->add_option("--bsam-noise-std", args->bsam_noise_std,
                  "bSAM: the posterior sample's noise std at the first step, set directly (s₀ = 1/(N·it²), replacing "
                  "--bsam-init-precision); for fine-tuning, near NSO's σ")
      ->check(number_at_least(0))
      ->default_str("off (s₀ = --bsam-init-precision)")
      ->group(sam_group);
  cmd->add_option("--bsam-prior-mean", args->bsam_prior_mean,
                  "bSAM: the prior's centre: zero (a weight decay), or init (the starting, e.g. pretrained, weights)")
      ->check(CLI::IsMember({"zero", "init"}))
      ->group(sam_group);
  cmd->add_option("--bsam-bn-statistics", args->bsam_bn_statistics,
                  "bSAM: BatchNorm running statistics from both passes (the authors' code) or from the ascent pass "
                  "only (ω + ε, next to the mean; never the posterior sample)")
      ->check(CLI::IsMember({"both", "ascent"}))
      ->group(sam_group);
  cmd->add_option("--bsam-beta2", args->bsam_beta2, "bSAM: precision averaging β2")
      ->check(number_between(0, 1, true, /*hi_closed=*/false))
      ->group(sam_group);
  cmd->add_option("--crsam-alpha", args->crsam_alpha, "CR-SAM: weight α of the curvature term (the paper: 0.1-0.5)")
      ->check(number_at_least(0))
      ->group(sam_group);
  cmd->add_option("--crsam-beta", args->crsam_beta, "CR-SAM: weight β of the gradient term (the paper: 0.01-0.1)")
      ->check(number_at_least(0))
      ->group(sam_group);

  const std::string reg_group = "Regularisation and augmentation (any method)";
  cmd->add_option("--label-smoothing", args->label_smoothing,
                  "Label smoothing ε: targets (1−ε)·onehot + ε/K (the NSO paper's grid: 0.1, 0.2, 0.3)")
      ->check(number_between(0, 1, true, /*hi_closed=*/false))
      ->group(reg_group);
  cmd->add_option("--l2sp", args->l2sp, "L2-SP λ: adds λ·‖W − W₀‖² (W₀ = the initial weights), as 2λ(W − W₀) at W")
      ->check(number_at_least(0))
      ->group(reg_group);
  cmd->add_flag("--augment", args->augment, "Random crop after padding + random horizontal flip of training batches")
      ->group(reg_group);
  cmd->add_option("--augment-padding", args->augment_padding, "Padding of the random crop, pixels per side")
      ->check(integer_in(0, 64))
      ->group(reg_group);
  cmd->add_flag("--no-flip", args->no_flip, "Augmentation without the horizontal flip")->group(reg_group);

  const std::string model_group = "Model";
  cmd->add_option("--model", args->model, "mlp (784-128-10) | cnn | resnet18 | resnet34 (CIFAR-style, BatchNorm)")
      ->check(CLI::IsMember({"mlp", "cnn", "resnet18", "resnet34"}))
      ->group(model_group);
  cmd->add_option("--width", args->width, "MLP hidden units / CNN channels / ResNet base width (0 = default)")
      ->check(integer_in(0, 1 << 16))
      ->group(model_group);
  cmd->add_option("--activation", args->activation,
                  "relu (the papers') | gelu | silu | softplus: the nonlinearity of mlp, cnn and ResNets; a smooth one "
                  "makes the loss twice differentiable everywhere, as the noise-stability expansion assumes")
      ->check(CLI::IsMember({"relu", "gelu", "silu", "softplus"}))
      ->group(model_group);
  cmd->add_option("--model-file", args->model_file,
                  "Your own model: a TorchScript file (torch.jit.script(model).save(path) in Python), trained from its "
                  "weights; it must map the data's [N, C, H, W] to [N, classes] logits. --freeze works on its "
                  "parameter names; `flatmin export` writes it back")
      ->check(CLI::ExistingFile)
      ->excludes("--width")
      ->excludes("--activation")
      ->group(model_group);

  const std::string data_group = "Data";
  cmd->add_option("--dataset", args->dataset,
                  "fashion-mnist (Debian's, the default) | idx (MNIST-format files) | cifar10 | cifar100 (binary "
                  "versions) | folder (DIR/<class>/*.png|jpg, or DIR/train/… and DIR/test/…) | tensors (DIR/train.pt "
                  "and DIR/test.pt from torch.save({\"x\": x, \"y\": y}, path)); see docs/DATA.md")
      ->check(CLI::IsMember(data::dataset_kinds()))
      ->group(data_group);
  cmd->add_option("--data-dir", args->data_dir, "The dataset's directory")
      ->default_str("env FLATMIN_DATA_DIR, else /usr/share/datasets/fashion-mnist (fashion-mnist only)")
      ->group(data_group);
  cmd->add_option("--cifar100-labels", args->cifar100_labels, "cifar100: fine (100 classes) | coarse (20)")
      ->check(CLI::IsMember({"fine", "coarse"}))
      ->group(data_group);
  cmd->add_option("--image-size", args->image_size,
                  "folder: resize every image to S×S (antialiased bilinear; 0 = keep, all one square size)")
      ->check(integer_in(0, 4096))
      ->group(data_group);
  cmd->add_option("--cache-dir", args->cache_dir,
                  "folder: where decoded images are cached ('none' = no cache)")
      ->default_str("env FLATMIN_CACHE_DIR, else ~/.cache/flatmin")
      ->group(data_group);
  cmd->add_option("--val-size", args->val_size, "Validation examples held out of the training set")
      ->check(integer_in(0))
      ->group(data_group);
  cmd->add_option("--classes", args->classes, "Keep only these classes, e.g. 0,1,2 (relabelled 0..C-1)")
      ->delimiter(',')
      ->check(integer_in(0, 1 << 20))
      ->group(data_group);
  cmd->add_option("--per-class", args->per_class, "Training examples per class (0 = all): small target sets")
      ->check(integer_in(0))
      ->group(data_group);
  cmd->add_option("--test-size", args->test_size, "Random test examples scored (0 = all)")
      ->check(integer_in(0))
      ->group(data_group);
  cmd->add_flag("--no-normalize", args->no_normalize, "Keep pixels in [0,1] instead of standardising")->group(data_group);
  cmd->add_option("--label-noise", args->label_noise,
                  "Replace this fraction of the training labels by another class at random (validation and test "
                  "stay clean)")
      ->check(number_between(0, 1, true, /*hi_closed=*/false))
      ->group(data_group);

  const std::string finetune_group = "Fine-tuning";
  cmd->add_option("--init", args->init,
                  "Start from the weights of a checkpoint (model.ckpt or a run directory): its architecture and data "
                  "normalisation are kept, the classifier is re-initialised when the number of classes differs; "
                  "L2-SP's W0 is then the pretrained weights")
      ->group(finetune_group);
  cmd->add_flag("--reset-head", args->reset_head, "With --init: re-initialise the classifier even if the classes match")
      ->group(finetune_group);
  cmd->add_option("--freeze", args->freeze,
                  "With --init: keep these parameters fixed, comma-separated name patterns (glob; a module name "
                  "covers its parameters), e.g. stem,stem_bn,stages.0")
      ->delimiter(',')
      ->group(finetune_group);

  const std::string optim_group = "Optimisation";
  cmd->add_option("--optimizer", args->optimizer, "Base optimizer: sgd (momentum, L2) | adamw")
      ->check(CLI::IsMember({"sgd", "adamw"}))
      ->group(optim_group);
  cmd->add_option("--epochs", args->epochs)->check(integer_in(1, 100000))->group(optim_group);
  cmd->add_option("--batch-size", args->batch_size)->check(integer_in(1, 1 << 20))->group(optim_group);
  cmd->add_option("--lr", args->lr, "Learning rate (bsam: its α; the paper: 0.5-1)")
      ->check(number_at_least(0))
      ->default_str("0.05, bsam 0.5")
      ->group(optim_group);
  cmd->add_option("--momentum", args->momentum, "SGD momentum")->check(number_between(0, 1, true, /*hi_closed=*/false))->group(optim_group);
  cmd->add_flag("--nesterov", args->nesterov, "SGD: Nesterov momentum")->group(optim_group);
  cmd->add_option("--weight-decay", args->weight_decay)->check(number_at_least(0))->group(optim_group);
  cmd->add_option("--lr-schedule", args->lr_schedule, "constant | step | cosine (per step, to 0)")
      ->check(CLI::IsMember({"constant", "step", "cosine"}))
      ->group(optim_group);
  cmd->add_option("--lr-step-epochs", args->lr_step_epochs, "step schedule: decay every N epochs")
      ->check(integer_in(1, 1000000))
      ->group(optim_group);
  cmd->add_option("--lr-gamma", args->lr_gamma, "step schedule: decay factor in (0, 1]")
      ->check(number_between(0, 1, /*lo_closed=*/false))
      ->group(optim_group);
  cmd->add_option("--max-grad-norm", args->max_grad_norm, "Clip the combined gradient's norm (0 = off)")
      ->check(number_at_least(0))
      ->group(optim_group);

  const std::string run_group = "Run";
  cmd->add_option("--seed", args->seed, "One seed for init, split, shuffling and noise: same seed, same run")
      ->group(run_group);
  cmd->add_option("--out", args->out, "Output directory (default runs/<method>-<model>-seed<seed>)")->group(run_group);
  cmd->add_option("--threads", args->threads, "Intra-op threads, LibTorch and OpenBLAS (0 = 1 for mlp and cnn, all cores for resnet)")
      ->check(integer_in(0, 1024))
      ->group(run_group);
  cmd->add_option("--progress", args->progress, "auto (bar on a terminal) | bar | lines | quiet")
      ->check(CLI::IsMember({"auto", "bar", "lines", "quiet"}))
      ->group(run_group);
  cmd->add_option("--train-eval-size", args->train_eval_size, "Training examples scored with the test set (0 = all)")
      ->check(integer_in(0))
      ->group(run_group);
  cmd->add_option("--eval-batch-size", args->eval_batch_size,
                  "Examples per evaluation pass (100 measured fastest here; large batches page-fault)")
      ->check(integer_in(1, 1 << 20))
      ->group(run_group);
  cmd->add_option("--eval-every", args->eval_every,
                  "Validation is scored every epoch, the test set and the training subset after the last; with "
                  "N > 0 also every N epochs (test curves; other rows: NaN)")
      ->check(integer_in(0, 1000000))
      ->group(run_group);
  cmd->add_flag("--no-save-model", args->no_save_model, "Do not write model.ckpt")->group(run_group);

  const std::string keep_group = "Checkpoints, resuming, divergence";
  cmd->add_option("--checkpoint-every", args->checkpoint_every,
                  "Also checkpoint every N steps (0 = at epoch ends only); into <out>/checkpoints/")
      ->check(integer_in(0))
      ->group(keep_group);
  cmd->add_option("--keep-checkpoints", args->keep_checkpoints, "Keep the newest K checkpoints")
      ->check(integer_in(1, 1000))
      ->group(keep_group);
  cmd->add_flag("--no-checkpoints", args->no_checkpoints, "Write no checkpoints while training")->group(keep_group);
  cmd->add_option("--resume", args->resume,
                  "Continue the run in DIR from its newest intact checkpoint, with its own config (it ends "
                  "bitwise equal to an uninterrupted run); other run options are not allowed with it")
      ->group(keep_group);
  const std::string geometry_group = "Flatness during training";
  cmd->add_option("--geometry-every", args->geometry_every,
                  "Every N epochs (and after the last) measure the flatness of the model on a fixed sample of the "
                  "training split into the metrics files (geo_* columns; 0 = off)")
      ->check(integer_in(0))
      ->group(geometry_group);
  cmd->add_option("--geometry-measures", args->geometry_measures,
                  "Any of trace (Hutchinson, 5% SE or 30 probes), lambda1 (Lanczos), normalized_trace "
                  "(Tr/‖∇L‖², CR-SAM), grad_norm, ratio (CR-SAM's SAM approximation ratio on 50 examples); or all "
                  "(the first four)")
      ->group(geometry_group);
  cmd->add_option("--geometry-splits", args->geometry_splits,
                  "Splits measured, comma-separated: train (columns geo_*), test (geo_test_*), val (geo_val_*)")
      ->delimiter(',')
      ->check(CLI::IsMember({"train", "val", "test"}))
      ->group(geometry_group);
  cmd->add_option("--geometry-rho", args->geometry_rho, "ratio: the SAM radius ρ of the approximation ratio")
      ->check(number_between(0, 1e6, false))
      ->group(geometry_group);
  cmd->add_option("--geometry-examples", args->geometry_examples, "Examples of each split measured (0 = all)")
      ->check(integer_in(0))
      ->group(geometry_group);
  cmd->add_option("--on-divergence", args->on_divergence,
                  "A non-finite loss or gradient: stop (exit code 3, last good checkpoint kept) | skip the step "
                  "(counted in metrics as skipped_steps)")
      ->check(CLI::IsMember({"stop", "skip"}))
      ->group(keep_group);
  cmd->add_option("--check-finite-every", args->check_finite_every,
                  "Check the step's finiteness every N steps (0 = every step on the CPU, every 25 on a GPU, where "
                  "each check waits for the device; skip needs every step)")
      ->check(integer_in(0, 1000000))
      ->group(keep_group);

  const std::string device_group = "Device";
  add_device_option(cmd, &args->device, device_group);
  add_precision_option(cmd, &args->precision, device_group);
  const std::string parallel_group = "Several processes (flatmin launch --nproc N -- train ..., or torchrun's variables)";
  cmd->add_option("--parallel", args->parallel,
                  "data: each process takes its shard of every batch, gradients averaged | perturbation (nso, "
                  "wp-sgd): each process evaluates its share of the step's points on the whole batch")
      ->check(CLI::IsMember({"data", "perturbation"}))
      ->group(parallel_group);
  cmd->add_option("--sam-ascent", args->sam_ascent,
                  "Data-parallel SAM family: the ascent from the averaged gradient (synced) or from each process's "
                  "own (per-replica, SAM's m-sharpness)")
      ->check(CLI::IsMember({"synced", "per-replica"}))
      ->group(parallel_group);
  cmd->add_option("--dist-timeout", args->dist_timeout,
                  "Seconds to wait for the other processes (rendezvous, each collective) before failing")
      ->check(number_between(1, 86400))
      ->group(parallel_group);

  return [args, cmd] {
    args->parallel_given = cmd->count("--parallel") > 0;
    args->sam_ascent_given = cmd->count("--sam-ascent") > 0;
    if (!args->resume.empty()) {
      // Everything that shapes a run comes from its checkpoint; say so rather than ignore a user's option.
      static const std::set<std::string> allowed{"--resume", "--progress", "--threads", "--data-dir", "--cache-dir", "--keep-checkpoints",
                                                 "--checkpoint-every", "--no-save-model", "--device",
                                                 "--check-finite-every", "--parallel", "--sam-ascent",
                                                 "--dist-timeout"};
      for (const CLI::Option* option : cmd->get_options())
        if (option->count() > 0 && !option->get_lnames().empty() && !allowed.count("--" + option->get_lnames().front()))
          throw CLI::ValidationError("--resume", "--" + option->get_lnames().front() +
                                                     " cannot be combined with --resume (the run keeps its own config)");
    }
    if (!args->model_file.empty()) {
      if (cmd->count("--model") > 0 || !args->init.empty())
        throw CLI::ValidationError("--model-file", "--model-file is the model: it cannot be combined with --model or --init");
      args->model = "torchscript";
    }
    if (!args->init.empty()) {
      args->model_given = cmd->count("--model") > 0;
      args->width_given = cmd->count("--width") > 0;
      args->activation_given = cmd->count("--activation") > 0;
    } else {
      if (cmd->count("--reset-head") > 0) throw CLI::ValidationError("--reset-head", "--reset-head needs --init");
      if (cmd->count("--freeze") > 0 && args->model_file.empty())
        throw CLI::ValidationError("--freeze", "--freeze needs --init (or --model-file)");
    }
    return run_train(*args);
  };
}

}  // namespace flatmin::cli
