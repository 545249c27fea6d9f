#pragma once
/// `flatmin landscape` as one library call: loss and accuracy of trained models along filter-normalised random directions (1-D or 2-D) or the line between two models, with figures; resumable point by point.

#include <cstdint>
#include <string>
#include <vector>

#include <torch/arg.h>

namespace flatmin::jobs {

/// Every option of `flatmin landscape`, named as its flag.
struct LandscapeJob {
  TORCH_ARG(std::vector<std::string>, checkpoints) = {};
  TORCH_ARG(std::vector<std::string>, labels) = {};
  TORCH_ARG(std::string, to) = {};
  TORCH_ARG(int, dims) = 1;
  TORCH_ARG(std::vector<double>, range) = {};
  TORCH_ARG(int64_t, points) = 0;  // 0: 41 for 1-D, 21 per axis for 2-D
  TORCH_ARG(std::string, split) = "train";
  TORCH_ARG(int64_t, examples) = 1000;
  TORCH_ARG(int64_t, batch_size) = 100;
  TORCH_ARG(bool, include_bias_bn) = false;
  TORCH_ARG(uint64_t, seed) = 0;
  TORCH_ARG(uint64_t, sample_seed) = 0;
  TORCH_ARG(std::string, data_dir) = {};  // empty: each run's own (run_data_source)
  TORCH_ARG(std::string, out) = {};
  TORCH_ARG(int, threads) = 0;
  TORCH_ARG(std::string, device) = "cpu";
  TORCH_ARG(std::string, progress) = "auto";
  TORCH_ARG(std::vector<std::string>, formats) = {"svg", "png"};
};

/// Measures the grid as `flatmin landscape` does (continuing one already in the output directory with the
/// same settings), writes landscape.csv/json and the figures, prints a summary; returns the output directory.
/// Throws flatmin::Error on bad input.
std::string run_landscape_job(const LandscapeJob& job);

}  // namespace flatmin::jobs
