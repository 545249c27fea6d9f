#pragma once
// Test data for the training tests: three Gaussian blobs in 8×8 "images" — learnable, tiny, deterministic
// (train drawn with seed 1, test with seed 2); and a scratch directory per test.

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "flatmin/data/dataset.h"

namespace flatmin::testing {

/// A path under the temporary directory, unique to `name` and this process, removed if it exists
/// (not created: some tests need a run directory that does not exist yet).
inline std::string scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("flatmin-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  return dir.string();
}

inline data::TrainTest blobs(int64_t per_class_train = 40, int64_t per_class_test = 10) {
  auto make = [](int64_t per_class, uint64_t seed) {
    torch::manual_seed(seed);
    std::vector<at::Tensor> xs, ys;
    for (int64_t c = 0; c < 3; ++c) {
      at::Tensor centre = torch::zeros({1, 1, 8, 8});
      centre.view(-1).narrow(0, c * 20, 20).fill_(1.0);
      xs.push_back(centre + 0.8 * torch::randn({per_class, 1, 8, 8}));
      ys.push_back(torch::full({per_class}, c, torch::kLong));
    }
    return data::Dataset{torch::cat(xs), torch::cat(ys), 3};
  };
  return {make(per_class_train, 1), make(per_class_test, 2)};
}

}  // namespace flatmin::testing
