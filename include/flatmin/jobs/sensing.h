#pragma once
/// `flatmin sensing` as one library call: the NSO paper's matrix sensing simulation trained by GD, WP-GD or NSO, into a run directory that `flatmin sweep` and `flatmin report` read.

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>

namespace flatmin::jobs {

/// Every option of `flatmin sensing`, named as its flag.
struct SensingJob {
  TORCH_ARG(int64_t, dimension) = 100;
  TORCH_ARG(int64_t, rank) = 5;
  TORCH_ARG(int64_t, measurements) = 1000;
  TORCH_ARG(int64_t, test_measurements) = 1000;
  TORCH_ARG(std::string, method) = "nso";
  TORCH_ARG(double, sigma) = 0.01;
  TORCH_ARG(int64_t, k) = 1;
  TORCH_ARG(bool, no_negative) = false;
  TORCH_ARG(std::string, noise) = "gaussian";
  TORCH_ARG(double, lr) = 1e-4;
  TORCH_ARG(int64_t, steps) = 2000;
  TORCH_ARG(double, init_scale) = 1.0;
  TORCH_ARG(int64_t, log_every) = 50;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(bool, float64) = false;
  TORCH_ARG(std::string, out) = {};
  TORCH_ARG(int, threads) = 0;
  TORCH_ARG(std::string, progress) = "auto";
};

struct SensingOutcome {
  std::string out_dir;
  /// The loss exceeded 1e12 or was not finite (diverged.json says at which step); no summary then.
  bool diverged = false;
};

/// Trains and logs as `flatmin sensing` does (metrics, summary.json with κ, geometry.json with the exact
/// trace). Throws flatmin::Error on bad input.
SensingOutcome run_sensing_job(const SensingJob& job);

}  // namespace flatmin::jobs
