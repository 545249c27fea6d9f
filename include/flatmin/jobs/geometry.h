#pragma once
/// `flatmin geometry` as one library call: the flatness of a trained model (a checkpoint of `flatmin train`) on
/// a split of its data. The CLI (`flatmin geometry ...`) and Python (`flatmin.measure(...)`) fill a GeometryJob
/// through the one definition of its options (jobs/options.h) and call run_geometry_job.

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>

namespace flatmin::jobs {

/// Every option of `flatmin geometry`, named as its flag (--trace-tol → trace_tol); `flatmin geometry --help`
/// says what each means.
struct GeometryJob {
  TORCH_ARG(std::string, checkpoint) = {};
  TORCH_ARG(std::string, data_dir) = {};  // empty: the run's own (run_data_source)
  TORCH_ARG(std::string, split) = "train";
  TORCH_ARG(std::string, mode) = "eval";
  TORCH_ARG(int64_t, examples) = 5000;
  TORCH_ARG(int64_t, batch_size) = 100;  // measured: 5.3x faster than 1,000 on a CNN (docs/PERFORMANCE.md)
  TORCH_ARG(std::vector<std::string>, measures) = {"grad", "trace", "eigen"};
  // trace
  TORCH_ARG(double, trace_tol) = 0.01;
  TORCH_ARG(int64_t, max_probes) = 1000;
  TORCH_ARG(int64_t, min_probes) = 10;
  TORCH_ARG(std::string, stop_rule) = "se";
  TORCH_ARG(int64_t, hutchpp_hvps) = 60;
  // eigenvalues
  TORCH_ARG(int64_t, top_k) = 5;
  TORCH_ARG(double, eigen_tol) = 1e-3;
  TORCH_ARG(int64_t, lanczos_iterations) = 100;
  // density
  TORCH_ARG(int64_t, density_runs) = 1;
  TORCH_ARG(int64_t, density_iterations) = 100;
  TORCH_ARG(int64_t, density_points) = 1000;
  // perturbation gap
  TORCH_ARG(std::vector<double>, sigmas) = {0.020, 0.022, 0.024, 0.026, 0.028, 0.030};
  TORCH_ARG(int64_t, gap_draws) = 100;
  TORCH_ARG(std::vector<std::string>, noise) = {"gaussian"};
  TORCH_ARG(bool, one_sided) = false;
  TORCH_ARG(std::vector<std::string>, gap_modes) = {};  // empty: --mode
  // approximation ratio
  TORCH_ARG(double, rho) = 0.05;
  TORCH_ARG(int64_t, ratio_examples) = 1000;
  TORCH_ARG(int64_t, ratio_steps) = 20;
  // PAC-Bayes
  TORCH_ARG(int64_t, pac_examples) = 100;
  TORCH_ARG(int64_t, pac_probes) = 10;
  TORCH_ARG(std::string, reference) = {};
  TORCH_ARG(double, loss_bound) = 0;
  // run
  TORCH_ARG(double, graph_memory_mb) = 2048;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(uint64_t, sample_seed) = 0;
  TORCH_ARG(std::string, out) = {};
  TORCH_ARG(int, threads) = 0;
  TORCH_ARG(std::string, device) = "cpu";
  TORCH_ARG(double, dist_timeout) = 60;
  TORCH_ARG(std::string, progress) = "auto";

};

/// The measures --measures accepts (besides "all"), in the order they run.
const std::vector<std::string>& geometry_measure_names();

struct GeometryOutcome {
  std::string out_path;  ///< where geometry.json was written (rank 0)
  std::string json;      ///< its content
};

/// Measures as `flatmin geometry` does, prints a summary and writes the JSON. Throws flatmin::Error on bad input.
GeometryOutcome run_geometry_job(const GeometryJob& job);

}  // namespace flatmin::jobs
