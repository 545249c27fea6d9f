// The options of `flatmin sensing`, defined once for the CLI and Python.
#include <string>
#include <vector>

#include "flatmin/jobs/options.h"

namespace flatmin::jobs {

void add_sensing_options(CLI::App& cmd, SensingJob& job) {
  cmd.footer(
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
  cmd.option_defaults()->always_capture_default();
  const std::string problem = "Problem";
  cmd.add_option("--dimension,-d", job.dimension(), "d: U and X* are d×d")->check(integer_in(1, 2000))->group(problem);
  cmd.add_option("--rank,-r", job.rank(), "r: the rank of X*")->check(integer_in(1, 2000))->group(problem);
  cmd.add_option("--measurements,-n", job.measurements(), "n: training measurements")
      ->check(integer_in(1, 10000000))
      ->group(problem);
  cmd.add_option("--test-measurements", job.test_measurements(), "Held-out measurements (test loss only)")
      ->check(integer_in(1, 10000000))
      ->group(problem);
  const std::string method = "Method";
  cmd.add_option("--method", job.method(), "gd | wp-gd | nso (also sgd, wp-sgd)")
      ->check(CLI::IsMember({"gd", "wp-gd", "nso", "sgd", "wp-sgd"}))
      ->group(method);
  cmd.add_option("--sigma", job.sigma(), "Noise std σ per entry of U (the paper: 0.001-0.016)")
      ->check(number_at_least(0))
      ->group(method);
  cmd.add_option("--k", job.k(), "NSO: perturbations per step (cost 2k)")->check(integer_in(1, 1024))->group(method);
  cmd.add_flag("--no-negative", job.no_negative(), "NSO: 2k one-sided draws instead of k ± pairs")->group(method);
  cmd.add_option("--noise", job.noise(), "gaussian | laplace | uniform | rademacher (alias binomial) | binomial4 (the NSO authors' σ·Binomial(4,½): mean 2σ, not zero)")
      ->check(CLI::IsMember({"gaussian", "laplace", "uniform", "rademacher", "binomial", "binomial4"}))
      ->group(method);
  cmd.add_option("--lr", job.lr(), "Learning rate of the full-batch step")->check(number_between(0, 1e6, false))->group(method);
  cmd.add_option("--steps", job.steps(), "Full-batch steps")->check(integer_in(0, 100000000))->group(method);
  cmd.add_option("--init-scale", job.init_scale(), "U₀ = init-scale·N(0,1) (the paper: 1; small values: the implicit low-rank bias of GD)")
      ->check(number_at_least(0))
      ->group(method);
  const std::string run = "Run";
  cmd.add_option("--log-every", job.log_every(), "A metrics row every N steps")->check(integer_in(1))->group(run);
  cmd.add_option("--seed", job.seed(), "Seed of the problem, U₀ and the noise")->group(run);
  cmd.add_flag("--float64", job.float64(),
                "U, the measurements and the loss in float64 (the same problem and U₀, drawn in float32)")
      ->group(run);
  cmd.add_option("--out", job.out(), "Output directory (default runs/sensing-<method>-seed<seed>)")->group(run);
  cmd.add_option("--threads", job.threads(), "Intra-op threads (0 = 1)")->check(integer_in(0, 1024))->group(run);
  cmd.add_option("--progress", job.progress(), "auto (bar on a terminal) | bar | lines | quiet")
      ->check(CLI::IsMember({"auto", "bar", "lines", "quiet"}))
      ->group(run);
}

}  // namespace flatmin::jobs
