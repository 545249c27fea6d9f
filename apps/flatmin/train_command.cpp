// `flatmin train`: data → model → method + base optimizer → Trainer, with metrics files and a summary.
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>
#include <torch/serialize.h>
#include <torch/utils.h>

#include "commands.h"
#include "validators.h"
#include "flatmin/core/error.h"
#include "flatmin/core/runtime.h"
#include "flatmin/data/dataset.h"
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
  // model
  std::string model = "mlp";
  int64_t width = 0;
  // data
  std::string data_dir = data::default_fashion_mnist_dir();
  int64_t val_size = 5000;
  std::vector<int64_t> classes;
  int64_t per_class = 0;
  int64_t test_size = 0;
  bool no_normalize = false;
  // optimisation
  std::string optimizer = "sgd";
  int64_t epochs = 10;
  int64_t batch_size = 64;
  double lr = 0.05;
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
  bool no_save_model = false;
};

std::string percent(double fraction) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "%.2f%%", 100.0 * fraction);
  return buffer;
}

std::string num(double value, const char* format = "%.4f") {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, format, value);
  return buffer;
}

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buffer;
}

training::RunConfig to_config(const TrainArgs& a) {
  return training::RunConfig()
      .method(optim::MethodSpec()
                  .name(a.method)
                  .sigma(a.sigma)
                  .law(noise::parse_noise_law(a.noise))
                  .sigma_schedule(noise::parse_schedule_kind(a.sigma_schedule))
                  .sigma_warmup_epochs(a.sigma_warmup_epochs)
                  .k(a.k)
                  .two_point(!a.no_negative))
      .model(models::ModelSpec().name(a.model).width(a.width))
      .split(data::SplitOptions()
                 .val_size(a.val_size)
                 .classes(a.classes)
                 .train_per_class(a.per_class)
                 .test_size(a.test_size)
                 .normalize(!a.no_normalize))
      .optimizer(optim::BaseOptimizerOptions()
                     .name(a.optimizer)
                     .lr(a.lr)
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
                   .train_eval_size(a.train_eval_size))
      .max_grad_norm(a.max_grad_norm)
      .seed(a.seed);
}

std::string epoch_line(const training::EpochMetrics& m, int64_t epochs) {
  std::string scalars;
  for (const auto& [name, value] : m.method_scalars) scalars += "  " + name + " " + num(value, "%.4g");
  return "epoch " + std::to_string(m.epoch) + "/" + std::to_string(epochs) + "  obj " + num(m.objective) + "  train " +
         num(m.train.loss) + "/" + percent(m.train.accuracy) + "  val " + num(m.val.loss) + "/" +
         percent(m.val.accuracy) + "  test " + num(m.test.loss) + "/" + percent(m.test.accuracy) + "  gap " +
         num(m.test.loss - m.train.loss) + "  lr " + num(m.lr, "%.4g") + scalars + "  " + num(m.ms_per_step, "%.3f") +
         " ms/step";
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
      .add("train_seconds", m.train_seconds)
      .add("ms_per_step", m.ms_per_step);
  return r;
}

