// flatmin sensing: the NSO paper's over-parameterised matrix sensing simulation (sensing/matrix_sensing.h)
// trained by GD, WP-GD or NSO; one run directory in the format `flatmin sweep` and `flatmin report` read.

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "flatmin/core/files.h"
#include "flatmin/core/error.h"
#include "flatmin/core/runtime.h"
#include "flatmin/noise/noise.h"
#include "flatmin/sensing/matrix_sensing.h"
#include "flatmin/training/metrics_log.h"
#include "flatmin/training/progress.h"
#include "flatmin/jobs/options.h"

namespace flatmin::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct SensingArgs {
  int64_t dimension = 100, rank = 5, measurements = 1000, test_measurements = 1000;
  std::string method = "nso";
  double sigma = 0.01;
  int64_t k = 1;
  bool no_negative = false;
  std::string noise = "gaussian";
  double lr = 1e-4;
  int64_t steps = 2000;
  double init_scale = 1.0;
  int64_t log_every = 50;
  uint64_t seed = 0;
  bool float64 = false;
  std::string out;
  int threads = 0;
  std::string progress = "auto";
};

// The paper's names (GD, WP-GD) and flatmin train's (sgd, wp-sgd) both work.
std::string method_name(const std::string& name) {
  if (name == "gd") return "sgd";
  if (name == "wp-gd") return "wp-sgd";
  return name;
}

