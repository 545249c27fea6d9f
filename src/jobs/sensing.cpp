// flatmin sensing: the NSO paper's over-parameterised matrix sensing simulation (sensing/matrix_sensing.h)
// trained by GD, WP-GD or NSO; one run directory in the format `flatmin sweep` and `flatmin report` read.
#include "flatmin/jobs/sensing.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "flatmin/core/files.h"
#include "flatmin/core/error.h"
#include "flatmin/core/runtime.h"
#include "flatmin/noise/noise.h"
#include "flatmin/sensing/matrix_sensing.h"
#include "flatmin/training/metrics_log.h"
#include "flatmin/training/progress.h"

namespace flatmin::jobs {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;


// The paper's names (GD, WP-GD) and flatmin train's (sgd, wp-sgd) both work.
std::string method_name(const std::string& name) {
  if (name == "gd") return "sgd";
  if (name == "wp-gd") return "wp-sgd";
  return name;
}

}  // namespace

SensingOutcome run_sensing_job(const SensingJob& a) {
  const auto started = std::chrono::steady_clock::now();
  set_num_threads(a.threads() > 0 ? a.threads() : 1);
  const std::string out = a.out().empty() ? "runs/sensing-" + a.method() + "-seed" + std::to_string(a.seed()) : a.out();
  fs::create_directories(out);
  const optim::MethodSpec method = optim::MethodSpec()
                                       .name(method_name(a.method()))
                                       .sigma(a.sigma())
                                       .k(a.k())
                                       .two_point(!a.no_negative())
                                       .law(noise::parse_noise_law(a.noise()));
  const json config = {{"command", "sensing"},
                       {"dimension", a.dimension()},
                       {"rank", a.rank()},
                       {"measurements", a.measurements()},
                       {"test_measurements", a.test_measurements()},
                       {"method", a.method()},
                       {"sigma", a.sigma()},
                       {"k", a.k()},
                       {"no_negative", a.no_negative()},
                       {"noise", a.noise()},
                       {"lr", a.lr()},
                       {"steps", a.steps()},
                       {"init_scale", a.init_scale()},
                       {"log_every", a.log_every()},
                       {"seed", a.seed()},
                       {"float64", a.float64()},
                       {"loss", "1/(2n) * sum_i (<A_i, U U^T> - y_i)^2, A_i with N(0,1) entries, U in R^{d x d}"}};
  flatmin::write_text_file((fs::path(out) / "config.json").string(), config.dump(2) + "\n");

  training::Progress progress(training::parse_progress_mode(a.progress()));
  progress.line("flatmin sensing: d = " + std::to_string(a.dimension()) + ", r = " + std::to_string(a.rank()) + ", n = " +
                std::to_string(a.measurements()) + " | " + a.method() + " | lr " + std::to_string(a.lr()) + " | " +
                std::to_string(a.steps()) + " steps -> " + out);
  const sensing::Problem problem = sensing::make_problem(sensing::ProblemOptions()
                                                              .dimension(a.dimension())
                                                              .rank(a.rank())
                                                              .measurements(a.measurements())
                                                              .test_measurements(a.test_measurements())
                                                              .seed(a.seed()));
  training::MetricsLog log(out);
  progress.start("steps", a.steps());
  const sensing::RunResult result = sensing::run(
      problem, method,
      sensing::RunOptions()
          .steps(a.steps())
          .lr(a.lr())
          .init_scale(a.init_scale())
          .log_every(a.log_every())
          .seed(a.seed())
          .float64(a.float64()),
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
                 static_cast<long long>(result.diverged_at), a.lr(), a.method().c_str());
    return {out, /*diverged=*/true};
  }
  const sensing::Point& last = result.points.back();
  const double kappa = method.name() == "sgd" ? 0.0 : sensing::penalty_strength(a.dimension(), a.lr(), a.sigma(), a.steps());
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
                        {"reference_trace_over_nuclear", 2.0 * static_cast<double>(a.dimension() + 1)}};
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
                static_cast<long long>(2 * (a.dimension() + 1)), seconds);
  progress.line(line);
  return {out, /*diverged=*/false};
}

}  // namespace flatmin::jobs