int run_train(const TrainArgs& a) {
  // 1 thread for the MLP (2 threads made its step ~2x slower here), every core for conv nets.
  const int threads = a.threads > 0 ? a.threads
                                    : (a.model == "mlp" ? 1 : std::max(1, static_cast<int>(std::thread::hardware_concurrency())));
  const ThreadCounts thread_counts = set_num_threads(threads);
  const training::RunConfig config = to_config(a);  // parses names: fails before any work
  const std::string out_dir =
      a.out.empty() ? "runs/" + a.method + "-" + a.model + "-seed" + std::to_string(a.seed) : a.out;
  training::Progress progress(training::parse_progress_mode(a.progress));

  const data::TrainTest data = data::load_fashion_mnist(a.data_dir);
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  check(!ec, out_dir + ": cannot create the output directory: " + ec.message());
  training::MetricsLog log(out_dir);
  const auto t0 = std::chrono::steady_clock::now();

  auto on_start = [&](const training::RunResult& run) {
    nlohmann::ordered_json j = nlohmann::ordered_json::parse(config.to_json());
    j["command"] = "train";
    j["flatmin"] = version_string();
    j["started"] = now_utc();
    j["data_dir"] = a.data_dir;
    j["method"]["description"] = run.optimizer->method().describe();
    j["method"]["gradient_evaluations_per_step"] = run.optimizer->evaluations();
    j["model"]["parameters"] = run.parameter_count;
    j["split"]["train_examples"] = run.splits.train.size();
    j["split"]["val_examples"] = run.splits.val.size();
    j["split"]["test_examples"] = run.splits.test.size();
    j["threads"] = {{"torch_intra_op", thread_counts.torch_intra_op}, {"blas", thread_counts.blas}};
    training::write_text_file(out_dir + "/config.json", j.dump(2) + "\n");
    progress.line("flatmin train: " + run.optimizer->method().describe() + " | " + a.model + ", " +
                  std::to_string(run.parameter_count) + " parameters | " + std::to_string(run.optimizer->evaluations()) +
                  " gradient evaluations/step | train " + std::to_string(run.splits.train.size()) + ", val " +
                  std::to_string(run.splits.val.size()) + ", test " + std::to_string(run.splits.test.size()) + " | " +
                  std::to_string(thread_counts.torch_intra_op) + " thread(s) | -> " + out_dir);
  };
  auto on_epoch = [&](const training::EpochMetrics& m) {
    log.append(epoch_record(m));
    progress.line(epoch_line(m, a.epochs));
  };
  const training::RunResult run = training::run_training(config, data, on_start, on_epoch, &progress);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const training::EpochMetrics& last = run.history.back();
  double step_ms = 0;
  for (const auto& m : run.history) step_ms += m.ms_per_step / static_cast<double>(run.history.size());
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
  summary["mean_ms_per_step"] = step_ms;
  summary["total_seconds"] = seconds;
  summary["threads"] = thread_counts.torch_intra_op;
  training::write_text_file(out_dir + "/summary.json", summary.dump(2) + "\n");
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
  CLI::App* cmd = app.add_subcommand("train", "Train a model with SGD, WP-SGD or Noise Stability Optimization (NSO)");
  cmd->footer(
      "NSO (Algorithm 1 of the NSO paper) minimises F(W) = E_U[f(W+U)] ≈ f(W) + σ²/2·Tr∇²f(W): each step draws\n"
      "k perturbations U_j ~ P (mean 0, std σ per weight) and hands G = 1/(2k)·Σ_j [g(W+U_j) + g(W−U_j)] to the\n"
      "base optimizer; the ±U pair cancels the first-order noise. Cost: 2k gradient evaluations per step.\n"
      "WP-SGD uses one-sided noise, g(W+U) (cost 1); sgd uses g(W).\n\n"
      "Writes <out>/config.json, metrics.csv + metrics.jsonl (one row per epoch), summary.json, model.ckpt.\n\n"
      "Examples:\n"
      "  flatmin train                                   # NSO, MLP, Fashion-MNIST, 10 epochs\n"
      "  flatmin train --method sgd --out runs/sgd       # the baseline\n"
      "  flatmin train --sigma 0.02 --k 2 --noise laplace\n"
      "  flatmin train --model cnn --per-class 100 --classes 0,1,2,3,4   # small target set");
  cmd->option_defaults()->always_capture_default();

  const std::string method_group = "Method";
  cmd->add_option("--method", args->method, "sgd | wp-sgd | nso")
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
  cmd->add_option("--noise", args->noise, "Noise law: gaussian | laplace | uniform | rademacher (alias binomial)")
      ->check(CLI::IsMember({"gaussian", "laplace", "uniform", "rademacher", "binomial"}))
      ->group(method_group);
  cmd->add_option("--sigma-schedule", args->sigma_schedule,
                  "constant | linear | exp: warm σ up from 0 (linear) or 1e-5 (exp) per epoch")
      ->check(CLI::IsMember({"constant", "linear", "exp"}))
      ->group(method_group);
  cmd->add_option("--sigma-warmup-epochs", args->sigma_warmup_epochs, "Warm-up length (0 = the whole run, as the paper)")
      ->check(integer_in(0, 1000000))
      ->group(method_group);

  const std::string model_group = "Model";
  cmd->add_option("--model", args->model, "mlp (784-128-10) | cnn | resnet18 | resnet34 (CIFAR-style, BatchNorm)")
      ->check(CLI::IsMember({"mlp", "cnn", "resnet18", "resnet34"}))
      ->group(model_group);
  cmd->add_option("--width", args->width, "MLP hidden units / CNN channels / ResNet base width (0 = default)")
      ->check(integer_in(0, 1 << 16))
      ->group(model_group);

  const std::string data_group = "Data (Fashion-MNIST IDX files)";
  cmd->add_option("--data-dir", args->data_dir, "Directory of the IDX files (env FLATMIN_DATA_DIR)")->group(data_group);
  cmd->add_option("--val-size", args->val_size, "Validation examples held out of the training set")
      ->check(integer_in(0))
      ->group(data_group);
  cmd->add_option("--classes", args->classes, "Keep only these classes, e.g. 0,1,2 (relabelled 0..C-1)")
      ->delimiter(',')
      ->check(integer_in(0, 9))
      ->group(data_group);
  cmd->add_option("--per-class", args->per_class, "Training examples per class (0 = all): small target sets")
      ->check(integer_in(0))
      ->group(data_group);
  cmd->add_option("--test-size", args->test_size, "Random test examples scored (0 = all)")
      ->check(integer_in(0))
      ->group(data_group);
  cmd->add_flag("--no-normalize", args->no_normalize, "Keep pixels in [0,1] instead of standardising")->group(data_group);

  const std::string optim_group = "Optimisation";
  cmd->add_option("--optimizer", args->optimizer, "Base optimizer: sgd (momentum, L2) | adamw")
      ->check(CLI::IsMember({"sgd", "adamw"}))
      ->group(optim_group);
  cmd->add_option("--epochs", args->epochs)->check(integer_in(1, 100000))->group(optim_group);
  cmd->add_option("--batch-size", args->batch_size)->check(integer_in(1, 1 << 20))->group(optim_group);
  cmd->add_option("--lr", args->lr, "Learning rate")->check(number_at_least(0))->group(optim_group);
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
  cmd->add_option("--threads", args->threads, "Intra-op threads, LibTorch and OpenBLAS (0 = 1 for mlp, all cores otherwise)")
      ->check(integer_in(0, 1024))
      ->group(run_group);
  cmd->add_option("--progress", args->progress, "auto (bar on a terminal) | bar | lines | quiet")
      ->check(CLI::IsMember({"auto", "bar", "lines", "quiet"}))
      ->group(run_group);
  cmd->add_option("--train-eval-size", args->train_eval_size, "Training examples scored per epoch (0 = all)")
      ->check(integer_in(0))
      ->group(run_group);
  cmd->add_flag("--no-save-model", args->no_save_model, "Do not write model.ckpt")->group(run_group);

  return [args] { return run_train(*args); };
}

}  // namespace flatmin::cli