int run_sensing(const SensingArgs& a) {
  const auto started = std::chrono::steady_clock::now();
  set_num_threads(a.threads > 0 ? a.threads : 1);
  const std::string out = a.out.empty() ? "runs/sensing-" + a.method + "-seed" + std::to_string(a.seed) : a.out;
  fs::create_directories(out);
  const optim::MethodSpec method = optim::MethodSpec()
                                       .name(method_name(a.method))
                                       .sigma(a.sigma)
                                       .k(a.k)
                                       .two_point(!a.no_negative)
                                       .law(noise::parse_noise_law(a.noise));
  const json config = {{"command", "sensing"},
                       {"dimension", a.dimension},
                       {"rank", a.rank},
                       {"measurements", a.measurements},
                       {"test_measurements", a.test_measurements},
                       {"method", a.method},
                       {"sigma", a.sigma},
                       {"k", a.k},
                       {"no_negative", a.no_negative},
                       {"noise", a.noise},
                       {"lr", a.lr},
                       {"steps", a.steps},
                       {"init_scale", a.init_scale},
                       {"log_every", a.log_every},
                       {"seed", a.seed},
                       {"float64", a.float64},
                       {"loss", "1/(2n) * sum_i (<A_i, U U^T> - y_i)^2, A_i with N(0,1) entries, U in R^{d x d}"}};
  flatmin::write_text_file((fs::path(out) / "config.json").string(), config.dump(2) + "\n");

  training::Progress progress(training::parse_progress_mode(a.progress));
  progress.line("flatmin sensing: d = " + std::to_string(a.dimension) + ", r = " + std::to_string(a.rank) + ", n = " +
                std::to_string(a.measurements) + " | " + a.method + " | lr " + std::to_string(a.lr) + " | " +
                std::to_string(a.steps) + " steps -> " + out);
  const sensing::Problem problem = sensing::make_problem(sensing::ProblemOptions()
                                                              .dimension(a.dimension)
                                                              .rank(a.rank)
                                                              .measurements(a.measurements)
                                                              .test_measurements(a.test_measurements)
                                                              .seed(a.seed));
  training::MetricsLog log(out);
  progress.start("steps", a.steps);
  const sensing::RunResult result = sensing::run(
      problem, method,
      sensing::RunOptions()
          .steps(a.steps)
          .lr(a.lr)
          .init_scale(a.init_scale)
          .log_every(a.log_every)
          .seed(a.seed)
          .float64(a.float64),
      [&](const sensing::Point& p) {
        // The columns flatmin report reads (epoch = step: every step sees the whole training set).
        log.append(training::Record()
                       .add("epoch", p.step)
                       .add("gradient_evaluations", p.gradient_evaluations)
                       .add("train_loss", p.train_loss)
                       .add("test_loss", p.test_loss)
                       .add("gap_loss", p.test_loss - p.train_loss)
                       .add("recovery_error", p.recovery_error)
                       .add("geo_hessian_trace", p.hessian_trace)
                       .add("nuclear_norm", p.nuclear_norm)
                       .add("trace_over_nuclear", p.trace_over_nuclear));
        char status[160];
        std::snprintf(status, sizeof status, "train %.4g  test %.4g  ‖UUᵀ−X*‖/‖X*‖ %.4f  Tr/‖UUᵀ‖* %.1f", p.train_loss,
                      p.test_loss, p.recovery_error, p.trace_over_nuclear);
        progress.update(p.step, status);
      });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (result.diverged) {
    json status = {{"diverged", true}, {"diverged_at", result.diverged_at}, {"total_seconds", seconds}};
    flatmin::write_text_file((fs::path(out) / "diverged.json").string(), status.dump(2) + "\n");
    std::fprintf(stderr, "diverged at step %lld: the loss exceeded 1e12 or is not finite (lr %g is too large for %s)\n",
                 static_cast<long long>(result.diverged_at), a.lr, a.method.c_str());
    return kExitDiverged;
  }
  const sensing::Point& last = result.points.back();
  const double kappa = method.name() == "sgd" ? 0.0 : sensing::penalty_strength(a.dimension, a.lr, a.sigma, a.steps);
  const json extra = {{"recovery_error", last.recovery_error},
                      {"nuclear_norm", last.nuclear_norm},
                      {"trace_over_nuclear", last.trace_over_nuclear},
                      {"kappa", kappa}};
  const json summary = {{"final_train_loss", last.train_loss},
                        {"final_test_loss", last.test_loss},
                        {"gap_loss", last.test_loss - last.train_loss},
                        {"epochs", last.step},
                        {"steps", last.step},
                        {"gradient_evaluations", last.gradient_evaluations},
                        {"total_seconds", seconds},
                        {"extra", extra},
                        {"reference_trace_over_nuclear", 2.0 * static_cast<double>(a.dimension + 1)}};
  flatmin::write_text_file((fs::path(out) / "summary.json").string(), summary.dump(2) + "\n");
  // The exact Hessian trace is this run's flatness measurement (no estimator, so no standard error).
  const json geometry = {{"command", "sensing"},
                         {"loss", last.train_loss},
                         {"trace", {{"estimate", last.hessian_trace}, {"std_error", 0.0}, {"exact", true}}}};
  flatmin::write_text_file((fs::path(out) / "geometry.json").string(), geometry.dump(2) + "\n");
  char line[200];
  std::snprintf(line, sizeof line,
                "done: train loss %.4g, test loss %.4g, ‖UUᵀ − X*‖_F/‖X*‖_F %.4f, Tr∇²L %.5g = %.2f × ‖UUᵀ‖_* "
                "(2(d+1) = %lld), %.1f s",
                last.train_loss, last.test_loss, last.recovery_error, last.hessian_trace, last.trace_over_nuclear,
                static_cast<long long>(2 * (a.dimension + 1)), seconds);
  progress.line(line);
  return 0;
}

}  // namespace

