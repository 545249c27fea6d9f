// The options of `flatmin geometry`, defined once: the CLI's subcommand and Python's flatmin.measure parse them.
#include <string>
#include <vector>

#include "flatmin/jobs/geometry.h"
#include "flatmin/jobs/options.h"

namespace flatmin::jobs {

void add_geometry_options(CLI::App& cmd, GeometryJob& job) {
  cmd.footer(
      "Measures the mean cross-entropy of the checkpoint's model on a sample of a data split, in eval mode.\n"
      "The split is rebuilt exactly from the checkpoint's run config (same seed, same examples) and checked\n"
      "against the stored normalisation.\n\n"
      "Measures (--measures, comma-separated; 'all' for every one):\n"
      "  grad       gradient norm ‖∇L‖ (and, with trace, CR-SAM's normalised trace Tr/‖∇L‖²)\n"
      "  trace      Hutchinson (Rademacher probes) until the standard error is --trace-tol of the estimate,\n"
      "             per parameter tensor too\n"
      "  hutchpp    Hutch++ with a fixed budget of --hutchpp-hvps products\n"
      "  eigen      top-k eigenvalues by Lanczos with full reorthogonalisation, converged on ‖Hv − λv‖\n"
      "  density    spectral density by stochastic Lanczos quadrature\n"
      "  gap        E[f(W+U)] − f(W) vs σ²/2·Tr for each --sigmas (NSO Table 2), with RSS\n"
      "  ratio      CR-SAM's approximation ratio of SAM's one-step ascent (per example)\n"
      "  pac-bayes  NSO's PAC-Bayes bound from measured α (per-example traces), r = ‖W − W₀‖, n, C\n\n"
      "Writes JSON (default: geometry.json next to the checkpoint) and prints a summary.\n\n"
      "Examples:\n"
      "  flatmin geometry --checkpoint runs/nso-mlp-seed0\n"
      "  flatmin geometry --checkpoint runs/x/model.ckpt --measures all --examples 2000\n"
      "  flatmin geometry --checkpoint runs/x --measures gap --sigmas 0.01,0.02 --gap-draws 200 --noise laplace");
  cmd.option_defaults()->always_capture_default();

  const std::string input_group = "Input";
  cmd.add_option("--checkpoint", job.checkpoint(), "model.ckpt written by flatmin train, or its run directory")
      ->required()
      ->group(input_group);
  cmd.add_option("--data-dir", job.data_dir(),
                  "Data directory (default: the run's own, from its config.json, of the kind it recorded; else env FLATMIN_DATA_DIR)")
      ->group(input_group);
  cmd.add_option("--split", job.split(), "train | val | test")
      ->check(CLI::IsMember({"train", "val", "test"}))
      ->group(input_group);
  cmd.add_option("--mode", job.mode(),
                  "The model's mode for grad, trace, hutchpp, eigen, density and gap: eval (BatchNorm's running "
                  "statistics) or train (each batch's own statistics: the loss the training steps and NSO's noise "
                  "see; the running statistics are restored after). ratio and pac-bayes stay in eval mode")
      ->check(CLI::IsMember({"eval", "train"}))
      ->group(input_group);
  cmd.add_option("--examples", job.examples(), "Random examples of the split measured (0 = all)")
      ->check(integer_in(0))
      ->group(input_group);
  cmd.add_option("--batch-size", job.batch_size(),
                  "Examples per forward/backward pass (100 measured fastest; large batches page-fault)")
      ->check(integer_in(1, 1 << 20))
      ->group(input_group);

  const std::string measure_group = "Measures";
  auto measures = geometry_measure_names();
  measures.push_back("all");
  cmd.add_option("--measures", job.measures(), "Comma-separated: grad,trace,hutchpp,eigen,density,gap,ratio,pac-bayes | all")
      ->delimiter(',')
      ->check(CLI::IsMember(measures))
      ->group(measure_group);
  cmd.add_option("--trace-tol", job.trace_tol(), "Hutchinson: stop at this relative standard error")
      ->check(number_between(0, 1, /*lo_closed=*/false))
      ->group(measure_group);
  cmd.add_option("--max-probes", job.max_probes(), "Hutchinson: probes at most")->check(integer_in(2, 1000000))->group(measure_group);
  cmd.add_option("--min-probes", job.min_probes(), "Hutchinson: probes at least")->check(integer_in(2, 1000000))->group(measure_group);
  cmd.add_option("--stop-rule", job.stop_rule(),
                  "se (standard error of the mean) | pyhessian (relative change of the mean: stops early by chance)")
      ->check(CLI::IsMember({"se", "pyhessian"}))
      ->group(measure_group);
  cmd.add_option("--hutchpp-hvps", job.hutchpp_hvps(), "Hutch++: Hessian-vector products")
      ->check(integer_in(3, 1000000))
      ->group(measure_group);
  cmd.add_option("--top-k", job.top_k(), "Eigenvalues: how many")->check(integer_in(1, 1000))->group(measure_group);
  cmd.add_option("--eigen-tol", job.eigen_tol(), "Eigenvalues: converged when ‖Hv − λv‖ <= tol·|λ|")
      ->check(number_between(0, 1, /*lo_closed=*/false))
      ->group(measure_group);
  cmd.add_option("--lanczos-iterations", job.lanczos_iterations(), "Eigenvalues: Lanczos steps at most")
      ->check(integer_in(1, 100000))
      ->group(measure_group);
  cmd.add_option("--density-runs", job.density_runs(), "Density: independent Lanczos runs")
      ->check(integer_in(1, 1000))
      ->group(measure_group);
  cmd.add_option("--density-iterations", job.density_iterations(), "Density: Lanczos steps per run")
      ->check(integer_in(1, 100000))
      ->group(measure_group);
  cmd.add_option("--density-points", job.density_points(), "Density: grid points")
      ->check(integer_in(2, 10000000))
      ->group(measure_group);
  cmd.add_option("--sigmas", job.sigmas(), "Gap: noise std σ per weight, comma-separated")
      ->delimiter(',')
      ->check(number_at_least(0))
      ->group(measure_group);
  cmd.add_option("--gap-draws", job.gap_draws(), "Gap: draws per σ")->check(integer_in(2, 10000000))->group(measure_group);
  cmd.add_option("--noise", job.noise(),
                  "Gap: gaussian | laplace | uniform | rademacher (alias binomial) | binomial4 (the NSO authors' σ·Binomial(4,½): mean 2σ, not zero), comma-separated for one table per law")
      ->delimiter(',')
      ->check(CLI::IsMember({"gaussian", "laplace", "uniform", "rademacher", "binomial", "binomial4"}))
      ->group(measure_group);
  cmd.add_option("--gap-modes", job.gap_modes(),
                  "Gap: the model modes to measure it in, comma-separated (default: --mode). eval,train gives both "
                  "tables; a mode other than --mode measures its own trace first, since its loss is another function")
      ->delimiter(',')
      ->check(CLI::IsMember({"eval", "train"}))
      ->group(measure_group);
  cmd.add_flag("--one-sided", job.one_sided(), "Gap: f(W+U) − f(W) instead of antithetic pairs")->group(measure_group);
  cmd.add_option("--rho", job.rho(), "Ratio: SAM radius ρ")->check(number_between(0, 1e6, false))->group(measure_group);
  cmd.add_option("--ratio-examples", job.ratio_examples(), "Ratio: examples (CR-SAM: 5000; 0 = the whole split)")
      ->check(integer_in(0))
      ->group(measure_group);
  cmd.add_option("--ratio-steps", job.ratio_steps(), "Ratio: projected ascent steps for δ*")
      ->check(integer_in(1, 100000))
      ->group(measure_group);
  cmd.add_option("--pac-examples", job.pac_examples(), "PAC-Bayes: examples each from train and test for α")
      ->check(integer_in(1))
      ->group(measure_group);
  cmd.add_option("--pac-probes", job.pac_probes(), "PAC-Bayes: Hutchinson probes per example")
      ->check(integer_in(2, 1000000))
      ->group(measure_group);
  cmd.add_option("--reference", job.reference(),
                  "PAC-Bayes: checkpoint of W₀ (default: the run's initialisation, rebuilt from its seed)")
      ->group(measure_group);
  cmd.add_option("--loss-bound", job.loss_bound(), "PAC-Bayes: C (0 = the max per-example loss on the sample)")
      ->check(number_at_least(0))
      ->group(measure_group);

  const std::string run_group = "Run";
  cmd.add_option("--graph-memory-mb", job.graph_memory_mb(),
                  "Memory for reusing per-batch gradient graphs across Hessian-vector products (0 = recompute)")
      ->check(number_at_least(0))
      ->group(run_group);
  cmd.add_option("--seed", job.seed(), "Seed of the probes and the noise draws: same seeds, same numbers")->group(run_group);
  cmd.add_option("--sample-seed", job.sample_seed(), "Seed of the examples drawn from the split (--examples)")
      ->group(run_group);
  cmd.add_option("--out", job.out(), "JSON output (default: geometry.json next to the checkpoint)")->group(run_group);
  cmd.add_option("--threads", job.threads(), "Intra-op threads (0 = 1 for mlp and cnn, all cores for resnet)")
      ->check(integer_in(0, 1024))
      ->group(run_group);
  cmd.add_option("--progress", job.progress(), "auto (bar on a terminal) | bar | lines | quiet")
      ->check(CLI::IsMember({"auto", "bar", "lines", "quiet"}))
      ->group(run_group);
  add_device_option(&cmd, &job.device(), run_group);
  cmd.add_option("--dist-timeout", job.dist_timeout(),
                  "Under flatmin launch: seconds to wait for the other processes (they share the trace's probes)")
      ->check(number_between(1, 86400))
      ->group(run_group);
}

}  // namespace flatmin::jobs