Action add_sensing_command(CLI::App& app) {
  auto args = std::make_shared<SensingArgs>();
  CLI::App* cmd = app.add_subcommand(
      "sensing", "Matrix sensing simulation (NSO paper §3.1 / TMLR Figure 6): GD vs WP-GD vs NSO on UUᵀ ≈ X*");
  cmd->footer(
      "Ground truth X* = U*U*ᵀ (U* ∈ ℝ^{d×r}, N(0,1) entries); n measurements y_i = ⟨A_i, X*⟩ with N(0,1) matrices\n"
      "A_i; the model UUᵀ with U ∈ ℝ^{d×d} from U₀ = init-scale·N(0,1); loss 1/(2n)·Σ(⟨A_i, UUᵀ⟩ − y_i)²; full-batch\n"
      "steps of GD (sgd without momentum), WP-GD or NSO through flatmin's PerturbedOptimizer. Logged every\n"
      "--log-every steps into metrics.csv: train and test loss (fresh measurements), ‖UUᵀ − X*‖_F/‖X*‖_F, the\n"
      "exact Hessian trace Tr∇²L = 1/n·Σ(‖(A_i + A_iᵀ)U‖² + 2d·r_i·tr A_i), ‖UUᵀ‖_* and their ratio (2(d+1) at\n"
      "interpolation). summary.json's extra also holds κ = 2(2d+1)·lr·σ²·steps, the accumulated strength of the\n"
      "nuclear-norm penalty the noise adds (0 for GD). The loss columns (train_loss, test_loss) are this 1/(2n)\n"
      "loss, half the mean squared measurement error. Exit code 3 when the loss diverges.\n\n"
      "  flatmin sensing --method gd --lr 1e-4\n"
      "  flatmin sensing --method nso --sigma 0.008 --lr 1e-4 --seed 1 --out runs/sensing-nso");
  cmd->option_defaults()->always_capture_default();
  const std::string problem = "Problem";
  cmd->add_option("--dimension,-d", args->dimension, "d: U and X* are d×d")->check(integer_in(1, 2000))->group(problem);
  cmd->add_option("--rank,-r", args->rank, "r: the rank of X*")->check(integer_in(1, 2000))->group(problem);
  cmd->add_option("--measurements,-n", args->measurements, "n: training measurements")
      ->check(integer_in(1, 10000000))
      ->group(problem);
  cmd->add_option("--test-measurements", args->test_measurements, "Held-out measurements (test loss only)")
      ->check(integer_in(1, 10000000))
      ->group(problem);
  const std::string method = "Method";
  cmd->add_option("--method", args->method, "gd | wp-gd | nso (also sgd, wp-sgd)")
      ->check(CLI::IsMember({"gd", "wp-gd", "nso", "sgd", "wp-sgd"}))
      ->group(method);
  cmd->add_option("--sigma", args->sigma, "Noise std σ per entry of U (the paper: 0.001-0.016)")
      ->check(number_at_least(0))
      ->group(method);
  cmd->add_option("--k", args->k, "NSO: perturbations per step (cost 2k)")->check(integer_in(1, 1024))->group(method);
  cmd->add_flag("--no-negative", args->no_negative, "NSO: 2k one-sided draws instead of k ± pairs")->group(method);
  cmd->add_option("--noise", args->noise, "gaussian | laplace | uniform | rademacher (alias binomial) | binomial4 (the NSO authors' σ·Binomial(4,½): mean 2σ, not zero)")
      ->check(CLI::IsMember({"gaussian", "laplace", "uniform", "rademacher", "binomial", "binomial4"}))
      ->group(method);
  cmd->add_option("--lr", args->lr, "Learning rate of the full-batch step")->check(number_between(0, 1e6, false))->group(method);
  cmd->add_option("--steps", args->steps, "Full-batch steps")->check(integer_in(0, 100000000))->group(method);
  cmd->add_option("--init-scale", args->init_scale, "U₀ = init-scale·N(0,1) (the paper: 1; small values: the implicit low-rank bias of GD)")
      ->check(number_at_least(0))
      ->group(method);
  const std::string run = "Run";
  cmd->add_option("--log-every", args->log_every, "A metrics row every N steps")->check(integer_in(1))->group(run);
  cmd->add_option("--seed", args->seed, "Seed of the problem, U₀ and the noise")->group(run);
  cmd->add_flag("--float64", args->float64,
                "U, the measurements and the loss in float64 (the same problem and U₀, drawn in float32)")
      ->group(run);
  cmd->add_option("--out", args->out, "Output directory (default runs/sensing-<method>-seed<seed>)")->group(run);
  cmd->add_option("--threads", args->threads, "Intra-op threads (0 = 1)")->check(integer_in(0, 1024))->group(run);
  cmd->add_option("--progress", args->progress, "auto (bar on a terminal) | bar | lines | quiet")
      ->check(CLI::IsMember({"auto", "bar", "lines", "quiet"}))
      ->group(run);
  return [args] { return run_sensing(*args); };
}

}  // namespace flatmin::cli
